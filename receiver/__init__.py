"""receiver: UiPath Orchestrator webhooks in, actionable alerts out."""

__version__ = "0.1.0"
