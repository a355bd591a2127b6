"""``python -m dockyard_api.webhooks``: deliver webhooks until SIGTERM.

A process of its own (not a task of the API) so that delivery scales and fails apart from
the API; any number may run, each lane is delivered by one of them at a time.
"""

from __future__ import annotations

from nats.js import JetStreamContext

from dockyard_api.webhooks.service import deliver_webhooks
from dockyard_api.webhooks.settings import WebhookSettings
from dockyard_common import run_jetstream_service


def main() -> None:
    """Read settings from the environment and deliver until SIGTERM."""
    settings = WebhookSettings()

    async def work(js: JetStreamContext) -> None:
        await deliver_webhooks(js, settings)

    run_jetstream_service("webhooks", settings, work)


if __name__ == "__main__":
    main()
