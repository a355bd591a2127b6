"""A contract stub of the Kubernetes API server, for the scheduler's apply/reconcile/GC tests.

It is a stub, not a cluster: it runs no pods. It answers the part of the API the Kubernetes
driver uses, the way a real API server answers it:

- GET, LIST (``labelSelector`` with ``k=v``, ``k!=v`` and ``k``), DELETE of namespaces,
  Deployments, Services, PodDisruptionBudgets and autoscaling/v2 HPAs;
- server-side apply (``PATCH`` with ``application/apply-patch+yaml``): creates or merges, tracks
  which field manager owns each field, answers 409 when another manager owns a field with a
  different value unless ``force=true``; a no-op apply changes no ``resourceVersion``;
- ``PUT`` with a stale ``metadata.resourceVersion`` answers 409;
- Deployment status: every rollout available at once (``rollouts="available"``) or never
  (``"stuck"``), then pods of the Deployment report ``pod_waiting`` as their waiting reason;
- pods (LIST with ``labelSelector``, GET) and their logs (``GET .../pods/{name}/log`` with
  ``tailLines``): lines set per pod in ``pod_logs`` (tests/harness/kube_pods.py);
- fault injection: the next N requests (or all) answer a status (with ``Retry-After``) or
  are delayed past the client's timeout.

Every request is counted by (method, plural), so tests can assert what was written.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from tests.harness.kube_pods import pod_log, synthetic_pods

__all__ = ["Fault", "KubeStub", "StubThread", "write_kubeconfig"]

_KINDS = {  # plural -> (apiVersion, kind, namespaced)
    "namespaces": ("v1", "Namespace", False),
    "services": ("v1", "Service", True),
    "pods": ("v1", "Pod", True),
    "deployments": ("apps/v1", "Deployment", True),
    "poddisruptionbudgets": ("policy/v1", "PodDisruptionBudget", True),
    "horizontalpodautoscalers": ("autoscaling/v2", "HorizontalPodAutoscaler", True),
}
_GROUPS = {
    "api/v1": "v1",
    "apis/apps/v1": "apps/v1",
    "apis/policy/v1": "policy/v1",
    "apis/autoscaling/v2": "autoscaling/v2",
}


@dataclass
class Fault:
    """What the next ``times`` requests (None: every request) get instead of an answer."""

    status: int = 500
    retry_after: int | None = None
    delay_s: float = 0.0
    times: int | None = None


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }
    return web.json_response(body, status=code)


def _leaves(obj: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Leaf fields of an object; lists are atomic (as the API's atomic lists)."""
    if isinstance(obj, dict) and obj:
        found: dict[tuple[str, ...], Any] = {}
        for key, value in obj.items():
            found.update(_leaves(value, (*prefix, key)))
        return found
    return {prefix: obj}


