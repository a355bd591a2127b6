"""Webhook subscriptions, queued deliveries and the delivery log: models and pure decisions."""

from __future__ import annotations

import fnmatch
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from dockyard_common.models import utcnow
from dockyard_common.names import DeploymentName, OwnerName, ProjectName

__all__ = [
    "TEST_EVENT_TYPE",
    "TEST_LANE",
    "DeliveryJob",
    "DeliveryQueued",
    "DeliveryRecord",
    "DeliveryStatus",
    "Webhook",
    "WebhookCreated",
    "WebhookIn",
    "WebhookOut",
    "matches",
]

TEST_EVENT_TYPE = "webhook.test"
"""The type of the event ``POST .../webhooks/{id}/test`` sends (never on the event stream)."""
TEST_LANE = "_test"
"""The lane of test events: no deployment can have this name, so no real lane is shared."""

_PATTERN = re.compile(r"^[a-z*][a-z0-9.*-]*$")


def _event_pattern(value: str) -> str:
    if not _PATTERN.fullmatch(value) or len(value) > 100:
        raise ValueError(
            f"{value!r} is not an event type pattern: dotted lowercase names with * wildcards "
            "(version.ready, version.*, *)"
        )
    return value


EventPattern = Annotated[str, AfterValidator(_event_pattern)]


class WebhookIn(BaseModel):
    """``POST /v1/projects/{owner}/{project}/webhooks``."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048, description="http(s) URL of the receiver.")
    event_types: list[EventPattern] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        max_length=50,
        description="Event types to deliver; * matches any part (version.*).",
    )
    deployments: list[DeploymentName] | None = Field(
        default=None, max_length=100, description="Only these deployments' events (all if null)."
    )
    description: str | None = Field(default=None, max_length=1000)


class WebhookOut(BaseModel):
    """A subscription as the API shows it: never with its secret."""

    model_config = ConfigDict(frozen=True)

    id: str
    owner: OwnerName
    project: ProjectName
    url: str
    event_types: list[str]
    deployments: list[DeploymentName] | None = None
    description: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class WebhookCreated(WebhookOut):
    """The answer to creating a subscription: the only time its secret is shown."""

    secret: str = Field(description="whsec_... signing key: keep it, it is not shown again.")


class Webhook(WebhookOut):
    """A stored subscription, with the secret its deliveries are signed with."""

    secret: str

    def public(self) -> WebhookOut:
        """What the API may show of it."""
        return WebhookOut.model_validate(self.model_dump(exclude={"secret"}))


def matches(webhook: WebhookOut, event_type: str, deployment: str) -> bool:
    """Whether an event of ``event_type`` about ``deployment`` goes to ``webhook``."""
    if webhook.deployments is not None and deployment not in webhook.deployments:
        return False
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in webhook.event_types)


class DeliveryJob(BaseModel):
    """One event to deliver to one subscription, queued on the lane of its deployment."""

    model_config = ConfigDict(frozen=True)

    webhook_id: str
    owner: OwnerName
    project: ProjectName
    lane: str = Field(description="The deployment, or _test for test events.")
    delivery_id: str
    event_id: str
    event_type: str
    body: str = Field(description="The CloudEvent JSON exactly as signed and sent.")


class DeliveryStatus(StrEnum):
    """Where a delivery stands."""

    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"


class DeliveryRecord(BaseModel):
    """The delivery log's entry about one event after its latest attempt."""

    model_config = ConfigDict(frozen=True)

    delivery_id: str = Field(description="The webhook-id header the receiver saw.")
    event_id: str
    event_type: str
    deployment: str | None
    status: DeliveryStatus
    attempts: int = Field(ge=1)
    response_status: int | None = Field(description="The last attempt's HTTP status.")
    latency_ms: float | None = Field(description="How long the last attempt took.")
    last_error: str | None = None
    queued_at: datetime
    attempted_at: datetime
    next_attempt_at: datetime | None = None


class DeliveryQueued(BaseModel):
    """The answer to sending a test event: what to look for in the log and at the receiver."""

    delivery_id: str = Field(description="The webhook-id header the receiver will see.")
    event_id: str
