"""Validation of Kubernetes objects as an API server would do it, for tests.

Two layers, every error reported (not just the first):

1. the official strict JSON schemas ``kubernetes-validate`` bundles (unknown fields, wrong
   types, missing required fields), loaded into a ``referencing.Registry`` and walked with
   ``Draft202012Validator.iter_errors``;
2. the checks the API server makes itself and the schemas cannot say: DNS-1123/1035 names,
   label keys and values, quantities, requests ≤ limits, port ranges and port names, env
   names, selector ⊆ template labels, HPA min ≤ max, one PDB bound.

It lives with the tests: ``kubernetes-validate`` is a development dependency, and in
production a real API server makes these checks on every apply.
"""

from __future__ import annotations

import functools
import json
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import kubernetes_validate
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

__all__ = ["KUBERNETES_VERSION", "manifest_errors", "schema_errors", "semantic_errors"]

KUBERNETES_VERSION = "1.37.0"

_SCHEMAS = (
    Path(kubernetes_validate.__file__).parent
    / "kubernetes-json-schema"
    / f"v{KUBERNETES_VERSION}-local-strict"
)

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")
_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"), "Ki": Decimal(2**10), "Mi": Decimal(2**20),
    "Gi": Decimal(2**30), "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}  # fmt: skip

_SCHEMA_FILES = {
    ("v1", "Namespace"): "namespace-v1.json",
    ("v1", "Service"): "service-v1.json",
    ("apps/v1", "Deployment"): "deployment-apps-v1.json",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudget-policy-v1.json",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscaler-autoscaling-v2.json",
}


@functools.cache
def _registry() -> Registry[Any]:
    definitions = json.loads((_SCHEMAS / "_definitions.json").read_text())
    return Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))


@functools.cache
def _validator(api_version: str, kind: str) -> Draft202012Validator:
    schema = json.loads((_SCHEMAS / _SCHEMA_FILES[(api_version, kind)]).read_text())
    return Draft202012Validator(schema, registry=_registry())


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """Every violation of the official strict schema, as ``path: message``."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key not in _SCHEMA_FILES:
        return [f"no schema for apiVersion/kind {key}"]
    validator = _validator(*key)  # type: ignore[arg-type]
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(obj)
    ]


def quantity_value(text: Any) -> Decimal | None:
    """A quantity's value, None when it is not a valid Kubernetes quantity."""
    match = _QUANTITY.match(str(text))
    if match is None:
        return None
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        return None
    suffix = match.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return number * Decimal(10) ** int(suffix[1:])
    return number * _SUFFIX[suffix]


def _check_labels(where: str, labels: dict[str, Any], errors: list[str]) -> None:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
            errors.append(f"{where}: label key prefix {prefix!r} is not a DNS-1123 subdomain")
        if len(name) > 63 or not _LABEL_NAME.match(name):
            errors.append(f"{where}: label key {key!r} is invalid")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            errors.append(f"{where}: label value {value!r} of {key!r} is invalid")


def _check_metadata(obj: dict[str, Any], errors: list[str]) -> None:
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    kind = obj.get("kind")
    if kind in ("Namespace", "Service"):
        rule, pattern, limit = ("DNS-1035 label", _DNS1035_LABEL, 63)
        if kind == "Namespace":
            rule, pattern = ("DNS-1123 label", _DNS1123_LABEL)
    else:
        rule, pattern, limit = ("DNS-1123 subdomain", _DNS1123_SUBDOMAIN, 253)
    if len(name) > limit or not pattern.match(name):
        errors.append(f"metadata.name: {name!r} is not a {rule} of at most {limit} characters")
    namespace = meta.get("namespace")
    if namespace is not None and (len(namespace) > 63 or not _DNS1123_LABEL.match(namespace)):
        errors.append(f"metadata.namespace: {namespace!r} is not a DNS-1123 label")
    _check_labels("metadata.labels", meta.get("labels") or {}, errors)


def _check_port(where: str, port: Any, errors: list[str]) -> None:
    if not isinstance(port, int) or not 1 <= port <= 65535:
        errors.append(f"{where}: port {port!r} is outside 1-65535")


