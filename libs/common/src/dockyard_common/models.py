"""Resource snapshots: what the state of record holds and what events carry.

Every model here is frozen: a snapshot is replaced, never edited in place. Input models
(what a client may send) live with the API; these are the stored and published shapes.
Pure data, no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from dockyard_common.names import (
    AliasName,
    DeploymentName,
    EndpointName,
    FileName,
    OwnerName,
    ProjectName,
    TargetName,
    VersionName,
)

__all__ = [
    "Alias",
    "AliasChange",
    "AliasTarget",
    "BlobDigest",
    "BuildProgress",
    "BuildSpec",
    "CodeRef",
    "Deployment",
    "EndpointFile",
    "EndpointSpec",
    "EndpointState",
    "GitRef",
    "ImageInfo",
    "LayerInfo",
    "ProcessHeartbeat",
    "Replicas",
    "RouterHeartbeat",
    "Target",
    "TargetKind",
    "Version",
    "VersionStatus",
    "WorkloadState",
    "utcnow",
]

BlobDigest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]

_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
ImageName = Annotated[
    str,
    StringConstraints(
        max_length=512,
        pattern=(
            r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?/)?"
            rf"{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
            r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
        ),
    ),
]
"""An image reference as Docker reads it: ``[host[:port]/]path[:tag][@sha256:digest]``."""
"""A content digest as OCI writes it: ``sha256:`` and 64 lowercase hex digits."""


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (every stored timestamp uses it)."""
    return datetime.now(UTC)


class _Snapshot(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class TargetKind(StrEnum):
    """Where a target runs endpoints."""

    LOCAL = "local"
    CONTAINER = "container"
    """Containers on one machine's Docker-compatible engine."""
    KUBERNETES = "kubernetes"


class Target(_Snapshot):
    """A place endpoints run: a region's cluster, or a local runtime standing for one."""

    name: TargetName
    region: TargetName
    kind: TargetKind = TargetKind.LOCAL
    address: str | None = Field(
        default=None, description="Loopback address a local target binds its endpoints to."
    )
    context: str | None = Field(default=None, description="kubeconfig context of a cluster.")
    public_url: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class Deployment(_Snapshot):
    """A named group of versioned endpoints placed on one or more targets."""

    owner: OwnerName
    project: ProjectName
    name: DeploymentName
    targets: list[TargetName] = Field(min_length=1)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def scope(self) -> tuple[str, str, str]:
        """(owner, project, deployment): where events about it are published."""
        return self.owner, self.project, self.name


class EndpointFile(_Snapshot):
    """A file an endpoint needs (a model, say), placed at ``path`` under the code root."""

    name: FileName = Field(min_length=1, max_length=255)
    path: str = Field(min_length=1, max_length=1024)
    description: str | None = None
    digest: BlobDigest | None = Field(default=None, description="The uploaded blob to place.")
    url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        max_length=2048,
        description="Where the builder downloads the file from, instead of a blob.",
    )

    @property
    def source(self) -> str | None:
        """The blob digest or the URL the file comes from (None until one is given)."""
        return self.digest or self.url

    @field_validator("path")
    @classmethod
    def _inside_the_code_root(cls, path: str) -> str:
        parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in path):
            raise ValueError(f"file path {path!r} holds a control character")
        if path.startswith("/") or ".." in parts or not parts:
            raise ValueError(f"file path {path!r} must be relative, inside the code root")
        if any(part.startswith(".wh.") for part in parts):
            raise ValueError(f"file path {path!r}: names starting with .wh. are image whiteouts")
        return "/".join(parts)


