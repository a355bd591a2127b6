"""How a KV value is stored: a resource and the event its write announces."""

from __future__ import annotations

from dockyard_common import Record


def test_a_record_that_announces_nothing_is_told_apart_without_parsing() -> None:
    silent = Record(resource={"announce": "version.ready"}).model_dump_json().encode()
    loud = Record(announce="version.ready", resource={}).model_dump_json().encode()
    assert Record.announces_nothing(silent)
    assert not Record.announces_nothing(loud)
    # Anything written differently is parsed, never skipped.
    assert not Record.announces_nothing(b'{"resource":{},"announce":null}')
