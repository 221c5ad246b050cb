"""What an operator reads and changes: read models, silences, dry runs.

``audit`` shapes stored events, deliveries and noise decisions for the API and the web page and
explains why an event notified or not; ``silencing`` builds and shows ad-hoc silences; ``dryrun``
is ``receiver check`` and ``receiver test`` (rules.yaml against sample events, routing suites). The
modules are the public surface: import ``receiver.admin.audit``.
"""

__all__: list[str] = []
