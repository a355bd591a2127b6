"""Settings of webhook subscriptions and their delivery (``DOCKYARD_WEBHOOK_*``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from dockyard_api.webhooks.schedule import RetryPolicy
from dockyard_common import CommonSettings

__all__ = ["WebhookSettings"]

DAY_S = 24 * 3600.0


class WebhookSettings(CommonSettings):
    """Which receivers are allowed and how deliveries are retried.

    The API checks subscription URLs with the same allow-list the delivering process uses,
    so it extends this class.
    """

    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Hosts, addresses or networks (``10.0.0.0/8``) a receiver may be on although they are
    private or local. Comma-separated in the environment. An admin setting: it opens the
    platform's own networks to whoever can create a webhook."""
    webhook_retry_base_s: float = Field(default=5.0, gt=0)
    """Delay before the first retry; each further retry waits twice as long as the one before."""
    webhook_retry_max_delay_s: float = Field(default=2 * 3600.0, gt=0)
    """The longest wait between two attempts."""
    webhook_retry_window_s: float = Field(default=DAY_S, gt=0)
    """How long after it was queued a delivery is still retried; then it is given up."""
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    """A receiver that has not answered by then failed this attempt."""
    webhook_ack_wait_s: float = Field(default=60.0, ge=1)
    """A delivering process that dies mid-attempt hands its delivery on after this long."""
    webhook_lane_scan_s: float = Field(default=2.0, gt=0)
    """How often a delivering process looks for queued deliveries it did not queue itself."""

    def retry_policy(self) -> RetryPolicy:
        """The retry settings as the schedule takes them."""
        return RetryPolicy(
            base_s=self.webhook_retry_base_s,
            max_delay_s=self.webhook_retry_max_delay_s,
            window_s=self.webhook_retry_window_s,
        )

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip().lower() for item in value.split(",") if item.strip()]
        return value
