"""The console's actions (POST forms): set an alias or a canary weight, roll back, stop a
version, drain a region, test an endpoint.

Each checks the session's CSRF token first, then the API's own authorisation (the role the
JSON route needs), then calls the same workflow the JSON API calls. The result is shown on
the page the browser goes back to; a refusal is an error page with the API's own words.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from dockyard_api.accounts import Principal, Role
from dockyard_api.auth import authorize, require_platform_admin
from dockyard_api.console.pages import common, may_view
from dockyard_api.console.reading import DeploymentView, read_deployment
from dockyard_api.console.rendering import ConsoleRoute, flash, render
from dockyard_api.console.security import Session, SignedIn, check_csrf
from dockyard_api.console.tester import (
    SampleCall,
    check_body,
    curl_command,
    parse_headers,
    run_test_call,
)
from dockyard_api.context import ApiContext, get_context
from dockyard_api.draining import set_drained
from dockyard_api.problems import Problem
from dockyard_api.stopping import request_stop
from dockyard_api.switching import AliasRollback, AliasSwitch, roll_back_alias, switch_alias
from dockyard_common import (
    AliasName,
    AliasTarget,
    DeploymentName,
    EndpointName,
    OwnerName,
    ProjectName,
    TargetName,
    VersionName,
    get_logger,
)

__all__ = ["router"]

log = get_logger(__name__)

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

Context = Annotated[ApiContext, Depends(get_context)]
Csrf = Annotated[str, Form(max_length=200)]


def _may_deploy(principal: Principal, owner: str, project: str, deployment: str) -> None:
    authorize(
        principal,
        owner,
        Role.DEPLOYER,
        f"deployment {owner}/{project}/{deployment} does not exist",
    )


def _actor(principal: Principal) -> str:
    return principal.token_id or "platform-admin"


def _back(owner: str, project: str, deployment: str, message: str) -> Response:
    response = RedirectResponse(f"/console/d/{owner}/{project}/{deployment}", status_code=303)
    return flash(response, message)


def _switched_message(alias: str, where: str, lagging: list[str], seconds: float) -> str:
    if lagging:
        return f"{alias} → {where}: stored; routers still applying it: {', '.join(lagging)}"
    return f"{alias} → {where}: applied by every router in {seconds * 1000:.0f} ms"


@router.post("/d/{owner}/{project}/{deployment}/aliases")
async def set_alias(
    owner: OwnerName,
    project: ProjectName,
    deployment: DeploymentName,
    session: SignedIn,
    context: Context,
    csrf: Csrf = "",
    alias: Annotated[AliasName, Form()] = "production",
    version: Annotated[VersionName, Form()] = "",
    canary: Annotated[str, Form(max_length=100)] = "",
    canary_weight: Annotated[int, Form(ge=0, le=100)] = 0,
) -> Response:
    """Point an alias at a version, or (with a canary version and weight) split it."""
    check_csrf(session.csrf, csrf)
    _may_deploy(session.principal, owner, project, deployment)
    try:
        target = (
            AliasTarget(weights={version: 100 - canary_weight, canary: canary_weight})
            if canary and canary != version
            else AliasTarget(version=version)
        )
    except ValidationError as exc:
        raise Problem(422, "invalid-input", exc.errors()[0]["msg"]) from None
    switch = AliasSwitch(
        owner=owner,
        project=project,
        deployment=deployment,
        alias=alias,
        target=target,
        regions={},
        force=False,
        by=_actor(session.principal),
    )
    switched = await switch_alias(context, switch)
    applied = switched.applied
    log.info("console.alias.set", owner=owner, project=project, deployment=deployment, alias=alias)
    where = (
        version
        if target.version
        else " · ".join(f"{k} {v}%" for k, v in sorted((target.weights or {}).items()))
    )
    return _back(
        owner,
        project,
        deployment,
        _switched_message(alias, where, list(applied.lagging), applied.seconds),
    )


@router.post("/d/{owner}/{project}/{deployment}/aliases/{alias}/rollback")
async def rollback_alias(
    owner: OwnerName,
    project: ProjectName,
    deployment: DeploymentName,
    alias: AliasName,
    session: SignedIn,
    context: Context,
    csrf: Csrf = "",
) -> Response:
    """Point the alias back where it pointed before."""
    check_csrf(session.csrf, csrf)
    _may_deploy(session.principal, owner, project, deployment)
    rollback = AliasRollback(
        owner=owner,
        project=project,
        deployment=deployment,
        alias=alias,
        force=False,
        by=_actor(session.principal),
    )
    switched = await roll_back_alias(context, rollback)
    target = switched.alias.target
    where = target.version or " · ".join(
        f"{k} {v}%" for k, v in sorted((target.weights or {}).items())
    )
    applied = switched.applied
    message = _switched_message(alias, where, list(applied.lagging), applied.seconds)
    return _back(owner, project, deployment, f"rolled back: {message}")


@router.post("/d/{owner}/{project}/{deployment}/versions/{version}/stop")
async def stop_version(
    owner: OwnerName,
    project: ProjectName,
    deployment: DeploymentName,
    version: VersionName,
    session: SignedIn,
    context: Context,
    csrf: Csrf = "",
) -> Response:
    """Stop a version on every target (refused while an alias points at it)."""
    check_csrf(session.csrf, csrf)
    _may_deploy(session.principal, owner, project, deployment)
    stopped = await request_stop(context, owner, project, deployment, version, force=False)
    return _back(owner, project, deployment, f"{version}: {stopped.status.value}")


@router.post("/regions/{region}")
async def drain_region(
    region: TargetName,
    session: SignedIn,
    context: Context,
    csrf: Csrf = "",
    drained: Annotated[bool, Form()] = True,
) -> Response:
    """Drain or undrain a region (platform admin)."""
    check_csrf(session.csrf, csrf)
    require_platform_admin(session.principal)
    stored = await set_drained(context, region, drained)
    state = "drained" if stored.value.drained else "serving"
    return flash(RedirectResponse("/console/regions", status_code=303), f"{region}: {state}")


@router.get("/d/{owner}/{project}/{deployment}/test")
async def test_page(
    request: Request,
    owner: OwnerName,
    project: ProjectName,
    deployment: DeploymentName,
    session: SignedIn,
    context: Context,
) -> Response:
    """The form to test an endpoint with a sample request."""
    may_view(session.principal, owner, project, deployment)
    view = await read_deployment(context, owner, project, deployment)
    return render(request, "test.html", **_test_values(session, view), call=None, result=None)


def _test_values(session: Session, view: DeploymentView) -> dict[str, Any]:
    deployment = view.deployment
    return {
        "view": view,
        "servings": [a.name for a in view.aliases] + [v.name for v in view.versions],
        "endpoints": sorted({spec.name for v in view.versions for spec in v.endpoints}),
        "base": f"/console/d/{deployment.owner}/{deployment.project}/{deployment.name}",
        **common(session),
    }


@router.post("/d/{owner}/{project}/{deployment}/test")
async def run_test(
    request: Request,
    owner: OwnerName,
    project: ProjectName,
    deployment: DeploymentName,
    session: SignedIn,
    context: Context,
    serving: Annotated[VersionName, Form()],
    endpoint: Annotated[EndpointName, Form()],
    csrf: Csrf = "",
    method: Annotated[Literal["GET", "POST", "PUT", "PATCH", "DELETE"], Form()] = "GET",
    path: Annotated[str, Form(max_length=2000)] = "",
    headers: Annotated[str, Form(max_length=16_000)] = "",
    body_kind: Annotated[Literal["none", "json", "form"], Form()] = "none",
    body: Annotated[str, Form(max_length=256_000)] = "",
) -> Response:
    """Send the sample request through the router; show the answer and who served it."""
    check_csrf(session.csrf, csrf)
    may_view(session.principal, owner, project, deployment)
    view = await read_deployment(context, owner, project, deployment)
    try:
        call = SampleCall(
            owner=owner,
            project=project,
            deployment=deployment,
            serving=serving,
            endpoint=endpoint,
            method=method,
            path=path,
            headers=parse_headers(headers),
            body_kind=body_kind,
            body=body,
        )
        check_body(call)
    except ValueError as exc:
        raise Problem(422, "invalid-input", str(exc)) from None
    router_url = context.settings.router_url
    result = await run_test_call(call, router_url)
    log.info(
        "console.endpoint.tested",
        owner=owner,
        project=project,
        deployment=deployment,
        serving=serving,
        endpoint=endpoint,
        status=result.status,
    )
    return render(
        request,
        "test.html",
        **_test_values(session, view),
        call=call,
        form={"headers": headers, "body": body},
        result=result,
        curl=curl_command(call, router_url),
    )
