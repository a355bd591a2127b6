"""Fetching code from git refuses to read the server's disk unless an admin allows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard_builder.git import fetch_commit
from dockyard_common import PermanentError
from dockyard_common.models import GitRef


async def test_file_urls_are_refused_by_default(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="file:// URLs are not allowed"):
        await fetch_commit(
            GitRef(url=f"file://{tmp_path}", ref="main"), tmp_path / "out", allow_file_urls=False
        )
    assert not (tmp_path / "out").exists()
