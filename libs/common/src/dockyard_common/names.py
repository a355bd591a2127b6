"""Name rules for everything a user names: owners, projects, deployments, endpoints, aliases.

Names end up in URLs, NATS subjects, KV keys, Kubernetes object names and loopback process
labels, so they are lowercase DNS labels (RFC 1123, at most 63 characters). Endpoint names
also follow the valohai.yaml rule ``^[a-z][a-z0-9-]+$``. Pure functions, no I/O.

Every rule is applied with ``re.fullmatch``: Python's ``$`` also matches before a final
newline, so ``match`` with ``$`` lets ``"predict\n"`` through to a NATS subject.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

__all__ = [
    "ENDPOINT_NAME_RULE",
    "MAX_NAME_LENGTH",
    "AliasName",
    "DeploymentName",
    "EndpointName",
    "FileName",
    "InvalidName",
    "OwnerName",
    "ProjectName",
    "TargetName",
    "VersionName",
    "suggest_endpoint_name",
    "suggest_name",
    "validate_dns_label",
    "validate_endpoint_name",
    "validate_file_name",
    "validate_version_name",
]

MAX_NAME_LENGTH = 63
ENDPOINT_NAME_RULE = r"^[a-z][a-z0-9-]+$"

MAX_FILE_NAME_LENGTH = 255

_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_ENDPOINT = re.compile(ENDPOINT_NAME_RULE.removeprefix("^").removesuffix("$"))
# Versions are named YYYYMMDD.N by default, so a dot is allowed inside (never first or last).
_VERSION = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")
# The symbolic name of an endpoint file. valohai.yaml leaves it free and real projects use
# what they like ("model", "Model weights.pt"), so only what cannot be a key of ``files``
# and a layer's role is refused: control characters, slashes, and edge spaces.
_FILE = re.compile(r"[^\x00-\x1f\x7f/\\\s]([^\x00-\x1f\x7f/\\]*[^\x00-\x1f\x7f/\\\s])?")


class InvalidName(ValueError):
    """A name breaks the naming rule; the message quotes the rule and proposes a valid name."""


def suggest_name(value: str) -> str:
    """Return the closest valid DNS label to ``value`` (lowercased, other characters to ``-``)."""
    lowered = re.sub(r"[^a-z0-9-]+", "-", value.strip().lower())
    trimmed = re.sub(r"-{2,}", "-", lowered).strip("-")[:MAX_NAME_LENGTH].rstrip("-")
    return trimmed or "name"


def _check_length(kind: str, value: str) -> None:
    if not value:
        raise InvalidName(f"{kind} name must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidName(
            f"{kind} name {value!r} is {len(value)} characters long; "
            f"at most {MAX_NAME_LENGTH} are allowed"
        )


def validate_dns_label(value: str, kind: str = "resource") -> str:
    """Return ``value`` if it is a lowercase DNS label, else raise :class:`InvalidName`."""
    _check_length(kind, value)
    if not _DNS_LABEL.fullmatch(value):
        raise InvalidName(
            f"{kind} name {value!r} is not a lowercase DNS label (letters a-z, digits and '-', "
            f"starting and ending with a letter or digit); try {suggest_name(value)!r}"
        )
    return value


def suggest_endpoint_name(value: str) -> str:
    """The closest name to ``value`` that follows the endpoint rule."""
    suggestion = suggest_name(value)
    if not suggestion[0].isalpha():
        suggestion = f"e-{suggestion}"[:MAX_NAME_LENGTH]
    if len(suggestion) < 2:
        suggestion = f"{suggestion}-endpoint"
    return suggestion


def validate_endpoint_name(value: str) -> str:
    """Return ``value`` if it is a valid endpoint name (the valohai.yaml rule and a DNS label)."""
    _check_length("endpoint", value)
    if not _ENDPOINT.fullmatch(value) or not _DNS_LABEL.fullmatch(value):
        suggestion = suggest_endpoint_name(value)
        raise InvalidName(
            f"endpoint name {value!r} breaks the rule {ENDPOINT_NAME_RULE} "
            f"(and may not end with '-'); try {suggestion!r}"
        )
    return value


def validate_version_name(value: str) -> str:
    """Return ``value`` if it is a valid version name such as ``20261125.1`` or ``v2``."""
    _check_length("version", value)
    if not _VERSION.fullmatch(value) or ".." in value:
        raise InvalidName(
            f"version name {value!r} may hold only a-z, 0-9, '-' and '.', "
            f"starting and ending with a letter or digit"
        )
    return value


def validate_file_name(value: str) -> str:
    """Return ``value`` if it is a valid endpoint file name such as ``model`` or ``weights.pt``."""
    if not value:
        raise InvalidName("file name must not be empty")
    if len(value) > MAX_FILE_NAME_LENGTH:
        raise InvalidName(
            f"file name {value[:40]!r}... is {len(value)} characters long; "
            f"at most {MAX_FILE_NAME_LENGTH} are allowed"
        )
    if not _FILE.fullmatch(value):
        suggestion = re.sub(r"[\x00-\x1f\x7f/\\]+", "-", value).strip() or "file"
        raise InvalidName(
            f"file name {value!r} may not hold control characters or slashes, nor start or "
            f"end with a space; try {suggestion!r}"
        )
    return value


def _label(kind: str) -> AfterValidator:
    return AfterValidator(lambda value: validate_dns_label(value, kind))


OwnerName = Annotated[str, _label("owner")]
ProjectName = Annotated[str, _label("project")]
DeploymentName = Annotated[str, _label("deployment")]
AliasName = Annotated[str, _label("alias")]
TargetName = Annotated[str, _label("target")]
EndpointName = Annotated[str, AfterValidator(validate_endpoint_name)]
VersionName = Annotated[str, AfterValidator(validate_version_name)]
FileName = Annotated[str, AfterValidator(validate_file_name)]