class Replicas(_Snapshot):
    """How many replicas of an endpoint run on each target, and when to add more.

    ``min == max`` is a fixed count. Otherwise an autoscaler moves between them: on request
    load (``metric: concurrency``, every target kind), aiming at ``target_concurrency``
    requests in flight per replica; or on CPU (``metric: cpu``, Kubernetes targets, through
    a HorizontalPodAutoscaler), aiming at ``target_cpu_percent`` of the requested CPU.
    ``min: 0`` lets an endpoint idle for ``idle_s`` seconds scale to zero; its next request
    waits for a replica to start.
    """

    min: int = Field(default=1, ge=0, le=100)
    max: int = Field(default=1, ge=1, le=100)
    metric: Literal["concurrency", "cpu"] = "concurrency"
    target_concurrency: float = Field(
        default=4.0,
        gt=0,
        le=1000,
        description="Requests in flight per replica the autoscaler aims at (a model server "
        "serves a few at once).",
    )
    target_cpu_percent: int = Field(default=70, ge=1, le=100)
    idle_s: float = Field(
        default=300.0,
        ge=1,
        le=7 * 24 * 3600,
        description="With min 0: how long without a request before the replicas stop.",
    )

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"replicas min ({self.min}) must not exceed max ({self.max})")
        return self

    @property
    def autoscaled(self) -> bool:
        """Whether an autoscaler, not a fixed count, decides how many run."""
        return self.min < self.max


class EndpointSpec(_Snapshot):
    """One HTTP server of a version, in the valohai.yaml endpoint vocabulary."""

    name: EndpointName
    description: str | None = None
    image: ImageName | None = Field(default=None, description="Base image, e.g. python:3.11-slim.")
    port: int | None = Field(default=None, ge=1, le=65535)
    server_command: str | list[str] | None = Field(default=None, alias="server-command")
    wsgi: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][\w.]*(:[A-Za-z_]\w*(\(\))?)?$",
        description="module, module:callable, or module:factory() (an app factory, called "
        "once at start, as gunicorn takes it).",
    )
    files: list[EndpointFile] = Field(default_factory=list)
    resources: dict[str, Any] = Field(default_factory=dict)
    node_selector: str | None = Field(default=None, alias="node-selector")
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    replicas: Replicas = Field(default_factory=Replicas)

    @model_validator(mode="after")
    def _one_way_to_serve(self) -> EndpointSpec:
        if (self.server_command is None) == (self.wsgi is None):
            raise ValueError(
                f"endpoint {self.name!r} needs exactly one of 'server-command' or 'wsgi'"
            )
        return self

    @property
    def listen_port(self) -> int:
        """The port the endpoint's server is declared to listen on (valohai's default 8000)."""
        return self.port if self.port is not None else 8000


class GitRef(_Snapshot):
    """A commit of a git repository: the code of a version, fetched by the builder."""

    url: str = Field(
        min_length=1,
        max_length=2048,
        pattern=r"^(https://|ssh://|git@|file://)\S+$",
        description="https://, ssh:// or git@host:path (file:// only where an admin allows it).",
    )
    ref: str = Field(
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
        description="A commit sha, a tag or a branch.",
    )

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: str) -> str:
        # A token in the URL would be stored, logged and written into image annotations.
        if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError("git URLs must not carry credentials (user:token@host)")
        return url


class CodeRef(_Snapshot):
    """Where a version's code comes from: a tar.gz blob uploaded to the project, or git."""

    blob: BlobDigest | None = None
    git: GitRef | None = None

    @model_validator(mode="after")
    def _one_source(self) -> CodeRef:
        if (self.blob is None) == (self.git is None):
            raise ValueError("code needs exactly one of 'blob' or 'git'")
        return self

    @property
    def description(self) -> str:
        """The code source in one line (for annotations and messages)."""
        return self.blob if self.blob is not None else f"{self.git.url}@{self.git.ref}"  # type: ignore[union-attr]


class VersionStatus(StrEnum):
    """A version's life: built once, then deployed to every target of its deployment."""

    PENDING = "pending"
    BUILDING = "building"
    BUILT = "built"
    DEPLOYING = "deploying"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


class LayerInfo(_Snapshot):
    """One layer of a built image."""

    digest: BlobDigest
    size: int
    media_type: str
    role: str = Field(
        description="What the layer holds: base, code, runner, dependencies, file:<name>, ..."
    )


