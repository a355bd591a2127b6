"""``python -m dockyard_api``: serve the API with uvicorn."""

from __future__ import annotations

import uvicorn

from dockyard_api.app import create_app
from dockyard_api.settings import ApiSettings
from dockyard_common import configure_logging


def main() -> None:
    """Read settings from the environment and serve until SIGTERM."""
    settings = ApiSettings()  # admin_token comes from the environment
    configure_logging(service="api", log_format=settings.log_format, level=settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
