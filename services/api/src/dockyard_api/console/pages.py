"""The console's pages (GET): projects and deployments, a deployment, a version, traffic
and regions; and the fragments the pages' script swaps in when something changes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse

from dockyard_api.accounts import Principal, Role
from dockyard_api.auth import authorize
from dockyard_api.console.charts import ReplicaChange, replica_chart, traffic_charts
from dockyard_api.console.feeds import past_events, recent_traffic
from dockyard_api.console.reading import read_deployment, read_owner, read_regions
from dockyard_api.console.rendering import ConsoleRoute, render
from dockyard_api.console.security import Session, SignedIn
from dockyard_api.console.views import build_timings, describe_target, grid, timeline_entry
from dockyard_api.context import ApiContext, get_context
from dockyard_api.endpoint_logs import gather_endpoint_logs
from dockyard_api.event_feed import event_subject
from dockyard_api.problems import Problem
from dockyard_common import (
    DeploymentName as DeploymentPath,
)
from dockyard_common import (
    EndpointName,
    get_logger,
)
from dockyard_common import (
    OwnerName as OwnerPath,
)
from dockyard_common import (
    ProjectName as ProjectPath,
)
from dockyard_common import (
    VersionName as VersionPath,
)
from dockyard_common.subjects import EVENTS_STREAM, version_key

__all__ = ["router"]

log = get_logger(__name__)

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

Context = Annotated[ApiContext, Depends(get_context)]

TIMELINE_LENGTH = 40


def may_view(principal: Principal, owner: str, project: str, deployment: str) -> None:
    """404 unless the principal sees the owner (the same words a missing deployment gets)."""
    authorize(
        principal, owner, Role.VIEWER, f"deployment {owner}/{project}/{deployment} does not exist"
    )


def common(session: Session) -> dict[str, Any]:
    """What every signed-in page's frame shows."""
    principal = session.principal
    return {
        "principal": principal,
        "who": "platform admin"
        if principal.is_platform_admin
        else f"{principal.owner} ({principal.role.value})",
        "csrf": session.csrf,
        "describe": describe_target,
    }


@router.get("")
async def console_root() -> Response:
    """``/console`` → ``/console/``."""
    return RedirectResponse("/console/", status_code=307)


@router.get("/")
async def overview(request: Request, session: SignedIn, context: Context) -> Response:
    """Every project and deployment the token sees, with targets and aliases."""
    principal = session.principal
    if principal.owner is not None:
        owners = [principal.owner]
    else:
        owners = [name async for name, _ in context.owners.items()]
    listing = [(owner, await read_owner(context, owner)) for owner in owners]
    return render(request, "overview.html", listing=listing, **common(session))


def _deployment_values(session: Session, view: Any, owner: str) -> dict[str, Any]:
    columns, rows = grid(view.versions, view.aliases)
    principal = session.principal
    return {
        "view": view,
        "columns": columns,
        "rows": rows,
        "may_deploy": principal.may(owner, Role.DEPLOYER),
        "ready_versions": [v.name for v in view.versions if v.status.value == "ready"],
        "base": f"/console/d/{owner}/{view.deployment.project}/{view.deployment.name}",
        **common(session),
    }


@router.get("/d/{owner}/{project}/{deployment}")
async def deployment_page(
    request: Request,
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    session: SignedIn,
    context: Context,
) -> Response:
    """A deployment: its status grid, aliases and live timeline."""
    may_view(session.principal, owner, project, deployment)
    view = await read_deployment(context, owner, project, deployment)
    info = await context.js.stream_info(EVENTS_STREAM)
    # The timeline starts with the last day's events: a busy deployment's whole history
    # would be read on every page view otherwise.
    since = datetime.now().astimezone() - timedelta(days=1)
    events = await past_events(context.js, event_subject(owner, project, deployment), since)
    timeline = [
        timeline_entry(0, event_type, event) for event_type, event in events[-TIMELINE_LENGTH:]
    ]
    timeline.reverse()
    return render(
        request,
        "deployment.html",
        after=info.state.last_seq,
        timeline=timeline,
        **_deployment_values(session, view, owner),
    )


@router.get("/d/{owner}/{project}/{deployment}/live")
async def deployment_live(
    request: Request,
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    session: SignedIn,
    context: Context,
) -> Response:
    """The part of the deployment page that events change: grid and aliases."""
    may_view(session.principal, owner, project, deployment)
    view = await read_deployment(context, owner, project, deployment)
    return render(request, "_live.html", **_deployment_values(session, view, owner))