class ImageInfo(_Snapshot):
    """A built version image: an OCI index with one image manifest per endpoint.

    Each endpoint's manifest is built on the base image its definition names; the code,
    runner and file layers are shared between them (stored once), and each distinct base
    Python gets a dependency layer of its own.
    """

    reference: str = Field(description="Where the index lives, e.g. oci:<layout dir>:<ref>.")
    digest: BlobDigest = Field(description="Digest of the OCI image index of the version.")
    endpoints: dict[str, BlobDigest] = Field(description="Image manifest digest per endpoint.")
    layers: list[LayerInfo] = Field(
        description="Every layer the build made or used, each once: the bases', the shared "
        "ones, a dependency layer per base Python, and the wheelhouse for local targets "
        "(role wheels:<python>, in no manifest)."
    )
    base_image: str | None = Field(
        default=None,
        description="The base image every endpoint runs on; None when they name different "
        "ones (see bases).",
    )
    base_included: bool = Field(
        default=False,
        description="Whether the base images' layers are in the image (runnable by any OCI "
        "runtime) or only named by it (the embedded default: local targets run the app "
        "layers on the host's Python).",
    )
    bases: dict[str, str] = Field(
        default_factory=dict, description="The base image each endpoint runs on, by endpoint."
    )
    pythons: dict[str, str] = Field(
        default_factory=dict,
        description="The Python (3.9) each endpoint's image dependencies are built for, by "
        "endpoint: read from its base image, else its tag, else the builder's.",
    )
    file_sizes: dict[str, int] = Field(
        default_factory=dict,
        description="The bytes of each endpoint file, by '<endpoint>/<file name>'.",
    )
    layout: str | None = Field(
        default=None, description="The same index in the builder's OCI layout: oci:<dir>:<ref>."
    )
    notes: list[str] = Field(default_factory=list, description="What a user should know.")
    pushed_bytes: int | None = Field(
        default=None, description="Bytes the build sent to the registry (cached blobs are not)."
    )
    build_seconds: float | None = None


class WorkloadState(StrEnum):
    """The state of one endpoint of a version on one target."""

    PENDING = "pending"
    DEPLOYING = "deploying"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"
    IDLE = "idle"
    """Scaled to zero: no replica runs; the next request starts one."""


class BuildProgress(_Snapshot):
    """How far a version's build has come: bytes done of the bytes this phase must handle."""

    owner: OwnerName
    project: ProjectName
    deployment: DeploymentName
    version: VersionName
    phase: Literal["layers", "push"] = Field(
        description="layers: writing the code, files and dependencies; push: sending to the "
        "registry (blobs it already has are not counted)."
    )
    bytes_done: int = Field(ge=0)
    bytes_total: int = Field(ge=0)

    @property
    def scope(self) -> tuple[str, str, str]:
        """(owner, project, deployment): where events about it are published."""
        return self.owner, self.project, self.deployment


class EndpointState(_Snapshot):
    """One endpoint of one version on one target, as the scheduler observed it."""

    owner: OwnerName
    project: ProjectName
    deployment: DeploymentName
    version: VersionName
    endpoint: EndpointName
    target: TargetName
    region: TargetName
    state: WorkloadState
    upstreams: list[str] = Field(
        default_factory=list,
        description="Where the replicas answer: http://host:port, or unix:/path of a Unix socket.",
    )
    reason: str | None = None
    notes: list[str] = Field(
        default_factory=list,
        description="What this target made of the endpoint: the Python it runs on, where it "
        "listens, and every field of its definition the target did not honour.",
    )
    desired_replicas: int | None = Field(
        default=None,
        ge=0,
        description="How many replicas the autoscaler wants here (upstreams: how many serve).",
    )
    scaled_because: str | None = Field(
        default=None, description="Why the replica count last changed: load, idle, a wake-up."
    )
    observed_at: datetime = Field(default_factory=utcnow)

    @property
    def scope(self) -> tuple[str, str, str]:
        """(owner, project, deployment): where events about it are published."""
        return self.owner, self.project, self.deployment


class BuildSpec(_Snapshot):
    """How a version's image is made.

    ``layers`` (the default) appends layers to the base image without a container engine:
    fast, cached and reproducible. ``docker`` builds a generated Dockerfile on a
    Docker-compatible engine, for code that needs ``run`` steps (system packages, compiled
    extensions); its images are only as reproducible as those steps.
    """

    backend: Literal["layers", "docker"] = "layers"
    run: list[Annotated[str, StringConstraints(min_length=1, max_length=4096)]] = Field(
        default_factory=list,
        max_length=50,
        description="Shell commands run in the image after the code is copied (docker only), "
        "each a Dockerfile RUN step, in order, in /app.",
    )

    @model_validator(mode="after")
    def _run_needs_docker(self) -> BuildSpec:
        if self.run and self.backend != "docker":
            raise ValueError("build.run steps need the docker backend (build.backend: docker)")
        return self


