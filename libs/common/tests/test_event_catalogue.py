"""The event catalogue: a schema version on every event, the lock of shapes, docs/events.md."""

from __future__ import annotations

from pathlib import Path

from dockyard_common import EVENT_DATA, Deployment, EventType
from dockyard_common.catalogue import asyncapi_document
from dockyard_common.catalogue_markdown import render_markdown
from dockyard_common.event_versions import schema_version
from dockyard_common.events import make_event
from dockyard_common.schema_lock import UPDATE_COMMAND, fingerprint, lock_problems, read_lock

DOC = Path(__file__).parents[3] / "docs" / "events.md"


def test_every_event_type_s_shape_is_locked_under_its_schema_version() -> None:
    problems = lock_problems(read_lock())
    assert problems == [], "\n".join(problems)


def test_a_shape_change_without_a_new_version_is_caught_with_what_to_do() -> None:
    lock = read_lock()
    lock["alias.changed"] = {str(schema_version("alias.changed")): "sha256:" + "0" * 64}
    [problem] = lock_problems(lock)
    assert "alias.changed" in problem and "Bump it" in problem and UPDATE_COMMAND in problem


def test_docs_events_md_is_rendered_from_the_code() -> None:
    assert DOC.read_text() == render_markdown(), (
        "docs/events.md differs from the event catalogue in the code; regenerate it with "
        "`uv run python -m dockyard_common.catalogue --markdown > docs/events.md`"
    )


def test_every_event_names_its_schema_version_and_the_asyncapi_document_does_too() -> None:
    deployment = Deployment(owner="acme", project="demo", name="web", targets=["eu"])
    event = make_event(
        EventType.DEPLOYMENT_CHANGED, data=deployment, event_id="x", source="dockyard/test"
    )
    assert event.dataschema == "urn:dockyard:event-schema:deployment.changed:v1"
    messages = asyncapi_document("0")["components"]["messages"]
    for event_type in EVENT_DATA:
        message = messages[event_type.replace(".", "_")]
        assert message["x-schema-version"] >= 1
        assert message["payload"]["properties"]["dataschema"]["const"].endswith(
            f"{event_type}:v{message['x-schema-version']}"
        )
    assert fingerprint("version.built") == fingerprint("version.created"), "same data model"
