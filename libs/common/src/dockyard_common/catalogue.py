"""The event catalogue as an AsyncAPI 3.0 document, derived from the event models.

Every event type of :data:`dockyard_common.events.EVENT_DATA` becomes a channel on its
subject and a message whose payload is the CloudEvent envelope around the resource's
JSON schema, with the type's schema version. Building the document is pure; run as a
module it regenerates what is derived from the catalogue::

    uv run python -m dockyard_common.catalogue --markdown > docs/events.md
    uv run python -m dockyard_common.catalogue --update-lock
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic.json_schema import models_json_schema

from dockyard_common.catalogue_markdown import render_markdown
from dockyard_common.event_versions import (
    EVENT_SUMMARIES,
    dataschema_uri,
    producer,
    schema_version,
)
from dockyard_common.events import EVENT_DATA, CloudEvent
from dockyard_common.schema_lock import lock_problems, read_lock, updated_lock, write_lock
from dockyard_common.subjects import (
    EVENT_SUBJECT_PREFIX,
    REPORT_SUBJECT_PREFIX,
    TRAFFIC_EVENT_TYPE,
    TRAFFIC_SUBJECT_PREFIX,
    is_platform_event,
    is_report,
    platform_event_subject,
)
from dockyard_common.subscriptions import consumers_of

__all__ = ["asyncapi_document", "main"]


def _channel_id(event_type: str) -> str:
    return event_type.replace(".", "_")


def _address(event_type: str) -> dict[str, Any]:
    """A channel's address (and its parameters): a deployment's subject, or the platform's."""
    if is_platform_event(event_type):
        return {"address": platform_event_subject(event_type)}
    if event_type == TRAFFIC_EVENT_TYPE:
        address = f"{TRAFFIC_SUBJECT_PREFIX}.{{owner}}.{{project}}.{{deployment}}"
    else:
        prefix = REPORT_SUBJECT_PREFIX if is_report(event_type) else EVENT_SUBJECT_PREFIX
        address = f"{prefix}.{{owner}}.{{project}}.{{deployment}}.{event_type}"
    return {
        "address": address,
        "parameters": {
            name: {"description": f"The {name} name."}
            for name in ("owner", "project", "deployment")
        },
    }


def asyncapi_document(version: str) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every Dockyard event, ``version`` as the API's version."""
    models = sorted({model for model in EVENT_DATA.values()}, key=lambda m: m.__name__)
    _, definitions = models_json_schema(
        [(model, "serialization") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(definitions.get("$defs", {}))
    envelope = CloudEvent.model_json_schema(ref_template="#/components/schemas/{model}")
    envelope_properties = {k: v for k, v in envelope["properties"].items() if k != "data"}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event_type, model in sorted(EVENT_DATA.items()):
        channel = _channel_id(event_type)
        messages[channel] = {
            "name": event_type,
            "title": event_type,
            "summary": EVENT_SUMMARIES.get(
                event_type, f"{event_type}: carries the full {model.__name__}."
            ),
            "contentType": "application/cloudevents+json",
            "x-schema-version": schema_version(event_type),
            "x-published-by": producer(event_type),
            "x-acted-on-by": consumers_of(event_type),
            "payload": {
                "type": "object",
                "required": ["specversion", "id", "source", "type", "data"],
                "properties": {
                    **envelope_properties,
                    "type": {"const": event_type},
                    "dataschema": {"const": dataschema_uri(event_type)},
                    "data": {"$ref": f"#/components/schemas/{model.__name__}"},
                },
            },
        }
        channels[channel] = {
            **_address(event_type),
            "messages": {channel: {"$ref": f"#/components/messages/{channel}"}},
        }
        operations[f"on_{channel}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Dockyard events",
            "version": version,
            "description": (
                "CloudEvents 1.0 (structured JSON) on NATS JetStream, stream DOCKYARD_EVENTS. "
                "Nats-Msg-Id is the event id: a repeated publish is dropped."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m dockyard_common.catalogue``: print the Markdown catalogue, or update the lock."""
    parser = argparse.ArgumentParser(prog="python -m dockyard_common.catalogue")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", action="store_true", help="print docs/events.md")
    group.add_argument(
        "--update-lock", action="store_true", help="record new schema versions in the lock"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(render_markdown())
        return 0
    lock = updated_lock(read_lock())
    write_lock(lock)
    problems = lock_problems(lock)
    for problem in problems:
        sys.stderr.write(problem + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
