"""One Kubernetes cluster as the driver sees it: apply, list, delete, with retries.

The official ``kubernetes`` client is synchronous: every call runs in the cluster's own
thread pool, so a slow or failing cluster holds only its own threads, never the event loop
or another cluster. Answers are read as raw JSON (``_preload_content=False``): the driver
needs a few status fields, not the client's model objects, which cost more to build than
the request itself.

Errors are translated once here: 409, 429 (honouring ``Retry-After``), 5xx and timeouts are
:class:`~dockyard_common.TransientError` and retried with backoff; other answers are
:class:`ApiRefused` carrying the API server's message and status; a kubeconfig that cannot be
read is :class:`KubeconfigUnreadable`.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes.config import ConfigException, new_client_from_config

from dockyard_common import PermanentError, TransientError, get_logger
from dockyard_scheduler.drivers.kubernetes.manifests import FIELD_MANAGER, SCALE_FIELD_MANAGER

__all__ = ["PLURALS", "ApiRefused", "ClusterApi", "KubeconfigUnreadable"]

log = get_logger(__name__)

PLURALS = {
    "Namespace": "namespaces",
    "Deployment": "deployments",
    "Service": "services",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
}
"""The kinds the driver writes, in the order it applies them (namespace first)."""

_TRANSIENT_STATUS = {409, 429, 500, 502, 503, 504}

# What the client's loader raises for a kubeconfig that is missing or malformed: besides its
# own ConfigException, YAML's errors and whatever a wrong shape trips over.
_UNREADABLE_KUBECONFIG = (
    ConfigException,
    OSError,
    yaml.YAMLError,
    TypeError,
    ValueError,
    KeyError,
    AttributeError,
)


class ApiRefused(PermanentError):
    """The API server refused a request (an answer retrying cannot change)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class KubeconfigUnreadable(PermanentError):
    """The kubeconfig, or the target's context in it, cannot be read."""


