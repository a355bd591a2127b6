"""Endpoint definitions from a ``valohai.yaml`` document, validated by ``valohai-yaml``.

Real files hold more than the endpoints a submission deploys (training steps, pipelines,
other endpoints, one of them perhaps with a name Dockyard refuses). Only what is deployed
must be valid: what else the validator finds comes back as warnings. Two endpoints of one
name are refused, whichever is deployed, rather than one silently taking the other's place.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import valohai_yaml
import yaml
from pydantic import ValidationError

from dockyard_api.yaml_bounds import load_bounded_yaml
from dockyard_common.errors import InvalidInput
from dockyard_common.models import EndpointSpec
from dockyard_common.names import ENDPOINT_NAME_RULE, suggest_endpoint_name

__all__ = ["UNSUPPORTED_FIELDS", "ValohaiEndpoints", "endpoints_from_valohai_yaml"]

UNSUPPORTED_FIELDS = ("workspace-volume", "shared-volumes")
"""Endpoint fields valohai.yaml allows that Dockyard cannot honour yet: refused, never dropped."""


_RULE_BROKEN = re.compile(r"'(?P<value>.*)' does not match '(?P<rule>.*)'", re.DOTALL)

MAX_MESSAGE_CHARS = 300
"""A validator message quotes the value it refuses, which may be the whole document."""
MAX_MESSAGES = 10


def _with_proposal(message: str) -> str:
    """A validator message, with a valid name proposed when an endpoint name broke the rule."""
    broken = _RULE_BROKEN.fullmatch(message)
    if broken is None or broken["rule"] != ENDPOINT_NAME_RULE:
        return message
    return (
        f"endpoint name {broken['value']!r} breaks the rule {ENDPOINT_NAME_RULE}; "
        f"try {suggest_endpoint_name(broken['value'])!r}"
    )


def _shortened(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}... ({len(message) - MAX_MESSAGE_CHARS} more characters)"


def _validator_messages(errors: Sequence[object]) -> str:
    """The validator's messages, each shortened, the first :data:`MAX_MESSAGES` of them."""
    messages = [
        _shortened(_with_proposal(str(getattr(error, "message", error))))
        for error in errors[:MAX_MESSAGES]
    ]
    if len(errors) > MAX_MESSAGES:
        messages.append(f"and {len(errors) - MAX_MESSAGES} more")
    return "; ".join(messages)


@dataclass(frozen=True)
class ValohaiEndpoints:
    """The endpoints taken from a valohai.yaml, and what the rest of it would have refused."""

    specs: list[EndpointSpec]
    warnings: list[str] = field(default_factory=list)


def _load(text: str) -> list[Any] | dict[str, Any] | None:
    try:
        data = load_bounded_yaml(text)
    except InvalidInput as exc:
        raise InvalidInput(f"valohai.yaml is refused: {exc}") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"valohai.yaml is not valid YAML: {_shortened(str(exc))}") from exc
    if data is not None and not isinstance(data, list | dict):
        # valohai_yaml.parse would read a string as another YAML document, unbounded.
        raise InvalidInput(
            "valohai.yaml is refused: the document is a "
            f"{type(data).__name__}, not a list of steps and endpoints"
        )
    return data


def _endpoint_items(data: list[Any]) -> dict[str, list[int]]:
    """Each endpoint name the document gives, with the positions of the items giving it."""
    found: dict[str, list[int]] = {}
    for index, item in enumerate(data):
        endpoint = item.get("endpoint") if isinstance(item, dict) else None
        name = endpoint.get("name") if isinstance(endpoint, dict) else None
        if isinstance(name, str):
            found.setdefault(name, []).append(index)
    return found


def _what(data: list[Any], index: int) -> str:
    item = data[index] if 0 <= index < len(data) else None
    kind = next(iter(item), "item") if isinstance(item, dict) and item else "item"
    body = item.get(kind) if isinstance(item, dict) else None
    name = body.get("name") if isinstance(body, dict) else None
    return f"{kind} {name!r}" if isinstance(name, str) else f"item {index + 1}"


def endpoints_from_valohai_yaml(text: str, names: Sequence[str] | None) -> ValohaiEndpoints:
    """The endpoints ``names`` (all when None) of a valohai.yaml document; InvalidInput when
    one of them is not valid, or the document itself is not. Problems of the rest of the
    document (steps, pipelines, endpoints not deployed) are its warnings.

    The document is bounded (:mod:`dockyard_api.yaml_bounds`) before it is expanded.
    Blocking (parsing and validating take up to a second or two at the bounds): call it
    from a worker thread.
    """
    data = _load(text)
    if not isinstance(data, list):
        # No document, or a mapping: not a list of items, which the validator says best.
        try:
            valohai_yaml.parse(data if data is not None else [])
        except valohai_yaml.ValidationErrors as exc:
            raise InvalidInput(
                f"valohai.yaml is not valid: {_validator_messages(exc.errors)}"
            ) from exc
        raise InvalidInput("valohai.yaml defines no endpoints")
    available = _endpoint_items(data)
    repeated = {name: at for name, at in available.items() if len(at) > 1}
    if repeated:
        raise InvalidInput(
            "valohai.yaml defines "
            + "; ".join(
                f"endpoint {name!r} {len(at)} times (items {', '.join(str(i + 1) for i in at)})"
                for name, at in sorted(repeated.items())
            )
            + ": endpoint names must be unique"
        )
    if not available:
        raise InvalidInput("valohai.yaml defines no endpoints")
    wanted = list(names) if names is not None else list(available)
    missing = [name for name in wanted if name not in available]
    if missing:
        raise InvalidInput(
            f"valohai.yaml has no endpoint {', '.join(map(repr, missing))}; "
            f"it has {', '.join(map(repr, available))}"
        )
    deployed = {available[name][0] for name in wanted}
    errors: dict[int, list[object]] = {}
    for error in valohai_yaml.validate(data, raise_exc=False):
        path = list(error.absolute_path)
        index = path[0] if path and isinstance(path[0], int) else -1
        errors.setdefault(index, []).append(error)
    refused = {i: e for i, e in errors.items() if i in deployed or i == -1}
    if refused:
        raise InvalidInput(
            "valohai.yaml is not valid: "
            + _validator_messages([e for i in sorted(refused) for e in refused[i]])
        )
    warnings = [
        f"valohai.yaml's {_what(data, index)} is not valid (not deployed): "
        + _validator_messages(found)
        for index, found in sorted(errors.items())
    ]
    config = valohai_yaml.parse([data[i] for i in sorted(deployed)])
    return ValohaiEndpoints(
        [_endpoint_spec(name, config.endpoints[name]) for name in wanted], warnings
    )


def _endpoint_spec(name: str, endpoint: Any) -> EndpointSpec:
    document = dict(endpoint.serialize())
    refused = [field for field in UNSUPPORTED_FIELDS if document.get(field)]
    if refused:
        raise InvalidInput(
            f"endpoint {name!r} uses {', '.join(refused)}, which Dockyard does not support yet"
        )
    for unsupported in UNSUPPORTED_FIELDS:
        document.pop(unsupported, None)
    try:
        return EndpointSpec.model_validate(document)
    except ValidationError as exc:
        raise InvalidInput(f"endpoint {name!r} in valohai.yaml: {_shortened(str(exc))}") from exc
