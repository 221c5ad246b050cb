"""The pipeline after the 202: stored webhook -> rules -> noise control -> outbox -> delivery.

``worker`` (the inbox worker) takes stored events, matches them against the rules, runs noise
control and writes deliveries to the outbox; ``dispatch`` (the dispatcher) sends them through
``receiver.delivery`` with retries. ``activity`` is the burst gate both consult, so that they
yield while the edge is busy; ``rulewatch`` notices rules.yaml changing on disk. The modules are the
public surface: import ``receiver.pipeline.worker``.
"""

__all__: list[str] = []
