"""Model files from URLs: the builder checks the host again when it downloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard_builder.downloads import download
from dockyard_common import PermanentError


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1/model.bin", "https://169.254.169.254/latest/meta-data"]
)
async def test_a_url_on_this_machine_or_a_metadata_address_is_not_downloaded(
    tmp_path: Path, url: str
) -> None:
    with pytest.raises(PermanentError, match="model files are not downloaded from there"):
        await download(url, tmp_path / "model.bin", max_bytes=1024)
    assert not (tmp_path / "model.bin").exists()