class Version(_Snapshot):
    """An immutable build of a deployment and where it stands."""

    owner: OwnerName
    project: ProjectName
    deployment: DeploymentName
    name: VersionName
    status: VersionStatus = VersionStatus.PENDING
    code: CodeRef
    endpoints: list[EndpointSpec] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    build: BuildSpec = Field(default_factory=BuildSpec)
    targets: list[TargetName] = Field(min_length=1)
    image: ImageInfo | None = None
    endpoint_states: list[EndpointState] = Field(default_factory=list)
    error: str | None = None
    warnings: list[str] = Field(
        default_factory=list,
        description="What the submission accepted but a user should know: endpoints of its "
        "valohai.yaml that were not deployed and would not validate, say.",
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = Field(
        default=None,
        description="When it was last started again after a stop (retention counts its "
        "grace from then too); None if never.",
    )

    @property
    def scope(self) -> tuple[str, str, str]:
        """(owner, project, deployment): where events about it are published."""
        return self.owner, self.project, self.deployment


class ProcessHeartbeat(_Snapshot):
    """A process that follows a KV bucket is alive, and how far into the bucket it has applied.

    One number, whatever the number of keys: a process follows the bucket's stream in order,
    so having applied the write at revision ``n`` means every earlier write too (or a later
    write of the same key).

    Fields it does not know are ignored, so that processes of two releases understand each
    other during a rolling upgrade; a beat without ``applied_through`` counts as lagging."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    process: str
    applied_through: int = Field(
        default=0, ge=0, description="Every write up to this KV revision is applied."
    )
    at: datetime = Field(default_factory=utcnow)


class RouterHeartbeat(ProcessHeartbeat):
    """A router process is alive, and how far into the alias bucket it has applied."""

    region: str


class AliasTarget(_Snapshot):
    """Where an alias points: one version, or versions split by weight (a canary)."""

    version: VersionName | None = None
    weights: dict[VersionName, Annotated[int, Field(ge=0, le=100)]] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> AliasTarget:
        if (self.version is None) == (self.weights is None):
            raise ValueError("give exactly one of 'version' or 'weights'")
        if self.weights is not None:
            if len(self.weights) < 2:
                raise ValueError("weights split traffic between two or more versions")
            if sum(self.weights.values()) != 100:
                raise ValueError(f"weights must add up to 100, not {sum(self.weights.values())}")
        return self

    @property
    def versions(self) -> list[str]:
        """Every version this target sends traffic to (a weight of 0 included)."""
        return [self.version] if self.version is not None else sorted(self.weights or {})


class AliasChange(_Snapshot):
    """One entry of an alias's history."""

    target: AliasTarget
    regions: dict[TargetName, AliasTarget] = Field(default_factory=dict)
    action: Literal["set", "rollback"] = Field(
        description="'set' (a PUT of the alias) or 'rollback' (a rollback, or the platform "
        "pointing an alias back when a version it was switched to stopped meanwhile)."
    )
    by: str = Field(description="Who changed it: a token id, or 'platform-admin'.")
    at: datetime = Field(default_factory=utcnow)


class Alias(_Snapshot):
    """A name (``staging``, ``production``) pointing to versions, with every change kept."""

    owner: OwnerName
    project: ProjectName
    deployment: DeploymentName
    name: AliasName
    target: AliasTarget
    regions: dict[TargetName, AliasTarget] = Field(
        default_factory=dict, description="Per-region overrides (a staged regional rollout)."
    )
    history: list[AliasChange] = Field(default_factory=list, description="Oldest first.")
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def scope(self) -> tuple[str, str, str]:
        """(owner, project, deployment): where events about it are published."""
        return self.owner, self.project, self.deployment

    def target_in(self, region: str) -> AliasTarget:
        """Where the alias points for requests served from ``region``."""
        return self.regions.get(region, self.target)

    @property
    def versions(self) -> set[str]:
        """Every version the alias sends traffic to, in any region."""
        found = set(self.target.versions)
        for override in self.regions.values():
            found.update(override.versions)
        return found
