"""The embedded platform: NATS, Redis, the four services and webhook delivery, no Docker.

Started by ``make run`` (``dockyard up``). Servers given by ``DOCKYARD_NATS_URL`` or
``DOCKYARD_REDIS_URL`` are used instead of starting our own. Ctrl-C (or SIGTERM) stops
the services first, then the servers, and waits until every process has exited.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Literal

import httpx
from pydantic import Field, SecretStr

from dockyard_cli.servers import (
    ServerProcess,
    environment_with,
    start_nats,
    start_redis,
    wait_for_port,
)
from dockyard_common import CommonSettings
from dockyard_common.processes import stop_with_parent

__all__ = [
    "EMBEDDED_TARGETS",
    "EmbeddedPlatform",
    "EmbeddedSettings",
    "login_command",
    "run_embedded",
]

SERVICES = ("api", "builder", "scheduler", "router")

EMBEDDED_TARGETS = (
    {"name": "local-eu", "region": "eu", "kind": "local", "address": "127.0.1.1"},
    {"name": "local-us", "region": "us", "kind": "local", "address": "127.0.2.1"},
)
"""The two local targets the embedded platform registers, each on its own loopback address."""


class EmbeddedSettings(CommonSettings):
    """What ``make run`` honours; ``nats_url``/``redis_url`` count only when set explicitly."""

    api_port: int = 8080
    router_port: int = 8081
    host: str = "127.0.0.1"
    admin_token: SecretStr | None = None
    region: str = "eu"
    router_workers: int = Field(default=2, ge=1, le=64)
    """Router worker processes sharing the router port (SO_REUSEPORT), under one parent."""
    without: list[Literal["builder", "scheduler"]] = Field(default_factory=list)
    """Services not to start (``DOCKYARD_WITHOUT='["scheduler"]'``): a test runs its own."""


@dataclass
class EmbeddedPlatform:
    """The running processes of the embedded platform, stopped in reverse order."""

    settings: EmbeddedSettings
    admin_token: str
    nats_url: str
    redis_url: str
    servers: list[ServerProcess] = field(default_factory=list)
    services: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.api_port}"

    @property
    def router_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.router_port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the servers we own, then the services; returns when all four answer."""
        data_dir = self.settings.data_dir.resolve()
        env = environment_with(
            {
                "DOCKYARD_NATS_URL": self.nats_url,
                "DOCKYARD_REDIS_URL": self.redis_url,
                "DOCKYARD_DATA_DIR": str(data_dir),
                "DOCKYARD_ADMIN_TOKEN": self.admin_token,
                "DOCKYARD_API_HOST": self.settings.host,
                "DOCKYARD_API_PORT": str(self.settings.api_port),
                "DOCKYARD_ROUTER_HOST": self.settings.host,
                "DOCKYARD_ROUTER_PORT": str(self.settings.router_port),
                "DOCKYARD_ROUTER_WORKERS": str(self.settings.router_workers),
                "DOCKYARD_REGION": self.settings.region,
                "DOCKYARD_LOG_FORMAT": self.settings.log_format,
            }
        )
        logs = data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        wanted = [service for service in SERVICES if service not in self.settings.without]
        processes = [(service, f"dockyard_{service}") for service in wanted if service != "router"]
        # Webhook delivery runs apart from the API so that it can fail and scale on its own.
        processes.append(("webhooks", "dockyard_api.webhooks"))
        processes.append(("router", "dockyard_router"))
        for name, module in processes:
            with (logs / f"{name}.log").open("ab") as log:
                self.services[name] = subprocess.Popen(  # noqa: S603 - our own modules
                    [sys.executable, "-m", module],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=stop_with_parent,
                    start_new_session=True,
                )
        self._wait_until_serving(timeout)
        self._register_targets()

    def _wait_until_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        wait_for_port(self.settings.host, self.settings.api_port, timeout, self.services["api"])
        with httpx.Client(base_url=self.api_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                self.check_alive()
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            else:
                raise TimeoutError(f"the API at {self.api_url} was not ready within {timeout} s")
        wait_for_port(
            self.settings.host,
            self.settings.router_port,
            max(1.0, deadline - time.monotonic()),
            self.services["router"],
        )

    def _register_targets(self) -> None:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        with httpx.Client(base_url=self.api_url, headers=headers, timeout=5.0) as client:
            for target in EMBEDDED_TARGETS:
                if client.get(f"/v1/targets/{target['name']}").status_code == 404:
                    body = {k: v for k, v in target.items() if k != "name"}
                    client.put(f"/v1/targets/{target['name']}", json=body).raise_for_status()

    def check_alive(self) -> None:
        """RuntimeError naming the first process that exited on its own."""
        for name, process in self.services.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {process.returncode}; see "
                    f"{self.settings.data_dir / 'logs' / (name + '.log')}"
                )
        for server in self.servers:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.name} exited; see {server.log_path}")

    def stop(self, grace: float = 10.0, forced_grace: float = 8.0) -> None:
        """SIGTERM every service and wait; SIGTERM again the ones still draining (a service
        stops at once on a second signal; the router's parent then ends its workers); kill
        what is left; then stop the servers."""
        running = list(self.services.values())

        def signal_and_wait(wait_s: float) -> None:
            for process in running:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + wait_s
            for process in running:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(max(0.1, deadline - time.monotonic()))

        signal_and_wait(grace)
        signal_and_wait(forced_grace)
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait()
        for server in reversed(self.servers):
            server.stop()


