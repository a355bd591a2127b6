"""Webhook subscriptions of a project: create (the secret shown once), list, delete, the
delivery log and a test event. Delivery itself is the webhooks process's (``webhooks/``)."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from dockyard_api.auth import Deployer, Viewer
from dockyard_api.context import ApiContext, get_context
from dockyard_api.listing import Page
from dockyard_api.problems import Problem
from dockyard_api.routes.paths import OwnerPath, ProjectPath, response_header
from dockyard_api.scopes import existing_project
from dockyard_api.webhooks.deliveries import forget_deliveries, read_deliveries
from dockyard_api.webhooks.models import (
    TEST_EVENT_TYPE,
    TEST_LANE,
    DeliveryJob,
    DeliveryQueued,
    DeliveryRecord,
    Webhook,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
)
from dockyard_api.webhooks.queueing import enqueue, forget_queue
from dockyard_api.webhooks.signing import delivery_id, new_secret
from dockyard_common import CloudEvent, Stored, get_logger
from dockyard_common.addresses import UnsafeDestination, checked_addresses
from dockyard_common.subjects import webhook_key

__all__ = ["router"]

log = get_logger(__name__)

router = APIRouter(prefix="/v1/projects/{owner}/{project}/webhooks", tags=["webhooks"])

Context = Annotated[ApiContext, Depends(get_context)]
WebhookPath = Annotated[
    str, Path(pattern=r"^wh_[0-9a-f]{16}$", description="Subscription id (wh_...).")
]


async def _existing(
    context: ApiContext, owner: str, project: str, webhook_id: str
) -> Stored[Webhook]:
    stored = await context.webhooks.get(webhook_key(owner, project, webhook_id))
    if stored is None:
        raise Problem(404, "not-found", f"webhook {webhook_id} of {owner}/{project} does not exist")
    return stored


_CREATED_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "Subscribed; the answer holds the signing secret, once.",
        "headers": {
            "X-Dockyard-Dispatchers": response_header(
                "How many live webhook dispatchers were waited for."
            ),
            "X-Dockyard-Lagging": response_header(
                "Dispatchers that did not hold the subscription within the bound, "
                "comma-separated (absent when none)."
            ),
        },
    },
}


@router.post("", status_code=201, responses=_CREATED_RESPONSES)
async def create_webhook(
    owner: OwnerPath,
    project: ProjectPath,
    body: WebhookIn,
    response: Response,
    caller: Deployer,
    context: Context,
) -> WebhookCreated:
    """Subscribe a URL to the project's events; the answer holds the signing secret, once.

    URLs on this machine, private networks or metadata addresses are refused (422) unless
    the admin allows them (``DOCKYARD_WEBHOOK_ALLOWED_HOSTS``).

    It answers once every live webhook dispatcher holds the subscription, so every event
    published after the answer is matched against it; ``X-Dockyard-Dispatchers`` counts
    them. A dispatcher that has not caught up within ``DOCKYARD_SWITCH_WAIT_S`` is named in
    ``X-Dockyard-Lagging``: events it queues until it does may miss the new subscription.
    """
    await existing_project(context, owner, project)
    try:
        await checked_addresses(body.url, context.settings.webhook_allowed_hosts)
    except UnsafeDestination as exc:
        raise Problem(422, "unsafe-url", str(exc)) from None
    webhook = Webhook(
        id=f"wh_{secrets.token_hex(8)}",
        owner=owner,
        project=project,
        url=body.url,
        event_types=body.event_types,
        deployments=body.deployments,
        description=body.description,
        secret=new_secret(),
    )
    revision = await context.webhooks.create(webhook_key(owner, project, webhook.id), webhook)
    outcome = await context.dispatchers.wait_applied(revision, context.settings.switch_wait_s)
    response.headers["X-Dockyard-Dispatchers"] = str(outcome.processes)
    if outcome.lagging:
        response.headers["X-Dockyard-Lagging"] = ",".join(outcome.lagging)
        log.warning("webhook.dispatchers.lagging", webhook=webhook.id, lagging=outcome.lagging)
    log.info("webhook.created", owner=owner, project=project, webhook=webhook.id)
    return WebhookCreated.model_validate(webhook.model_dump())


@router.get("")
async def list_webhooks(
    owner: OwnerPath, project: ProjectPath, caller: Viewer, context: Context
) -> Page[WebhookOut]:
    """The project's subscriptions (without their secrets)."""
    await existing_project(context, owner, project)
    prefix = webhook_key(owner, project, "")
    return Page(items=[s.value.public() async for _, s in context.webhooks.items(prefix)])


@router.get("/{webhook_id}")
async def get_webhook(
    owner: OwnerPath,
    project: ProjectPath,
    webhook_id: WebhookPath,
    caller: Viewer,
    context: Context,
) -> WebhookOut:
    """One subscription (without its secret)."""
    return (await _existing(context, owner, project, webhook_id)).value.public()


@router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(
    owner: OwnerPath,
    project: ProjectPath,
    webhook_id: WebhookPath,
    caller: Deployer,
    context: Context,
) -> Response:
    """Stop delivering: the subscription, its queued deliveries and its log are dropped."""
    await _existing(context, owner, project, webhook_id)
    await context.webhooks.delete(webhook_key(owner, project, webhook_id))
    await forget_queue(context.js, owner, project, webhook_id)
    await forget_deliveries(context.js, owner, project, webhook_id)
    log.info("webhook.deleted", owner=owner, project=project, webhook=webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries")
async def list_deliveries(
    owner: OwnerPath,
    project: ProjectPath,
    webhook_id: WebhookPath,
    caller: Viewer,
    context: Context,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[DeliveryRecord]:
    """The latest deliveries, newest first: status, attempts, latency, last error."""
    await _existing(context, owner, project, webhook_id)
    records = await read_deliveries(context.js, owner, project, webhook_id)
    return Page(items=records[:limit])


@router.post("/{webhook_id}/test", status_code=202)
async def send_test_event(
    owner: OwnerPath,
    project: ProjectPath,
    webhook_id: WebhookPath,
    caller: Deployer,
    context: Context,
) -> DeliveryQueued:
    """Queue a ``webhook.test`` event for the subscription; its outcome shows in the log."""
    await _existing(context, owner, project, webhook_id)
    event = CloudEvent(
        id=f"{TEST_EVENT_TYPE}:{webhook_id}:{secrets.token_hex(8)}",
        source=f"{context.settings.event_source}/api",
        type=TEST_EVENT_TYPE,
        subject=webhook_id,
        data={"webhook": webhook_id, "owner": owner, "project": project},
    )
    job = DeliveryJob(
        webhook_id=webhook_id,
        owner=owner,
        project=project,
        lane=TEST_LANE,
        delivery_id=delivery_id(webhook_id, event.id),
        event_id=event.id,
        event_type=event.type,
        body=event.model_dump_json(),
    )
    await enqueue(context.js, job)
    return DeliveryQueued(delivery_id=job.delivery_id, event_id=event.id)
