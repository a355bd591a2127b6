"""The Kubernetes driver: workloads as server-side-applied objects on a cluster per target.

- ``driver`` — :class:`KubernetesDriver`: applies, adopts, watches rollouts, removes.
- ``api`` — the one seam to an API server (the official client), its errors translated there.
- ``state`` — what the driver knows of each cluster and each workload on it.
- ``logs`` — a workload's pod logs.
- ``manifests`` — a workload's objects (pure rendering).
- ``rollouts`` — where a rollout stands, read from the objects' status (pure).
"""

from dockyard_scheduler.drivers.kubernetes.driver import KubernetesDriver

__all__ = ["KubernetesDriver"]
