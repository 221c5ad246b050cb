"""Everything HTTP: the only package that imports starlette.

``app`` builds the application and wires the store, the pipeline and the routes; ``edge`` takes
webhooks and robot logs (verify, parse, store, 202); ``api`` is the admin API, ``ui`` the web page
(templates and stylesheet in ``ui/``), ``openapi`` the document describing both. ``runtime`` holds
what the routes share; ``protocol``, ``deadline``, ``quota`` and ``limiter`` bound what one client can cost. The modules
are the public surface: import ``receiver.http.app``.
"""

__all__: list[str] = []
