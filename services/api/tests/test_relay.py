"""Which events a write of the record announces (pure): every fact the write names, an
endpoint fact with that endpoint's state, records of earlier releases read as they were."""

from __future__ import annotations

import json

import pytest

from dockyard_api.relay import announced_events
from dockyard_common import (
    CodeRef,
    EndpointSpec,
    EndpointState,
    EventType,
    Record,
    Version,
    VersionStatus,
    WorkloadState,
    Written,
)
from dockyard_common.records import Announcement

DIGEST = "sha256:" + "0" * 64
KEY = "acme.demo.web.v1"


def a_version(*states: EndpointState) -> Version:
    return Version(
        owner="acme",
        project="demo",
        deployment="web",
        name="v1",
        code=CodeRef(blob=DIGEST),
        endpoints=[EndpointSpec(name="predict", wsgi="a:b")],
        targets=["local-eu", "local-us"],
        status=VersionStatus.READY,
        endpoint_states=list(states),
    )


def ready_on(target: str) -> EndpointState:
    return EndpointState(
        owner="acme",
        project="demo",
        deployment="web",
        version="v1",
        endpoint="predict",
        target=target,
        region=target[-2:],
        state=WorkloadState.READY,
        upstreams=[f"http://{target}:1"],
    )


def written(
    version: Version, *announce: Announcement | str, raw: bytes | None = None
) -> Written[bytes]:
    record = Record(announce=list(announce), resource=version.model_dump(mode="json"))
    return Written(KEY, 42, raw if raw is not None else record.model_dump_json().encode())


def test_an_endpoint_fact_carries_that_endpoint_s_state_under_its_workload_key() -> None:
    version = a_version(ready_on("local-eu"), ready_on("local-us"))
    write = written(
        version,
        Announcement(type=EventType.ENDPOINT_READY, endpoint="predict", target="local-us"),
        EventType.VERSION_READY,
    )
    [(first, state, state_key), (second, whole, version_key)] = announced_events(write)
    assert (first, state_key) == (EventType.ENDPOINT_READY, f"{KEY}/predict/local-us")
    assert state == ready_on("local-us").model_copy(update={"observed_at": state.observed_at})
    assert (second, version_key) == (EventType.VERSION_READY, KEY)
    assert whole == version


def test_a_write_announcing_nothing_publishes_nothing() -> None:
    assert announced_events(written(a_version())) == []
    assert announced_events(Written(KEY, 7, None)) == []  # a deletion


def test_a_record_of_an_earlier_release_announcing_one_type_is_still_relayed() -> None:
    raw = json.dumps(
        {"announce": "version.created", "resource": a_version().model_dump(mode="json")}
    ).encode()
    [(event_type, _, key)] = announced_events(written(a_version(), raw=raw))
    assert (event_type, key) == ("version.created", KEY)
    silent = json.dumps({"announce": None, "resource": {}}).encode()
    assert announced_events(written(a_version(), raw=silent)) == []


def test_an_endpoint_fact_naming_a_state_the_version_lacks_is_refused() -> None:
    write = written(
        a_version(),
        Announcement(type=EventType.ENDPOINT_READY, endpoint="predict", target="local-eu"),
    )
    with pytest.raises(LookupError, match="holds no state"):
        announced_events(write)
