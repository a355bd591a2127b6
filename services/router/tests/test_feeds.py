"""How the feeds read the record's writes into the table: no NATS, no Redis (a process that
writes no mirror never calls it)."""

from __future__ import annotations

from datetime import UTC, datetime

from dockyard_common import (
    Alias,
    AliasChange,
    AliasTarget,
    EndpointState,
    Record,
    Version,
    VersionStatus,
    WorkloadState,
    Written,
)
from dockyard_common.models import CodeRef, EndpointSpec, ImageInfo, LayerInfo
from dockyard_common.platform_facts import Region
from dockyard_common.records import announcements
from dockyard_common.runtime.redis_client import connect_redis
from dockyard_router.feeds import FEEDS, Mirror, RecordFeeds
from dockyard_router.feeds.aliases import ALIASES
from dockyard_router.feeds.regions import REGIONS
from dockyard_router.feeds.versions import VERSIONS, version_table_key
from dockyard_router.tables import RouteTable


def stored(resource: Version | Alias | Region, announce: str | None = None) -> bytes:
    """A KV value as the API writes it."""
    record = Record(
        announce=announcements(announce), resource=resource.model_dump(mode="json", by_alias=True)
    )
    return record.model_dump_json().encode()


def a_version(name: str, state: WorkloadState, status: VersionStatus) -> Version:
    return Version(
        owner="acme",
        project="demo",
        deployment="web",
        name=name,
        status=status,
        code=CodeRef(blob="sha256:" + "0" * 64),
        endpoints=[EndpointSpec(name="predict", wsgi="app:app")],
        targets=["local-eu"],
        image=ImageInfo(
            reference="oci:/tmp/layout:web",
            digest="sha256:" + "1" * 64,
            endpoints={"predict": "sha256:" + "2" * 64},
            layers=[
                LayerInfo(
                    digest="sha256:" + "3" * 64,
                    size=1,
                    media_type="application/vnd.oci.image.layer.v1.tar",
                    role="code",
                )
            ],
        ),
        endpoint_states=[
            EndpointState(
                owner="acme",
                project="demo",
                deployment="web",
                version=name,
                endpoint="predict",
                target="local-eu",
                region="eu",
                state=state,
                upstreams=["http://127.0.1.1:9"] if state is WorkloadState.READY else [],
            )
        ],
    )


class Applied:
    """A table fed by :class:`RecordFeeds`, and what each applied write was."""

    def __init__(self) -> None:
        self.table = RouteTable(loaded=False)
        mirror = Mirror(connect_redis("redis://127.0.0.1:1"), self.table, FEEDS, writes=False)
        self.changes: list[tuple[str, object]] = []
        self.feeds = RecordFeeds(
            self.table,
            mirror,
            lambda: None,
            on_applied=lambda feed, value: self.changes.append((feed.name, value)),
        )


def test_a_version_name_with_dots_keeps_them_in_its_table_key() -> None:
    assert version_table_key("acme.demo.web.20261207.3") == "acme/demo/web/20261207.3"


def test_a_version_write_is_read_for_its_routes_only() -> None:
    value = stored(
        a_version("20261207.3", WorkloadState.READY, VersionStatus.READY), "endpoint.ready"
    )
    routed = VERSIONS.read(value)
    assert routed.table_key == "acme/demo/web/20261207.3"
    assert routed.status is VersionStatus.READY
    assert [(s.endpoint, s.target, s.upstreams) for s in routed.endpoint_states] == [
        ("predict", "local-eu", ["http://127.0.1.1:9"])
    ]
    applied = Applied()
    key = applied.feeds.apply(VERSIONS, Written("acme.demo.web.20261207.3", 4, value))
    resolved = applied.table.resolve("/acme/demo/web/20261207.3/predict/x", "eu", 0.0)
    assert key == "acme/demo/web/20261207.3"
    assert resolved is not None and resolved.upstreams == [("eu", "http://127.0.1.1:9")]


def test_an_alias_is_read_without_its_history() -> None:
    alias = Alias(
        owner="acme",
        project="demo",
        deployment="web",
        name="production",
        target=AliasTarget(version="v2"),
        history=[
            AliasChange(
                target=AliasTarget(version="v1"),
                action="set",
                by="platform-admin",
                at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        ],
    )
    routed = ALIASES.read(stored(alias, "alias.changed"))
    assert (routed.table_key, routed.target.version) == ("acme/demo/web/production", "v2")
    assert "history" not in routed.model_dump()


def test_writes_apply_in_revision_order_and_deletions_and_unreadable_records_are_passed() -> None:
    applied = Applied()
    key = "acme.demo.web.v1"
    ready = stored(a_version("v1", WorkloadState.READY, VersionStatus.READY))
    stopped = stored(a_version("v1", WorkloadState.STOPPED, VersionStatus.STOPPED))
    applied.feeds.apply(VERSIONS, Written(key, 3, ready))
    applied.feeds.apply(VERSIONS, Written(key, 2, stopped))  # older: nothing
    applied.feeds.apply(VERSIONS, Written(key, 5, b"not json"))  # logged, passed over
    assert applied.table.resolve("/acme/demo/web/v1/predict/", "eu", 0.0) is not None
    applied.feeds.apply(VERSIONS, Written(key, 6, stopped))
    assert applied.table.explain("/acme/demo/web/v1/predict/", "eu", 0.0).status == 410
    applied.feeds.apply(VERSIONS, Written(key, 7, None))  # deleted
    assert applied.table.held_versions() == []
    assert [name for name, _ in applied.changes] == ["versions", "versions", "versions"]


def test_a_drain_is_taken_from_the_regions_bucket() -> None:
    applied = Applied()
    applied.feeds.apply(REGIONS, Written("eu", 1, stored(Region(name="eu", drained=True))))
    assert applied.table.drained == {"eu"}
    applied.feeds.apply(REGIONS, Written("eu", 2, stored(Region(name="eu", drained=False))))
    assert applied.table.drained == frozenset()
