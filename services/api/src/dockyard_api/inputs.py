"""What clients may send. Separate from the stored models: a client never sets status or image."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from dockyard_common.models import BuildSpec, CodeRef, EndpointSpec, Replicas, TargetKind
from dockyard_common.names import EndpointName, FileName, TargetName, VersionName

__all__ = ["DeploymentIn", "TargetIn", "VersionIn"]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TargetIn(_Input):
    """``PUT /v1/targets/{target}``."""

    region: TargetName
    kind: TargetKind = TargetKind.LOCAL
    address: str | None = Field(default=None, description="Loopback address of a local target.")
    context: str | None = Field(default=None, description="kubeconfig context of a cluster.")
    public_url: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _local_targets_bind_loopback(self) -> TargetIn:
        if self.kind is TargetKind.LOCAL:
            try:
                address = ipaddress.ip_address(self.address or "127.0.0.1")
            except ValueError:
                raise ValueError(f"address {self.address!r} is not an IP address") from None
            if not address.is_loopback:
                raise ValueError(
                    f"a local target binds a loopback address (127.x.y.z), not {self.address}"
                )
        return self


class DeploymentIn(_Input):
    """``PUT .../deployments/{deployment}``: where the deployment's versions run."""

    targets: list[TargetName] = Field(min_length=1, max_length=32)


FileSource = Annotated[
    str, StringConstraints(pattern=r"^(sha256:[0-9a-f]{64}|https?://\S+)$", max_length=2048)
]


# Environment variable names as POSIX shells and Kubernetes take them; a value may hold any
# character but NUL, which no process environment can carry.
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=255)]
EnvValue = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]


def _endpoints_form(value: Any) -> str:
    """Names when every item is a string, inline definitions otherwise (one error list each)."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "names"
    return "definitions"


EndpointsIn = Annotated[
    Annotated[list[EndpointName], Tag("names")] | Annotated[list[EndpointSpec], Tag("definitions")],
    Discriminator(_endpoints_form),
]


class VersionIn(_Input):
    """``POST .../deployments/{deployment}/versions``.

    ``endpoints`` is either the names to take from ``valohai_yaml`` (default: the
    ``valohai.yaml`` at the root of the code, every endpoint in it) or full endpoint
    definitions inline, in the valohai.yaml vocabulary.
    """

    name: VersionName | None = None
    code: CodeRef
    valohai_yaml: str | None = Field(default=None, max_length=256 * 1024)
    endpoints: EndpointsIn | None = Field(default=None, min_length=1)
    files: dict[EndpointName, dict[FileName, FileSource]] = Field(
        default_factory=dict,
        description="Per endpoint: file name (as declared in its files) → an uploaded blob's "
        "digest, or an https:// URL the builder downloads it from.",
    )
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    build: BuildSpec = Field(default_factory=BuildSpec)
    replicas: dict[EndpointName, Replicas] = Field(
        default_factory=dict,
        description="Per endpoint: how many replicas run on each target ('min'; up to 'max' "
        "where an autoscaler runs, aiming at 'target_cpu_percent'). valohai.yaml has no "
        "replica field, so the count is given here at submission; it overrides a 'replicas' "
        "of an inline definition. Default: one replica. A local target runs 'min' replicas, "
        "each on its own $PORT.",
        examples=[{"predict": {"min": 2, "max": 2}}],
    )
