"""``python -m dockyard_api.webhooks``: deliver webhooks until SIGTERM.

A process of its own (not a task of the API) so that delivery scales and fails apart from
the API; any number may run, each lane is delivered by one of them at a time.
"""

from __future__ import annotations

from dockyard_api.webhooks.service import deliver_webhooks
from dockyard_api.webhooks.settings import WebhookSettings
from dockyard_common.runtime import run_jetstream_service


def main() -> None:
    """Read settings from the environment and deliver until SIGTERM."""
    settings = WebhookSettings()

    run_jetstream_service("webhooks", settings, lambda nc: deliver_webhooks(nc, settings))


if __name__ == "__main__":
    main()
