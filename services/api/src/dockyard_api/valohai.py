"""Endpoint definitions from a ``valohai.yaml`` document, validated by ``valohai-yaml``."""

from __future__ import annotations

import re
from collections.abc import Sequence

import valohai_yaml
import yaml
from pydantic import ValidationError

from dockyard_common import EndpointSpec, InvalidInput
from dockyard_common.names import ENDPOINT_NAME_RULE, suggest_endpoint_name

__all__ = ["UNSUPPORTED_FIELDS", "endpoints_from_valohai_yaml"]

UNSUPPORTED_FIELDS = ("workspace-volume", "shared-volumes")
"""Endpoint fields valohai.yaml allows that Dockyard cannot honour yet: refused, never dropped."""


_RULE_BROKEN = re.compile(r"^'(?P<value>.*)' does not match '(?P<rule>.*)'$")


def _with_proposal(message: str) -> str:
    """A validator message, with a valid name proposed when an endpoint name broke the rule."""
    broken = _RULE_BROKEN.match(message)
    if broken is None or broken["rule"] != ENDPOINT_NAME_RULE:
        return message
    return (
        f"endpoint name {broken['value']!r} breaks the rule {ENDPOINT_NAME_RULE}; "
        f"try {suggest_endpoint_name(broken['value'])!r}"
    )


def endpoints_from_valohai_yaml(text: str, names: Sequence[str] | None) -> list[EndpointSpec]:
    """The endpoints ``names`` (all when None) of a valohai.yaml document; InvalidInput if wrong."""
    try:
        config = valohai_yaml.parse(text)
    except valohai_yaml.ValidationErrors as exc:
        messages = "; ".join(
            _with_proposal(getattr(error, "message", str(error))) for error in exc.errors
        )
        raise InvalidInput(f"valohai.yaml is not valid: {messages}") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"valohai.yaml is not valid YAML: {exc}") from exc
    available = dict(config.endpoints)
    if not available:
        raise InvalidInput("valohai.yaml defines no endpoints")
    wanted = list(names) if names is not None else list(available)
    missing = [name for name in wanted if name not in available]
    if missing:
        raise InvalidInput(
            f"valohai.yaml has no endpoint {', '.join(map(repr, missing))}; "
            f"it has {', '.join(map(repr, available))}"
        )
    specs = []
    for name in wanted:
        document = dict(available[name].serialize())
        refused = [field for field in UNSUPPORTED_FIELDS if document.get(field)]
        if refused:
            raise InvalidInput(
                f"endpoint {name!r} uses {', '.join(refused)}, which Dockyard does not support yet"
            )
        for field in UNSUPPORTED_FIELDS:
            document.pop(field, None)
        try:
            specs.append(EndpointSpec.model_validate(document))
        except ValidationError as exc:
            raise InvalidInput(f"endpoint {name!r} in valohai.yaml: {exc}") from exc
    return specs