def _set(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        obj = obj.setdefault(key, {})
    obj[path[-1]] = copy.deepcopy(value)


def _unset(obj: dict[str, Any], path: tuple[str, ...]) -> None:
    for key in path[:-1]:
        obj = obj.get(key, {})
    obj.pop(path[-1], None)


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value.lstrip("="):
                return False
        elif term not in labels:
            return False
    return True


class KubeStub:
    """One stub API server (one cluster, one kubeconfig context) on a free loopback port."""

    def __init__(
        self, *, rollouts: str = "available", pod_waiting: str = "ImagePullBackOff"
    ) -> None:
        self.rollouts = rollouts
        self.pod_waiting = pod_waiting
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, ns, name)
        self.owners: dict[tuple[str, str, str], dict[str, set[tuple[str, ...]]]] = {}
        self.requests: Counter[tuple[str, str]] = Counter()
        self.faults: list[Fault] = []
        self.pod_logs: dict[str, list[str]] = {}
        """Pod name -> the lines its container wrote, oldest first."""
        self._version = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> str:
        """Serve on a free loopback port; returns the base URL."""
        app = web.Application(client_max_size=8 * 1024**2)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()

    def inject(self, fault: Fault) -> None:
        """Answer the next requests with ``fault`` (appended after any earlier fault)."""
        self.faults.append(fault)

    def clear_faults(self) -> None:
        """Answer normally again."""
        self.faults.clear()

    def writes(self) -> int:
        """How many PATCH/PUT/POST/DELETE requests reached the stub."""
        return sum(n for (method, _), n in self.requests.items() if method != "GET")

    def names(self, plural: str) -> set[tuple[str, str]]:
        """(namespace, name) of every stored object of a kind."""
        return {(ns, name) for (p, ns, name) in self.objects if p == plural}

    # --- HTTP -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"].strip("/")
        group = next((g for g in _GROUPS if path.startswith(g + "/") or path == g), None)
        parts = path[len(group) + 1 :].split("/") if group else []
        namespace = ""
        if len(parts) >= 3 and parts[0] == "namespaces" and parts[2] in _KINDS:
            namespace, parts = parts[1], parts[2:]
        if group == "api/v1" and namespace and parts[:1] == ["pods"] and parts[2:] == ["log"]:
            return await self._log(namespace, parts[1], request)
        if group is None or not parts or parts[0] not in _KINDS or len(parts) > 2:
            return _status(404, "NotFound", f"the stub serves no {request.path}")
        plural = parts[0]
        name = parts[1] if len(parts) == 2 else None
        self.requests[(request.method, plural)] += 1
        fault = await self._fault_response()
        if fault is not None:
            return fault
        if name is None:
            if request.method != "GET":
                return _status(405, "MethodNotAllowed", f"{request.method} of a collection")
            return self._list(plural, namespace, request.query.get("labelSelector", ""))
        key = (plural, namespace, name)
        if request.method == "GET":
            obj = self._pods(namespace).get(name) if plural == "pods" else self.objects.get(key)
            return web.json_response(obj) if obj else _status(404, "NotFound", f"{name} not found")
        if request.method == "DELETE":
            if self.objects.pop(key, None) is None:
                return _status(404, "NotFound", f"{plural} {name} not found")
            self.owners.pop(key, None)
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        body = await request.read()
        if request.method == "PATCH":
            if request.content_type != "application/apply-patch+yaml":
                return _status(415, "UnsupportedMediaType", "the stub speaks server-side apply")
            manager = request.query.get("fieldManager")
            if not manager:
                return _status(400, "BadRequest", "fieldManager is required for apply")
            force = request.query.get("force") == "true"
            return self._apply(key, yaml.safe_load(body), manager, force=force)
        if request.method == "PUT":
            return self._put(key, json.loads(body))
        return _status(405, "MethodNotAllowed", request.method)

    async def _log(self, namespace: str, name: str, request: web.Request) -> web.Response:
        self.requests[("GET", "pods/log")] += 1
        fault = await self._fault_response()
        if fault is not None:
            return fault
        pod = self._pods(namespace).get(name)
        status, text = pod_log(pod, name, self.pod_logs.get(name, []), dict(request.query))
        if status != 200:
            return _status(status, "NotFound" if status == 404 else "BadRequest", text)
        return web.Response(text=text, content_type="text/plain")

    async def _fault_response(self) -> web.Response | None:
        """The injected answer to this request, if one is due (None after a delay)."""
        fault = self._next_fault()
        if fault is None:
            return None
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
            return None
        response = _status(fault.status, "Injected", f"injected {fault.status}")
        if fault.retry_after is not None:
            response.headers["Retry-After"] = str(fault.retry_after)
        return response

    def _next_fault(self) -> Fault | None:
        if not self.faults:
            return None
        fault = self.faults[0]
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                self.faults.pop(0)
        return fault

    def _list(self, plural: str, namespace: str, selector: str) -> web.Response:
        if plural == "pods":
            pool = {("pods", namespace, n): p for n, p in self._pods(namespace).items()}
        else:
            pool = self.objects
        items = [
            obj
            for (p, ns, _), obj in sorted(pool.items())
            if p == plural
            and (not namespace or ns == namespace)
            and _matches(obj["metadata"].get("labels") or {}, selector)
        ]
        api_version, kind, _ = _KINDS[plural]
        return web.json_response(
            {
                "apiVersion": api_version,
                "kind": f"{kind}List",
                "metadata": {"resourceVersion": str(self._version)},
                "items": items,
            }
        )

    def _apply(
        self, key: tuple[str, str, str], applied: dict[str, Any], manager: str, *, force: bool
    ) -> web.Response:
        plural, _, name = key
        kind = _KINDS[plural][1]
        if applied.get("kind") != kind or applied.get("metadata", {}).get("name") != name:
            return _status(400, "BadRequest", f"body is not the {kind} {name}")
        current = self.objects.get(key)
        owners = self.owners.setdefault(key, {})
        fields = {p: v for p, v in _leaves(applied).items() if p[:1] != ("status",)}
        existing = _leaves(current) if current else {}
        conflicts = [
            f"{'.'.join(path)} (owned by {other})"
            for other, paths in owners.items()
            if other != manager
            for path in fields
            if path in paths and existing.get(path) != fields[path]
        ]
        if conflicts and not force:
            return _status(409, "Conflict", "Apply failed with conflicts: " + ", ".join(conflicts))
        merged = copy.deepcopy(current) if current else {"metadata": {}}
        for path in owners.get(manager, set()) - set(fields):
            if not any(path in paths for other, paths in owners.items() if other != manager):
                _unset(merged, path)
        for path, value in fields.items():
            _set(merged, path, value)
        for other in owners:
            if other != manager:
                owners[other] -= set(fields)
        owners[manager] = set(fields)
        if current is not None and merged == current:
            return web.json_response(current)  # a no-op apply writes nothing
        return self._store(key, merged, current)

    def _put(self, key: tuple[str, str, str], obj: dict[str, Any]) -> web.Response:
        current = self.objects.get(key)
        if current is None:
            return _status(404, "NotFound", f"{key[2]} not found")
        given = obj.get("metadata", {}).get("resourceVersion")
        if given != current["metadata"]["resourceVersion"]:
            return _status(
                409,
                "Conflict",
                "the object has been modified; please apply your "
                "changes to the latest version and try again",
            )
        return self._store(key, obj, current)

    def _store(
        self, key: tuple[str, str, str], obj: dict[str, Any], current: dict[str, Any] | None
    ) -> web.Response:
        plural, namespace, name = key
        self._version += 1
        meta = obj.setdefault("metadata", {})
        generation = int((current or {}).get("metadata", {}).get("generation", 0))
        if current is None or current.get("spec") != obj.get("spec"):
            generation += 1
        meta.update(name=name, resourceVersion=str(self._version), generation=generation)
        if namespace:
            meta["namespace"] = namespace
        meta.setdefault("uid", f"uid-{self._version}")
        if plural == "deployments":
            obj["status"] = self._rollout(obj)
        self.objects[key] = obj
        return web.json_response(obj, status=201 if current is None else 200)

    def _rollout(self, deployment: dict[str, Any]) -> dict[str, Any]:
        replicas = int(deployment.get("spec", {}).get("replicas", 1))
        status: dict[str, Any] = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
        }
        if self.rollouts == "available":
            status.update(readyReplicas=replicas, availableReplicas=replicas)
        else:
            status["unavailableReplicas"] = replicas
        return status

    def _pods(self, namespace: str) -> dict[str, dict[str, Any]]:
        return synthetic_pods(
            self.objects, namespace, rollouts=self.rollouts, pod_waiting=self.pod_waiting
        )


class StubThread:
    """Stubs served from their own event loop in a thread (for a process whose loop is busy)."""

    def __init__(self, stubs: list[KubeStub]) -> None:
        self.stubs = stubs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        """Start the thread and every stub in it."""
        self._thread.start()
        for stub in self.stubs:
            asyncio.run_coroutine_threadsafe(stub.start(), self._loop).result(10)

    def stop(self) -> None:
        """Stop the stubs and the thread."""
        for stub in self.stubs:
            asyncio.run_coroutine_threadsafe(stub.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def write_kubeconfig(path: Path, servers: dict[str, str]) -> Path:
    """A kubeconfig with one context (and cluster) per ``name -> server URL``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": next(iter(servers)),
        "clusters": [{"name": n, "cluster": {"server": url}} for n, url in servers.items()],
        "users": [{"name": "stub", "user": {"token": "stub-token"}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "stub"}} for n in servers],
    }
    path.write_text(yaml.safe_dump(config))
    return path
