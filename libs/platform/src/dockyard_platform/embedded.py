"""The embedded platform: NATS, Redis, the four services and webhook delivery, no Docker.

Started by ``make run`` (``dockyard up``, or ``dockyard-platform`` itself). Servers given by
``DOCKYARD_NATS_URL`` or ``DOCKYARD_REDIS_URL`` are used instead of starting our own. Before
anything starts, the API and router ports are checked (the router's is bound here and handed
to the router, so that connections wait while it restarts). Every process is supervised: one
that ends on its own is started again (:mod:`dockyard_platform.supervision`), announced on the
event stream, and only a crash loop stops the platform. The banner comes once
``/readyz/platform`` of this platform's own API says every part is ready. Ctrl-C (or SIGTERM)
stops the services first, then the servers, and waits until every process has exited.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from pydantic import Field, SecretStr

from dockyard_common import CommonSettings, configure_logging
from dockyard_platform.admin_token import AdminTokenUnreadable, admin_token_path, kept_admin_token
from dockyard_platform.ports import (
    PortTaken,
    check_port_free,
    claim_listening_socket,
    wait_until_accepting,
)
from dockyard_platform.readiness import StartFailed, wait_until_platform_ready
from dockyard_platform.restart_events import RestartAnnouncer
from dockyard_platform.servers import (
    ServerNotFound,
    environment_with,
    free_port,
    nats_command,
    redis_command,
)
from dockyard_platform.supervision import RestartPolicy
from dockyard_platform.supervisor import CrashLoop, ProcessSpec, Supervisor

__all__ = [
    "EMBEDDED_TARGETS",
    "SERVICES",
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

START_TIMEOUT_S = 60.0


class EmbeddedSettings(CommonSettings):
    """What ``make run`` honours; ``nats_url``/``redis_url`` count only when set explicitly."""

    api_port: int = 8080
    router_port: int = 8081
    host: str = "127.0.0.1"
    admin_token: SecretStr | None = None
    region: str = "eu"
    router_workers: int = Field(default=2, ge=1, le=64)
    """Router worker processes accepting on the router's socket, under one parent."""
    without: list[Literal["builder", "scheduler"]] = Field(default_factory=list)
    """Services not to start (``DOCKYARD_WITHOUT='["scheduler"]'``): a test runs its own."""
    crash_loop_restarts: int = Field(default=5, ge=1)
    """A process restarted this many times within ``crash_loop_window_s`` that ends again
    stops the platform."""
    crash_loop_window_s: float = Field(default=60.0, gt=0)


@dataclass
class EmbeddedPlatform:
    """The embedded platform's processes under one supervisor, and how to reach it."""

    settings: EmbeddedSettings
    admin_token: str
    token_origin: str
    """How the banner names where the token came from."""
    instance_id: str
    router_socket: socket.socket
    supervisor: Supervisor
    announcer: RestartAnnouncer
    nats_url: str
    redis_url: str
    servers: dict[str, ProcessSpec] = field(default_factory=dict)
    """The servers this platform starts (none when their URLs are given), by name."""

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.api_port}"

    @property
    def router_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.router_port}"

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir.resolve()

    def service_specs(self) -> list[ProcessSpec]:
        """The services' processes: builder, scheduler, api, webhooks, router."""
        env = environment_with(
            {
                "DOCKYARD_NATS_URL": self.nats_url,
                "DOCKYARD_REDIS_URL": self.redis_url,
                "DOCKYARD_DATA_DIR": str(self.data_dir),
                "DOCKYARD_ADMIN_TOKEN": self.admin_token,
                "DOCKYARD_INSTANCE_ID": self.instance_id,
                "DOCKYARD_READY_TARGETS": json.dumps([t["name"] for t in EMBEDDED_TARGETS]),
                "DOCKYARD_API_HOST": self.settings.host,
                "DOCKYARD_API_PORT": str(self.settings.api_port),
                "DOCKYARD_ROUTER_HOST": self.settings.host,
                "DOCKYARD_ROUTER_PORT": str(self.settings.router_port),
                "DOCKYARD_ROUTER_URL": self.router_url,
                "DOCKYARD_ROUTER_WORKERS": str(self.settings.router_workers),
                "DOCKYARD_REGION": self.settings.region,
                "DOCKYARD_LOG_FORMAT": self.settings.log_format,
            }
        )
        logs = self.data_dir / "logs"
        wanted = [s for s in SERVICES if s not in self.settings.without and s != "router"]
        modules = [(service, f"dockyard_{service}") for service in wanted]
        # Webhook delivery runs apart from the API so that it can fail and scale on its own.
        modules.append(("webhooks", "dockyard_api.webhooks"))
        specs = [
            ProcessSpec(name, [sys.executable, "-m", module], logs / f"{name}.log", env)
            for name, module in modules
        ]
        listen_fd = self.router_socket.fileno()
        specs.append(
            ProcessSpec(
                "router",
                [sys.executable, "-m", "dockyard_router"],
                logs / "router.log",
                {**env, "DOCKYARD_ROUTER_LISTEN_FD": str(listen_fd)},
                pass_fds=(listen_fd,),
            )
        )
        return specs

    async def start(self) -> None:
        """Start the servers, then the services; return once the platform is ready."""
        for name, spec in self.servers.items():
            self.supervisor.start(spec)
            host, port = _host_port(self.nats_url if name == "nats" else self.redis_url)
            if not await wait_until_accepting(host, port, START_TIMEOUT_S, lambda: True):
                raise StartFailed(f"{name} did not accept connections within {START_TIMEOUT_S} s")
        for spec in self.service_specs():
            self.supervisor.start(spec)
        await wait_until_platform_ready(
            self.api_url,
            self.instance_id,
            self.admin_token,
            EMBEDDED_TARGETS,
            START_TIMEOUT_S,
        )

    async def stop(self) -> None:
        """Stop the services (they drain, a second SIGTERM hurries them), then the servers."""
        services = [name for name in self.supervisor.processes() if name not in self.servers]
        await self.supervisor.stop(services, grace_s=10.0, forced_grace_s=8.0)
        await self.supervisor.stop(reversed(self.servers), grace_s=5.0)
        self.router_socket.close()


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = url.split("://", 1)[1].split("/", 1)[0].rpartition(":")
    return host, int(port)


