"""Endpoint definitions from a ``valohai.yaml`` document, validated by ``valohai-yaml``."""

from __future__ import annotations

import re
from collections.abc import Sequence

import valohai_yaml
import yaml
from pydantic import ValidationError
from valohai_yaml.objs import Config

from dockyard_api.yaml_bounds import load_bounded_yaml
from dockyard_common.errors import InvalidInput
from dockyard_common.models import EndpointSpec
from dockyard_common.names import ENDPOINT_NAME_RULE, suggest_endpoint_name

__all__ = ["UNSUPPORTED_FIELDS", "endpoints_from_valohai_yaml"]

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


def endpoints_from_valohai_yaml(text: str, names: Sequence[str] | None) -> list[EndpointSpec]:
    """The endpoints ``names`` (all when None) of a valohai.yaml document; InvalidInput if wrong.

    The document is bounded (:mod:`dockyard_api.yaml_bounds`) before it is expanded.
    Blocking (parsing and validating take up to a second or two at the bounds): call it
    from a worker thread.
    """
    try:
        data = load_bounded_yaml(text)
        if data is not None and not isinstance(data, list | dict):
            # valohai_yaml.parse would read a string as another YAML document, unbounded.
            raise InvalidInput(
                f"the document is a {type(data).__name__}, not a list of steps and endpoints"
            )
        config = valohai_yaml.parse(data) if data is not None else Config()
    except InvalidInput as exc:
        raise InvalidInput(f"valohai.yaml is refused: {exc}") from exc
    except valohai_yaml.ValidationErrors as exc:
        raise InvalidInput(f"valohai.yaml is not valid: {_validator_messages(exc.errors)}") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"valohai.yaml is not valid YAML: {_shortened(str(exc))}") from exc
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
            raise InvalidInput(
                f"endpoint {name!r} in valohai.yaml: {_shortened(str(exc))}"
            ) from exc
    return specs
