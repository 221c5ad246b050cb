"""Delivery: the only package that imports apprise.

``notifier`` checks and masks channel URLs and sends one notification through apprise, turning its
tri-state answer into a typed result; ``keepalive`` reuses HTTP connections between sends. The
modules are the public surface: import ``receiver.delivery.notifier``.
"""

__all__: list[str] = []