def _check_container(where: str, container: dict[str, Any], errors: list[str]) -> set[str]:
    names: set[str] = set()
    for i, port in enumerate(container.get("ports") or []):
        _check_port(f"{where}.ports.{i}.containerPort", port.get("containerPort"), errors)
        if "name" in port:
            name = port["name"]
            if len(name) > 15 or not _PORT_NAME.match(name) or not re.search("[a-z]", name):
                errors.append(f"{where}.ports.{i}.name: {name!r} is not an IANA service name")
            names.add(name)
    for i, env in enumerate(container.get("env") or []):
        if not _ENV_NAME.match(str(env.get("name", ""))):
            errors.append(f"{where}.env.{i}.name: {env.get('name')!r} is not a valid env name")
    resources = container.get("resources") or {}
    values: dict[str, dict[str, Decimal]] = {"requests": {}, "limits": {}}
    for part in ("requests", "limits"):
        for resource, quantity in (resources.get(part) or {}).items():
            value = quantity_value(quantity)
            if value is None or value < 0:
                errors.append(f"{where}.resources.{part}.{resource}: {quantity!r} is no quantity")
            else:
                values[part][resource] = value
    for resource, request in values["requests"].items():
        limit = values["limits"].get(resource)
        if limit is not None and request > limit:
            errors.append(f"{where}.resources.requests.{resource}: must be <= its limit")
    for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = container.get(probe_name) or {}
        for handler in ("httpGet", "tcpSocket"):
            port = (probe.get(handler) or {}).get("port")
            if isinstance(port, int):
                _check_port(f"{where}.{probe_name}.{handler}.port", port, errors)
            elif port is not None and port not in names:
                errors.append(f"{where}.{probe_name}.{handler}.port: no container port {port!r}")
    return names


def _check_selector(
    where: str, selector: dict[str, Any], labels: dict[str, Any], errors: list[str]
) -> None:
    match = (selector or {}).get("matchLabels") or {}
    if not match and not (selector or {}).get("matchExpressions"):
        errors.append(f"{where}: an empty selector would select every pod")
    for key, value in match.items():
        if labels.get(key) != value:
            errors.append(f"{where}: selector {key}={value} does not match the template labels")


def semantic_errors(obj: dict[str, Any]) -> list[str]:
    """Every violation of what the API server checks beyond the schema."""
    errors: list[str] = []
    _check_metadata(obj, errors)
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Deployment":
        template = spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        _check_labels("spec.template.metadata.labels", labels, errors)
        _check_selector("spec.selector", spec.get("selector") or {}, labels, errors)
        if isinstance(spec.get("replicas"), int) and spec["replicas"] < 0:
            errors.append("spec.replicas: must be >= 0")
        for i, container in enumerate((template.get("spec") or {}).get("containers") or []):
            _check_container(f"spec.template.spec.containers.{i}", container, errors)
    elif kind == "Service":
        for i, port in enumerate(spec.get("ports") or []):
            _check_port(f"spec.ports.{i}.port", port.get("port"), errors)
            target = port.get("targetPort")
            if isinstance(target, int):
                _check_port(f"spec.ports.{i}.targetPort", target, errors)
            elif target is not None and (len(target) > 15 or not _PORT_NAME.match(target)):
                errors.append(f"spec.ports.{i}.targetPort: {target!r} is not a port name")
        _check_labels("spec.selector", spec.get("selector") or {}, errors)
    elif kind == "HorizontalPodAutoscaler":
        low, high = spec.get("minReplicas", 1), spec.get("maxReplicas", 0)
        if not (isinstance(low, int) and isinstance(high, int)):
            return errors  # the schema reports the types
        if low < 1:
            errors.append("spec.minReplicas: must be >= 1")
        if high < low:
            errors.append(f"spec.maxReplicas: {high} must be >= minReplicas {low}")
    elif kind == "PodDisruptionBudget":
        if "minAvailable" in spec and "maxUnavailable" in spec:
            errors.append("spec: minAvailable and maxUnavailable cannot both be set")
        if not ((spec.get("selector") or {}).get("matchLabels")):
            errors.append("spec.selector: a PodDisruptionBudget needs a selector")
    return errors


def manifest_errors(obj: dict[str, Any]) -> list[str]:
    """Every schema and semantic error of one object; empty when an API server would accept it."""
    return schema_errors(obj) + semantic_errors(obj)