class ClusterApi:
    """The API server of one target, reached through its kubeconfig context."""

    def __init__(
        self,
        *,
        target: str,
        kubeconfig: Path | None,
        context: str | None,
        workers: int,
        timeout_s: float,
        attempts: int,
    ) -> None:
        self.target = target
        configuration = k8s.Configuration()
        # Our backoff retries; urllib3's own would hide a dead server behind silent waits.
        configuration.retries = False
        configuration.connection_pool_maxsize = workers
        try:
            api = new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None,
                context=context,
                client_configuration=configuration,
            )
        except _UNREADABLE_KUBECONFIG as exc:
            where = kubeconfig or "the default kubeconfig"
            raise KubeconfigUnreadable(f"{where}: {type(exc).__name__}: {exc}") from exc
        self._client = api
        self._timeout = timeout_s
        self._attempts = attempts
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"kube-{target}")
        core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
        policy, scaling = k8s.PolicyV1Api(api), k8s.AutoscalingV2Api(api)
        self._patch: dict[str, Callable[..., Any]] = {
            "deployments": apps.patch_namespaced_deployment,
            "services": core.patch_namespaced_service,
            "poddisruptionbudgets": policy.patch_namespaced_pod_disruption_budget,
            "horizontalpodautoscalers": scaling.patch_namespaced_horizontal_pod_autoscaler,
        }
        self._delete: dict[str, Callable[..., Any]] = {
            "deployments": apps.delete_namespaced_deployment,
            "services": core.delete_namespaced_service,
            "poddisruptionbudgets": policy.delete_namespaced_pod_disruption_budget,
            "horizontalpodautoscalers": scaling.delete_namespaced_horizontal_pod_autoscaler,
        }
        self._list_all: dict[str, Callable[..., Any]] = {
            "namespaces": core.list_namespace,
            "deployments": apps.list_deployment_for_all_namespaces,
            "services": core.list_service_for_all_namespaces,
            "poddisruptionbudgets": policy.list_pod_disruption_budget_for_all_namespaces,
            "horizontalpodautoscalers": scaling.list_horizontal_pod_autoscaler_for_all_namespaces,
        }
        self._list_in: dict[str, Callable[..., Any]] = {
            "deployments": apps.list_namespaced_deployment,
            "services": core.list_namespaced_service,
            "poddisruptionbudgets": policy.list_namespaced_pod_disruption_budget,
            "horizontalpodautoscalers": scaling.list_namespaced_horizontal_pod_autoscaler,
            "pods": core.list_namespaced_pod,
        }
        self._patch_namespace = core.patch_namespace
        self._read_pod_log = core.read_namespaced_pod_log

    # --- async, retried ---------------------------------------------------------------------

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` (forcing our field manager's ownership); the stored object."""
        plural = PLURALS[obj["kind"]]
        meta = obj["metadata"]
        if plural == "namespaces":
            call = self._patch_namespace
            args: tuple[Any, ...] = (meta["name"], obj)
        else:
            call = self._patch[plural]
            args = (meta["name"], meta["namespace"], obj)
        stored: dict[str, Any] = await self._retried(
            f"apply {obj['kind']} {meta['name']}",
            call,
            *args,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
        return stored

    async def set_replicas(self, namespace: str, name: str, count: int) -> None:
        """Set a Deployment's ``spec.replicas`` by server-side apply, as the autoscaler's
        field manager (the scheduler's own leaves that field out)."""
        await self._retried(
            f"scale Deployment {name}",
            self._patch["deployments"],
            name,
            namespace,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"replicas": count},
            },
            field_manager=SCALE_FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    async def list(
        self, plural: str, selector: str, namespace: str | None = None, *, attempts: int = 0
    ) -> list[dict[str, Any]]:
        """Objects of a kind matching the label selector, in one namespace or in all.

        ``attempts`` (0: the cluster's setting) bounds the tries of a caller in a hurry.
        """
        if namespace is None:
            answer = await self._retried(
                f"list {plural}",
                self._list_all[plural],
                label_selector=selector,
                _attempts=attempts,
            )
        else:
            answer = await self._retried(
                f"list {plural} in {namespace}",
                self._list_in[plural],
                namespace,
                label_selector=selector,
                _attempts=attempts,
            )
        items: list[dict[str, Any]] = answer.get("items") or []
        return items

    async def pod_log(self, namespace: str, pod: str, container: str, tail: int) -> str:
        """The last ``tail`` lines a pod's container wrote, tried once (someone is waiting)."""
        text: str = await self._retried(
            f"read the log of pod {pod}",
            self._read_pod_log,
            pod,
            namespace,
            container=container,
            tail_lines=tail,
            _attempts=1,
            _text=True,
        )
        return text

    async def delete(self, plural: str, namespace: str, name: str) -> bool:
        """Delete an object; False when it was already gone."""
        try:
            await self._retried(f"delete {plural} {name}", self._delete[plural], name, namespace)
        except ApiRefused as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def _retried(
        self,
        what: str,
        call: Callable[..., Any],
        *args: Any,
        _attempts: int = 0,
        _text: bool = False,
        **kwargs: Any,
    ) -> Any:
        loop = asyncio.get_running_loop()
        attempts = _attempts or self._attempts
        for attempt in range(1, attempts + 1):
            try:
                return await loop.run_in_executor(
                    self._pool, lambda: self._call(what, call, *args, _text=_text, **kwargs)
                )
            except TransientError as exc:
                if attempt == attempts:
                    raise
                # Exponential with jitter, never shorter than the server asked for.
                delay = max(exc.delay, min(0.2 * 2**attempt, 10.0) * random.uniform(0.5, 1.0))  # noqa: S311
                log.warning(
                    "kube.call.retry", target=self.target, call=what, error=str(exc), in_s=delay
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    # --- blocking, in the pool -------------------------------------------------------------

    def _call(
        self, what: str, call: Callable[..., Any], *args: Any, _text: bool, **kwargs: Any
    ) -> Any:
        try:
            response = call(*args, _preload_content=False, _request_timeout=self._timeout, **kwargs)
            if _text:  # a log is plain text, not JSON
                return bytes(response.data or b"").decode("utf-8", errors="replace")
            return json.loads(response.data or b"{}")
        except k8s.ApiException as exc:
            raise _translate(self.target, what, exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError(
                f"{self.target}: {what}: the API server did not answer ({exc!r})", delay=0.5
            ) from exc

    def close(self) -> None:
        """Stop the threads and close the connections."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def _translate(target: str, what: str, exc: k8s.ApiException) -> Exception:
    status = int(exc.status or 0)
    message = _message(exc)
    text = f"{target}: {what}: {status} {message}"
    if status in _TRANSIENT_STATUS:
        retry_after = (exc.headers or {}).get("Retry-After")
        try:
            delay = float(retry_after) if retry_after else 0.5
        except ValueError:
            delay = 1.0
        return TransientError(text, delay=delay)
    return ApiRefused(text, status=status)


def _message(exc: k8s.ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return str(exc.reason)
    return str(body.get("message") or exc.reason) if isinstance(body, dict) else str(exc.reason)
