"""The container driver: each replica its own container on a Docker-compatible engine.

- ``driver`` — :class:`ContainerDriver`: starts, supervises, adopts and removes containers.
- ``engine`` — the one seam to the engine (the ``docker`` SDK), its errors translated there.
- ``images`` — a version's image made runnable by the engine, once per manifest digest.
- ``replicas`` — what a workload's containers add up to, readiness probes, their logs.
"""

from dockyard_scheduler.drivers.container.driver import ContainerDriver

__all__ = ["ContainerDriver"]