def open_platform(settings: EmbeddedSettings) -> EmbeddedPlatform:
    """Start the servers the settings do not point at elsewhere, and describe the platform."""
    data_dir = settings.data_dir.resolve()
    token = (
        settings.admin_token.get_secret_value()
        if settings.admin_token
        else secrets.token_urlsafe(24)
    )
    servers: list[ServerProcess] = []
    try:
        nats_url = settings.nats_url
        if "nats_url" not in settings.model_fields_set:
            servers.append(start_nats(data_dir))
            nats_url = servers[-1].url
        redis_url = settings.redis_url
        if "redis_url" not in settings.model_fields_set:
            servers.append(start_redis(data_dir / "redis"))
            redis_url = servers[-1].url
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return EmbeddedPlatform(
        settings=settings,
        admin_token=token,
        nats_url=nats_url,
        redis_url=redis_url,
        servers=servers,
    )


def login_command(platform: EmbeddedPlatform) -> str:
    """The ``dockyard login`` line for this platform, ready to paste. Pure."""
    return (
        f"dockyard login --url {platform.api_url} --router-url {platform.router_url} "
        f"--token {platform.admin_token}"
    )


def run_embedded(settings: EmbeddedSettings) -> int:
    """Run the platform in the foreground until Ctrl-C or SIGTERM; the process exit code."""
    # A list, not a threading.Event: a handler runs between any two bytecodes of the main
    # thread, another signal can interrupt it, and Event.set takes a lock that the
    # interrupted handler may hold (seen: `dockyard up` hung there, everything running).
    stopping: list[int] = []

    def on_signal(signum: int, _: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    platform = open_platform(settings)
    try:
        platform.start()
        generated = settings.admin_token is None
        print(
            "Dockyard is running.\n"
            f"  API:     {platform.api_url}   (docs at {platform.api_url}/docs)\n"
            f"  Router:  {platform.router_url}\n"
            f"  Targets: local-eu (127.0.1.1), local-us (127.0.2.1)\n"
            f"  Data:    {settings.data_dir.resolve()}\n"
            f"  Admin token{' (generated)' if generated else ''}: {platform.admin_token}\n"
            "Log in from another terminal, in this folder, after source .venv/bin/activate:\n"
            f"  {login_command(platform)}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        while not stopping:
            platform.check_alive()
            time.sleep(0.5)
    except RuntimeError as exc:
        print(f"dockyard: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        platform.stop()
        print("Dockyard stopped.", flush=True)
    return 0