@router.get("/d/{owner}/{project}/{deployment}/versions/{version}")
async def version_page(
    request: Request,
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    version: VersionPath,
    session: SignedIn,
    context: Context,
) -> Response:
    """A version: build progress and timings, image digests, notes, endpoint logs."""
    may_view(session.principal, owner, project, deployment)
    stored = await context.versions.get(version_key(owner, project, deployment, version))
    if stored is None:
        raise Problem(
            404, "not-found", f"version {owner}/{project}/{deployment}/{version} does not exist"
        )
    record = stored.value
    events = [
        (event_type, event)
        for event_type, event in await past_events(
            context.js, event_subject(owner, project, deployment).removesuffix(">") + "version.>"
        )
        if (event.get("data") or {}).get("name", (event.get("data") or {}).get("version"))
        == version
    ]
    timings = build_timings(
        [(t, datetime.fromisoformat(str(e["time"]).replace("Z", "+00:00"))) for t, e in events]
    )
    progress = [timeline_entry(0, t, e) for t, e in events if t == "version.build.progress"][-1:]
    logs = {
        spec.name: await gather_endpoint_logs(context, record, spec.name, record.targets, 100)
        for spec in record.endpoints
    }
    info = await context.js.stream_info(EVENTS_STREAM)
    return render(
        request,
        "version.html",
        version=record,
        timings=timings,
        progress=progress,
        logs=logs,
        after=info.state.last_seq,
        base=f"/console/d/{owner}/{project}/{deployment}",
        may_deploy=session.principal.may(owner, Role.DEPLOYER),
        **common(session),
    )


@router.get("/d/{owner}/{project}/{deployment}/versions/{version}/logs/{endpoint}")
async def logs_fragment(
    request: Request,
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    version: VersionPath,
    endpoint: EndpointName,
    session: SignedIn,
    context: Context,
    tail: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """An endpoint's last log lines per target and replica (the page's live follow)."""
    may_view(session.principal, owner, project, deployment)
    stored = await context.versions.get(version_key(owner, project, deployment, version))
    if stored is None or endpoint not in {s.name for s in stored.value.endpoints}:
        raise Problem(404, "not-found", f"version {version!r} has no endpoint {endpoint!r}")
    logs = await gather_endpoint_logs(context, stored.value, endpoint, stored.value.targets, tail)
    return render(request, "_logs.html", endpoint=endpoint, endpoint_logs=logs)


async def _charts(context: ApiContext, owner: str, project: str, deployment: str) -> dict[str, Any]:
    span = timedelta(hours=1)
    now = datetime.now().astimezone()
    reports = await recent_traffic(context.js, owner, project, deployment, span)
    subject = event_subject(owner, project, deployment).removesuffix(">") + "endpoint.>"
    changes = [
        ReplicaChange(
            at=datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")),
            version=str(data.get("version")),
            endpoint=str(data.get("endpoint")),
            target=str(data.get("target")),
            replicas=len(data.get("upstreams") or []),
        )
        for _, event in await past_events(context.js, subject)
        if isinstance(data := event.get("data"), dict)
    ]
    return {
        "charts": traffic_charts(reports, now, span),
        "replicas": replica_chart(changes, now, span),
    }


@router.get("/d/{owner}/{project}/{deployment}/traffic")
async def traffic_page(
    request: Request,
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    session: SignedIn,
    context: Context,
) -> Response:
    """Request rate, errors and latency per version and region over the last hour."""
    may_view(session.principal, owner, project, deployment)
    view = await read_deployment(context, owner, project, deployment)
    return render(
        request,
        "traffic.html",
        view=view,
        **await _charts(context, owner, project, deployment),
        base=f"/console/d/{owner}/{project}/{deployment}",
        **common(session),
    )


@router.get("/d/{owner}/{project}/{deployment}/traffic/charts")
async def traffic_fragment(
    request: Request,
    owner: OwnerPath,
    project: ProjectPath,
    deployment: DeploymentPath,
    session: SignedIn,
    context: Context,
) -> Response:
    """The charts alone (the page redraws them every few seconds)."""
    may_view(session.principal, owner, project, deployment)
    await read_deployment(context, owner, project, deployment)
    return render(request, "_charts.html", **await _charts(context, owner, project, deployment))


@router.get("/regions")
async def regions_page(request: Request, session: SignedIn, context: Context) -> Response:
    """Regions: their targets, drain state, and (for the platform admin) the router's view."""
    targets, regions = await read_regions(context)
    names = sorted({t.region for t in targets} | set(regions))
    router_view: list[dict[str, Any]] | None = None
    router_error = None
    if session.principal.is_platform_admin:
        router_view, router_error = await _router_regions(context)
    return render(
        request,
        "regions.html",
        names=names,
        targets=targets,
        regions=regions,
        router_view=router_view,
        router_error=router_error,
        **common(session),
    )


async def _router_regions(context: ApiContext) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The router's ops view of its regions (asked with the platform admin token)."""
    url = f"{context.settings.router_url.rstrip('/')}/_ops/regions"
    token = context.settings.admin_token.get_secret_value()
    try:
        async with httpx.AsyncClient(timeout=3.0) as client:
            answer = await client.get(url, headers={"Authorization": f"Bearer {token}"})
        answer.raise_for_status()
        items: list[dict[str, Any]] = answer.json()["items"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return None, f"the router at {context.settings.router_url} did not answer: {exc}"
    return items, None
