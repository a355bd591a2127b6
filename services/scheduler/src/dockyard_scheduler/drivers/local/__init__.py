"""The local driver: each replica a supervised process on the target's loopback address.

- ``driver`` — :class:`LocalDriver`: starts, supervises, adopts and reaps replicas.
- ``replicas`` — one replica's process, the record a later scheduler adopts it by, its log.
- ``images`` — a version's image unpacked from the builder's OCI layout.
- ``rollout`` — how replica states add up to the endpoint's state (pure).
"""

from dockyard_scheduler.drivers.local.driver import LocalDriver

__all__ = ["LocalDriver"]
