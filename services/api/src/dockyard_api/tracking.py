"""The API's consumer of the builder's and the scheduler's reports: folds each into the state
of record, whose write announces the facts it makes (``version.built``, ``endpoint.ready``,
``version.ready``, ...), so a fact can never be lost, doubled, or ahead of the record.
"""

from __future__ import annotations

from nats.aio.msg import Msg

from dockyard_api.context import ApiContext
from dockyard_api.status import fold_report
from dockyard_common import CloudEvent, Conflict, EndpointState, Version, get_logger
from dockyard_common.runtime import run_consumer
from dockyard_common.subjects import version_key
from dockyard_common.subscriptions import STATUS_CONSUMER

__all__ = ["track_status"]

log = get_logger(__name__)


async def track_status(context: ApiContext) -> None:
    """Run the reports consumer until cancelled."""

    async def handle(event: CloudEvent, _: Msg) -> None:
        reported = event.parsed_data()
        if not isinstance(reported, Version | EndpointState):
            return
        name = reported.name if isinstance(reported, Version) else reported.version
        key = version_key(reported.owner, reported.project, reported.deployment, name)
        await _fold(context, key, event.type, reported)

    await run_consumer(context.js, STATUS_CONSUMER, handle)


async def _fold(
    context: ApiContext, key: str, report_type: str, reported: Version | EndpointState
) -> None:
    for _ in range(20):
        stored = await context.versions.get(key)
        if stored is None:
            log.warning("status.version.missing", key=key, report_type=report_type)
            return
        folded = fold_report(stored.value, report_type, reported)
        if folded is None:
            return
        try:
            await context.versions.update(
                key, folded.version, stored.revision, announce=folded.announce
            )
        except Conflict:
            continue
        log.info(
            "status.version.updated",
            key=key,
            report_type=report_type,
            status=folded.version.status.value,
            announced=[a.type for a in folded.announce],
        )
        return
    raise Conflict(f"{key} kept changing while folding {report_type}")
