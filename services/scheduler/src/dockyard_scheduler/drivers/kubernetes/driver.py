"""The Kubernetes target driver: workloads as server-side-applied objects on a cluster.

Each target is a kubeconfig context. ``ensure`` renders the workload's objects (pure,
:mod:`.manifests`), compares their hashes with what was last applied and returns at once:
writes run in the background on the cluster's own threads, so neither the reconcile loop nor
another cluster waits for a slow one. A poller per cluster reads rollout status (one LIST for
all rollouts in progress) and reports ready, or failed with the pod's reason once the rollout
deadline has passed.

Pod logs are read on request (:mod:`.logs`).

Objects outlive the scheduler: a restarted scheduler adopts what carries its labels (and the
hash each object was applied with), so nothing is deleted or written again needlessly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from dockyard_common import (
    DockyardError,
    EndpointState,
    PermanentError,
    Target,
    WorkloadState,
    get_logger,
)
from dockyard_common.logs import ReplicaLogs
from dockyard_scheduler.desired import Workload
from dockyard_scheduler.drivers import Reporter
from dockyard_scheduler.drivers.kubernetes.api import ClusterApi
from dockyard_scheduler.drivers.kubernetes.logs import workload_logs
from dockyard_scheduler.drivers.kubernetes.manifests import (
    HASH_ANNOTATION,
    INSTANCE_LABEL,
    KEY_ANNOTATION,
    MANAGED_BY,
    ManifestError,
    render_workload,
    selector_of,
)
from dockyard_scheduler.drivers.kubernetes.rollouts import pod_failure_reason, rollout_progress
from dockyard_scheduler.drivers.kubernetes.state import (
    Cluster,
    Tracked,
    object_key,
    render_inputs,
    running,
)
from dockyard_scheduler.settings import SchedulerSettings

__all__ = ["KubernetesDriver"]

log = get_logger(__name__)


class KubernetesDriver:
    """Runs workloads on Kubernetes clusters, one kubeconfig context per target."""

    def __init__(self, settings: SchedulerSettings, report: Reporter) -> None:
        self._settings = settings
        self._report = report
        self._clusters: dict[str, Cluster] = {}
        self._tracked: dict[str, Tracked] = {}
        self._connecting: dict[str, asyncio.Future[ClusterApi]] = {}

    # --- the Driver protocol ------------------------------------------------------------------

    def reap_leftovers(self) -> int:
        """Nothing is reaped on a cluster: what runs there is adopted when its target is seen."""
        return 0

    async def ensure(self, workload: Workload) -> bool:
        """Make the cluster run ``workload``; False when nothing had to be written."""
        tracked = self._tracked.get(workload.key)
        inputs = render_inputs(workload)
        if (
            tracked is not None
            and tracked.inputs == inputs
            and tracked.refused is None
            and (tracked.applied == tracked.desired or running(tracked.task))
        ):
            # Same inputs, same objects: a steady reconcile pass costs no rendering.
            tracked.workload = workload
            return False
        try:
            rendered = render_workload(
                workload, progress_deadline_s=int(self._settings.kube_rollout_deadline_s)
            )
        except ManifestError as exc:
            if tracked is not None and tracked.refused == str(exc):
                return False
            self._tracked[workload.key] = refused = Tracked(
                workload.key, workload.target, "", "", workload=workload, refused=str(exc)
            )
            await self._state(refused, WorkloadState.FAILED, str(exc))
            return True
        cluster = await self._cluster(workload.target)
        adoption, started = self._adoption(cluster)
        if started:
            # Only the first sight of a cluster waits a little, to avoid re-writing what runs.
            with contextlib.suppress(TimeoutError, DockyardError):
                await asyncio.wait_for(asyncio.shield(adoption), 2.0)
        tracked = self._tracked.get(workload.key)  # adoption may have found it
        desired = {
            object_key(o): o["metadata"]["annotations"][HASH_ANNOTATION]
            for o in rendered.objects[1:]
        }
        if tracked is None or tracked.refused is not None:
            tracked = Tracked(workload.key, workload.target, rendered.namespace, rendered.name)
            self._tracked[workload.key] = tracked
        tracked.inputs = inputs
        tracked.workload, tracked.upstream, tracked.objects = (
            workload,
            rendered.upstream,
            rendered.objects,
        )
        in_flight = running(tracked.task)
        if tracked.desired == desired and in_flight:
            return False  # being applied
        if in_flight and tracked.task is not None:
            tracked.task.cancel()  # it writes what is no longer wanted
        tracked.desired = desired
        namespace_hash = rendered.objects[0]["metadata"]["annotations"][HASH_ANNOTATION]
        if (
            tracked.applied == desired
            and cluster.namespaces.get(rendered.namespace) == namespace_hash
        ):
            return False
        tracked.task = asyncio.create_task(
            self._apply(cluster, tracked), name=f"apply {workload.key}"
        )
        return True

    async def remove(self, key: str) -> bool:
        """Delete the workload's objects, found by its labels; False when none was known.

        A cluster that fails keeps the workload known, so the next pass tries again.
        """
        tracked = self._tracked.pop(key, None)
        if tracked is None:
            return False
        if tracked.task is not None:
            tracked.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, DockyardError):
                await tracked.task
        if not tracked.name:
            return True  # refused: nothing was ever written
        cluster = await self._cluster(tracked.target)
        labels = {INSTANCE_LABEL: tracked.name}
        selector = selector_of(labels) + "," + cluster.selector
        try:
            for plural in (
                "horizontalpodautoscalers",
                "poddisruptionbudgets",
                "services",
                "deployments",
            ):
                for obj in await cluster.api.list(plural, selector, tracked.namespace):
                    await cluster.api.delete(plural, tracked.namespace, obj["metadata"]["name"])
        except DockyardError as exc:
            log.warning("kube.remove.failed", key=key, error=str(exc))
            self._tracked.setdefault(key, tracked)
            return False
        log.info("kube.workload.removed", key=key, namespace=tracked.namespace)
        return True

    def workload_keys(self) -> set[str]:
        """The workloads on every cluster, adopted ones included."""
        return set(self._tracked)

    def workload(self, key: str) -> Workload | None:
        """The workload under ``key`` (None for one adopted and not yet asked for again)."""
        tracked = self._tracked.get(key)
        return tracked.workload if tracked is not None else None

    async def logs(self, key: str, tail: int) -> list[ReplicaLogs]:
        """The last ``tail`` lines of each pod of the workload; [] when none was written here."""
        tracked = self._tracked.get(key)
        if tracked is None or not tracked.name:
            return []  # unknown, or refused before anything was written
        cluster = await self._cluster(tracked.target)
        return await workload_logs(cluster.api, tracked.namespace, tracked.name, tail)

    def replica_count(self, key: str) -> int | None:
        """The count of a ready workload autoscaled on request load: the one last set, else
        the one its Deployment started with (1: its rendering leaves the field out)."""
        tracked = self._tracked.get(key)
        if tracked is None or tracked.workload is None or running(tracked.task):
            return None
        if tracked.reported is WorkloadState.IDLE:
            return 0
        if tracked.reported is not WorkloadState.READY:
            return None
        return tracked.replicas if tracked.replicas is not None else 1

    async def scale(self, key: str, count: int, reason: str) -> bool:
        """Set the Deployment's replica count (the Service keeps the upstream: Kubernetes
        takes a stopping pod out of it before the pod gets SIGTERM). At zero the workload
        is reported idle; from zero, ready once a replica is available."""
        tracked = self._tracked.get(key)
        if tracked is None or not tracked.name:
            return False
        cluster = await self._cluster(tracked.target)
        await cluster.api.set_replicas(tracked.namespace, tracked.name, count)
        changed = tracked.replicas != count
        tracked.replicas, tracked.scaled_because = count, reason
        log.info("kube.workload.scaled", key=key, replicas=count, reason=reason)
        if count == 0:
            await self._state(tracked, WorkloadState.IDLE)
        elif tracked.reported is WorkloadState.IDLE:
            # Woken: ready again once the rollout poll finds a replica available.
            tracked.rollout_since = time.monotonic()
            cluster.wake.set()
        elif tracked.reported is WorkloadState.READY:
            await self._state(tracked, WorkloadState.READY)
        return changed

    async def close(self) -> None:
        """Stop watching and writing; the objects keep running on their clusters."""
        tasks = [t.task for t in self._tracked.values() if t.task is not None]
        for cluster in self._clusters.values():
            tasks += [t for t in (cluster.adoption, cluster.poller) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for cluster in self._clusters.values():
            cluster.api.close()

    # --- clusters and adoption --------------------------------------------------------------

    async def _cluster(self, target: Target) -> Cluster:
        """The cluster of ``target``, connected on first use.

        Connecting imports the client's API modules (seconds, CPU-bound) and reads the
        kubeconfig: it runs in a thread, and concurrent callers share one attempt.
        """
        cluster = self._clusters.get(target.name)
        if cluster is None:
            connecting = self._connecting.get(target.name)
            if connecting is None:
                s = self._settings
                connecting = asyncio.ensure_future(
                    asyncio.to_thread(
                        ClusterApi,
                        target=target.name,
                        kubeconfig=s.kubeconfig,
                        context=target.context,
                        workers=s.kube_workers,
                        timeout_s=s.kube_request_timeout_s,
                        attempts=s.kube_attempts,
                    )
                )
                self._connecting[target.name] = connecting
            try:
                api = await asyncio.shield(connecting)
            except DockyardError as exc:
                self._connecting.pop(target.name, None)
                raise PermanentError(
                    f"cannot reach target {target.name} through kubeconfig context "
                    f"{target.context!r}: {exc}"
                ) from exc
            cluster = self._clusters.get(target.name)
            if cluster is None:
                cluster = self._clusters[target.name] = Cluster(api, target)
                cluster.poller = asyncio.create_task(
                    self._poll(cluster), name=f"poll {target.name}"
                )
        cluster.target = target
        return cluster

    def _adoption(
        self, cluster: Cluster, *, retry_after_s: float = 5.0
    ) -> tuple[asyncio.Task[None], bool]:
        """The cluster's adoption (started once, again after a failure); whether it just began.

        A failed adoption is tried again no sooner than ``retry_after_s``, so that a pass over
        many workloads of a dead cluster does not start one per workload.
        """
        task = cluster.adoption
        failed = (
            task is not None and task.done() and (task.cancelled() or task.exception() is not None)
        )
        if task is None or (failed and time.monotonic() - cluster.adopt_tried >= retry_after_s):
            cluster.adopt_tried = time.monotonic()
            cluster.adoption = asyncio.create_task(
                self._adopt(cluster), name=f"adopt {cluster.target.name}"
            )
            return cluster.adoption, True
        return task, False

    async def _adopt(self, cluster: Cluster) -> None:
        """Rebuild the view of a cluster from the objects carrying our labels."""
        for ns in await cluster.api.list("namespaces", selector_of(MANAGED_BY)):
            meta = ns["metadata"]
            cluster.namespaces.setdefault(
                meta["name"], meta.get("annotations", {}).get(HASH_ANNOTATION, "")
            )
        adopted = 0
        for plural in (
            "deployments",
            "services",
            "poddisruptionbudgets",
            "horizontalpodautoscalers",
        ):
            for obj in await cluster.api.list(plural, cluster.selector):
                meta = obj["metadata"]
                annotations = meta.get("annotations") or {}
                key = annotations.get(KEY_ANNOTATION)
                if not key:
                    continue
                tracked = self._tracked.get(key)
                if tracked is None:
                    tracked = Tracked(key, cluster.target, meta["namespace"], meta["name"])
                    tracked.rollout_since = time.monotonic()  # confirm and report its state
                    self._tracked[key] = tracked
                    adopted += 1
                if plural == "services":
                    port = obj["spec"]["ports"][0]["port"]
                    tracked.upstream = f"http://{meta['name']}.{meta['namespace']}.svc:{port}"
                tracked.applied.setdefault(
                    (plural, meta["namespace"], meta["name"]), annotations.get(HASH_ANNOTATION, "")
                )
        cluster.wake.set()
        log.info("kube.cluster.adopted", target=cluster.target.name, workloads=adopted)

    # --- writing ----------------------------------------------------------------------------

    async def _apply(self, cluster: Cluster, tracked: Tracked) -> None:
        available = False
        try:
            await self._adoption(cluster, retry_after_s=0.0)[0]
            if tracked.applied == tracked.desired:
                return  # adopted as it is wanted: nothing to write
            await self._state(tracked, WorkloadState.DEPLOYING)
            await self._apply_namespace(cluster, tracked.objects[0])
            for obj in tracked.objects[1:]:
                key = object_key(obj)
                if tracked.applied.get(key) == tracked.desired.get(key):
                    continue
                stored = await cluster.api.apply(obj)
                tracked.applied[key] = tracked.desired[key]
                if key[0] == "deployments":
                    available = rollout_progress(stored).done
        except DockyardError as exc:
            log.warning("kube.apply.failed", key=tracked.key, error=str(exc))
            await self._state(tracked, WorkloadState.FAILED, f"could not apply: {exc}")
            return
        if available:
            # The API server's answer already says the rollout is done: no poll needed.
            await self._state(tracked, WorkloadState.READY)
        if tracked.reported is not WorkloadState.READY:
            tracked.rollout_since = time.monotonic()
            cluster.wake.set()

    async def _apply_namespace(self, cluster: Cluster, namespace: dict[str, Any]) -> None:
        name = namespace["metadata"]["name"]
        wanted = namespace["metadata"]["annotations"][HASH_ANNOTATION]
        # Every workload of a project shares the namespace: one of them writes it.
        async with cluster.namespace_locks.setdefault(name, asyncio.Lock()):
            if cluster.namespaces.get(name) != wanted:
                await cluster.api.apply(namespace)
                cluster.namespaces[name] = wanted

    # --- watching rollouts --------------------------------------------------------------------

    async def _poll(self, cluster: Cluster) -> None:
        while True:
            waiting = [
                t
                for t in self._tracked.values()
                if t.target.name == cluster.target.name and t.rollout_since is not None
            ]
            if not waiting:
                cluster.wake.clear()
                await cluster.wake.wait()
                continue
            try:
                await self._check_rollouts(cluster, waiting)
            except DockyardError as exc:
                log.warning("kube.poll.failed", target=cluster.target.name, error=str(exc))
            await asyncio.sleep(self._settings.kube_poll_s)

    async def _check_rollouts(self, cluster: Cluster, waiting: list[Tracked]) -> None:
        found = {
            (d["metadata"]["namespace"], d["metadata"]["name"]): d
            for d in await cluster.api.list("deployments", cluster.selector)
        }
        deadline = self._settings.kube_rollout_deadline_s
        for tracked in waiting:
            deployment = found.get((tracked.namespace, tracked.name))
            if deployment is None or tracked.rollout_since is None:
                continue
            progress = rollout_progress(deployment)
            if progress.done:
                await self._state(tracked, WorkloadState.READY)
                if tracked.reported is WorkloadState.READY:
                    tracked.rollout_since = None
            elif (
                time.monotonic() - tracked.rollout_since > deadline
                and tracked.reported is not WorkloadState.FAILED
            ):
                pods = await cluster.api.list(
                    "pods", selector_of({INSTANCE_LABEL: tracked.name}), tracked.namespace
                )
                reason = pod_failure_reason(pods) or progress.detail
                await self._state(
                    tracked,
                    WorkloadState.FAILED,
                    f"rollout not available after {deadline:g} s: {reason}",
                )

    async def _state(
        self, tracked: Tracked, state: WorkloadState, reason: str | None = None
    ) -> None:
        """Report a change of state (a repeat is not reported); a failed report is retried later."""
        scale = (tracked.replicas, tracked.scaled_because)
        if (
            tracked.reported is state
            and state is not WorkloadState.FAILED
            and scale == tracked.reported_scale
        ):
            return
        owner, project, deployment, version, endpoint = tracked.identity
        try:
            await self._report(
                EndpointState(
                    owner=owner,
                    project=project,
                    deployment=deployment,
                    version=version,
                    endpoint=endpoint,
                    target=tracked.target.name,
                    region=tracked.target.region,
                    state=state,
                    upstreams=[tracked.upstream] if state is WorkloadState.READY else [],
                    reason=reason,
                    desired_replicas=scale[0],
                    scaled_because=scale[1],
                )
            )
        except DockyardError as exc:  # not published: the next change or pass reports again
            log.warning("kube.report.failed", key=tracked.key, state=state.value, error=str(exc))
            return
        tracked.reported, tracked.reported_scale = state, scale
