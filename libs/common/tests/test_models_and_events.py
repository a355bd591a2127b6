"""Resource snapshots and CloudEvent envelopes: the shapes every service relies on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dockyard_common.events import CloudEvent, EventType, UnknownEventType, event_data, make_event
from dockyard_common.models import (
    AliasChange,
    AliasTarget,
    CodeRef,
    EndpointSpec,
    EndpointState,
    RouterHeartbeat,
    Version,
    VersionStatus,
    WorkloadState,
)
from dockyard_common.subjects import (
    event_subject,
    event_type_filter,
    message_id,
    platform_event_subject,
)

DIGEST = "sha256:" + "a" * 64


def a_version(**changes: object) -> Version:
    fields: dict[str, object] = {
        "owner": "acme",
        "project": "demo",
        "deployment": "web",
        "name": "20261125.1",
        "code": CodeRef(blob=DIGEST),
        "endpoints": [EndpointSpec(name="predict", wsgi="app:app")],
        "targets": ["local-eu"],
    }
    fields.update(changes)
    return Version.model_validate(fields)


def test_an_endpoint_needs_exactly_one_way_to_serve() -> None:
    with pytest.raises(ValidationError, match="exactly one of 'server-command' or 'wsgi'"):
        EndpointSpec(name="predict")
    with pytest.raises(ValidationError, match="exactly one"):
        EndpointSpec.model_validate(
            {"name": "predict", "wsgi": "app:app", "server-command": "python app.py"}
        )


def test_endpoint_specs_speak_the_valohai_yaml_vocabulary() -> None:
    spec = EndpointSpec.model_validate(
        {
            "name": "greet",
            "server-command": ["export X=1", "python serve.py"],
            "port": 9000,
            "node-selector": "gpu=true",
        }
    )
    assert spec.server_command == ["export X=1", "python serve.py"]
    assert spec.listen_port == 9000
    dumped = spec.model_dump(by_alias=True)
    assert dumped["server-command"] == ["export X=1", "python serve.py"]
    assert dumped["node-selector"] == "gpu=true"


def test_a_server_command_listens_on_port_8000_by_default() -> None:
    assert EndpointSpec.model_validate({"name": "srv", "server-command": "x"}).listen_port == 8000


def test_snapshots_are_frozen_and_refuse_unknown_fields() -> None:
    version = a_version()
    with pytest.raises(ValidationError):
        version.status = VersionStatus.READY  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        a_version(colour="blue")


def test_an_alias_change_is_a_set_or_a_rollback() -> None:
    target = AliasTarget(version="v1")
    for action in ("set", "rollback"):
        assert AliasChange(target=target, action=action, by="t").action == action
    with pytest.raises(ValidationError, match="'set' or 'rollback'"):
        AliasChange.model_validate({"target": target, "action": "delete", "by": "t"})


def test_code_refs_must_be_sha256_digests() -> None:
    with pytest.raises(ValidationError):
        CodeRef(blob="md5:abc")


def test_an_event_carries_the_full_resource_and_round_trips_through_json() -> None:
    version = a_version()
    event = make_event(
        EventType.VERSION_CREATED, data=version, event_id="id-1", source="test", revision=3
    )
    parsed = CloudEvent.model_validate_json(event.model_dump_json())
    assert parsed.specversion == "1.0"
    assert parsed.resourcerevision == "3"
    assert parsed.data_as(Version) == version
    assert parsed.parsed_data() == version


def test_an_event_refuses_data_of_the_wrong_resource() -> None:
    state = EndpointState(
        owner="acme",
        project="demo",
        deployment="web",
        version="v1",
        endpoint="predict",
        target="local-eu",
        region="eu",
        state=WorkloadState.READY,
    )
    with pytest.raises(TypeError, match="carries Version"):
        make_event(EventType.VERSION_BUILT, data=state, event_id="x", source="test")
    with pytest.raises(UnknownEventType):
        event_data("version.exploded")


def test_subjects_follow_the_architecture_naming() -> None:
    assert (
        event_subject("acme", "demo", "web", EventType.VERSION_BUILD_STARTED)
        == "dockyard.events.acme.demo.web.version.build.started"
    )
    assert event_type_filter("version.created") == "dockyard.events.*.*.*.version.created"


def test_platform_events_have_a_subject_of_their_own_outside_every_deployment() -> None:
    subject = platform_event_subject(EventType.PLATFORM_SERVICE_RESTARTED)
    assert subject == "dockyard.platform.service.restarted"
    assert not subject.startswith("dockyard.events.")  # no deployment's filter matches it
    with pytest.raises(ValueError, match="not a platform event"):
        platform_event_subject(EventType.VERSION_CREATED)


def test_message_ids_are_the_same_for_the_same_change_only() -> None:
    assert message_id("version.created", "k", 1) == message_id("version.created", "k", 1)
    assert message_id("version.created", "k", 1) != message_id("version.created", "k", 2)
    assert message_id("version.created", "k", 1) != message_id("version.built", "k", 1)


def test_a_heartbeat_of_another_release_is_understood_and_counts_as_lagging() -> None:
    older = b'{"process": "r-1", "region": "eu", "applied": {"a/b/c/production": 7}}'
    beat = RouterHeartbeat.model_validate_json(older)
    assert (beat.process, beat.applied_through) == ("r-1", 0)