def open_platform(settings: EmbeddedSettings) -> EmbeddedPlatform:
    """Check the ports, settle the admin token, and describe the platform (nothing runs
    yet). PortTaken, AdminTokenUnreadable or ServerNotFound say what stands in the way."""
    data_dir = settings.data_dir.resolve()
    router_socket = claim_listening_socket(
        settings.host, settings.router_port, "DOCKYARD_ROUTER_PORT"
    )
    try:
        check_port_free(settings.host, settings.api_port, "DOCKYARD_API_PORT")
        if settings.admin_token is not None:
            token, origin = settings.admin_token.get_secret_value(), ""
        else:
            token, made = kept_admin_token(data_dir)
            where = admin_token_path(data_dir)
            origin = f" (generated, kept in {where})" if made else f" (kept in {where})"
        servers: dict[str, ProcessSpec] = {}
        nats_url, redis_url = settings.nats_url, settings.redis_url
        logs = data_dir / "logs"
        if "nats_url" not in settings.model_fields_set:
            port = free_port(settings.host)
            nats_url = f"nats://{settings.host}:{port}"
            command = nats_command(data_dir, settings.host, port)
            servers["nats"] = ProcessSpec("nats", command, logs / "nats.log")
        if "redis_url" not in settings.model_fields_set:
            port = free_port(settings.host)
            redis_url = f"redis://{settings.host}:{port}/0"
            command = redis_command(data_dir / "redis", settings.host, port)
            servers["redis"] = ProcessSpec("redis", command, logs / "redis.log")
    except BaseException:
        router_socket.close()
        raise
    instance_id = secrets.token_hex(8)
    announcer = RestartAnnouncer(
        nats_url, instance_id, source=f"{settings.event_source}/supervisor"
    )
    policy = RestartPolicy(
        crash_loop_restarts=settings.crash_loop_restarts,
        crash_loop_window_s=settings.crash_loop_window_s,
    )
    return EmbeddedPlatform(
        settings=settings,
        admin_token=token,
        token_origin=origin,
        instance_id=instance_id,
        router_socket=router_socket,
        supervisor=Supervisor(policy, announcer.announce),
        announcer=announcer,
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


def _banner(platform: EmbeddedPlatform) -> str:
    return (
        "Dockyard is running.\n"
        f"  API:     {platform.api_url}   (docs at {platform.api_url}/docs)\n"
        f"  Router:  {platform.router_url}\n"
        f"  Targets: local-eu (127.0.1.1), local-us (127.0.2.1)\n"
        f"  Ready:   {platform.api_url}/readyz/platform\n"
        f"  Data:    {platform.data_dir}\n"
        f"  Admin token{platform.token_origin}: {platform.admin_token}\n"
        "Log in from another terminal, in this folder, after source .venv/bin/activate:\n"
        f"  {login_command(platform)}\n"
        "Press Ctrl-C to stop."
    )


async def _first(*awaitables: asyncio.Future[Any]) -> None:
    await asyncio.wait(awaitables, return_when=asyncio.FIRST_COMPLETED)


async def _serve(settings: EmbeddedSettings, signalled: list[int]) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    if signalled:  # came before the loop's handlers took over
        stopping.set()
    try:
        platform = open_platform(settings)
    except (PortTaken, AdminTokenUnreadable, ServerNotFound) as exc:
        print(f"dockyard: {exc}", file=sys.stderr, flush=True)
        return 1
    except OSError as exc:  # a port it may not bind, a data directory it may not write
        print(f"dockyard: cannot start: {exc}", file=sys.stderr, flush=True)
        return 1
    tasks = [
        asyncio.ensure_future(platform.announcer.run()),
        watching := asyncio.ensure_future(platform.supervisor.watch()),
        starting := asyncio.ensure_future(platform.start()),
        signal_seen := asyncio.ensure_future(stopping.wait()),
    ]
    try:
        await _first(watching, starting, signal_seen)
        if not signal_seen.done() and starting.done():
            if (error := starting.exception()) is not None:
                raise error
            print(_banner(platform), flush=True)
            await _first(watching, signal_seen)
        if watching.done() and not signal_seen.done():
            crash: CrashLoop = watching.result()
            print(
                f"dockyard: stopping the platform: {crash.describe()}", file=sys.stderr, flush=True
            )
            return 1
        return 0
    except StartFailed as exc:
        print(f"dockyard: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await platform.stop()
        print("Dockyard stopped.", flush=True)


def run_embedded(settings: EmbeddedSettings) -> int:
    """Run the platform in the foreground until Ctrl-C or SIGTERM; the process exit code."""
    # Until the event loop's handlers take over: a list, not a threading.Event (a handler
    # runs between any two bytecodes, another signal can interrupt it, and Event.set takes
    # a lock the interrupted handler may hold: `dockyard up` once hung there).
    signalled: list[int] = []

    def on_signal(signum: int, _: FrameType | None) -> None:
        signalled.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    configure_logging(
        service="supervisor", log_format=settings.log_format, level=settings.log_level
    )
    # The NATS client logs every lost connection with a traceback; when NATS restarts, the
    # supervisor's own lines say what happened, once.
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    return asyncio.run(_serve(settings, signalled))
