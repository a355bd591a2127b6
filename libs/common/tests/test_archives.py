"""Code archives: only plain files and directories inside the archive get through."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from dockyard_common.archives import (
    ArchiveLimits,
    HostileArchive,
    extract_archive,
    scan_archive,
)
from dockyard_common.errors import InvalidInput
from tests.harness.archives import member, tar_gz
from tests.harness.hostile import gzip_bomb


def test_a_plain_archive_lists_its_files_with_normalised_names() -> None:
    data = tar_gz({"./app.py": b"print(1)", "pkg/mod.py": b"", "pkg//deep/./x.txt": b"hi"})
    scanned = scan_archive(io.BytesIO(data), ArchiveLimits())
    assert sorted(m.name for m in scanned.members) == ["app.py", "pkg/deep/x.txt", "pkg/mod.py"]


def test_asked_for_files_are_captured_under_their_normalised_name() -> None:
    data = tar_gz({"./valohai.yaml": b"- endpoint: {}", "sub/valohai.yaml": b"not this one"})
    scanned = scan_archive(io.BytesIO(data), ArchiveLimits(), capture=frozenset({"valohai.yaml"}))
    assert scanned.captured == {"valohai.yaml": b"- endpoint: {}"}


@pytest.mark.parametrize(
    ("hostile", "complaint"),
    [
        (member("../escape.py"), "climbs out"),
        (member("a/../../escape.py"), "climbs out"),
        (member("/etc/passwd"), "absolute path"),
        (member("link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (member("hard", tarfile.LNKTYPE, "app.py"), "is a link"),
        (member("dev", tarfile.CHRTYPE), "not a regular file"),
        (member("fifo", tarfile.FIFOTYPE), "not a regular file"),
        (member("dir/.wh.secret"), "whiteout"),
    ],
)
def test_hostile_members_are_refused_by_name(hostile: tarfile.TarInfo, complaint: str) -> None:
    data = tar_gz({"app.py": b"ok"}, hostile=[hostile])
    with pytest.raises(InvalidInput, match=complaint) as caught:
        scan_archive(io.BytesIO(data), ArchiveLimits())
    assert hostile.name in str(caught.value)


def test_data_that_is_not_a_tar_gz_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"not a readable tar\.gz"):
        scan_archive(io.BytesIO(b"PK\x03\x04 this is a zip"), ArchiveLimits())


def test_member_count_and_size_are_capped() -> None:
    many = tar_gz({f"f{i}.py": b"" for i in range(5)})
    with pytest.raises(InvalidInput, match="more than 3 members"):
        scan_archive(io.BytesIO(many), ArchiveLimits(max_members=3))
    big = tar_gz({"model.bin": b"x" * 1000})
    with pytest.raises(InvalidInput, match="more than 100 bytes"):
        scan_archive(io.BytesIO(big), ArchiveLimits(max_bytes=100))


@pytest.mark.parametrize("names", [["x", "x/y"], ["x/y", "x"], ["a/b/c", "a/b"]])
def test_a_name_that_is_both_a_file_and_a_directory_is_refused(names: list[str]) -> None:
    data = tar_gz(dict.fromkeys(names, b"content"))
    with pytest.raises(InvalidInput, match="both as a file and a directory"):
        scan_archive(io.BytesIO(data), ArchiveLimits())


def test_a_truncated_archive_is_bad_input_but_a_failing_disk_is_not(tmp_path: Path) -> None:
    data = tar_gz({"model.bin": bytes(range(256)) * 4096})
    with pytest.raises(InvalidInput, match=r"not a readable tar\.gz"):
        extract_archive(io.BytesIO(data[: len(data) // 2]), tmp_path / "a", ArchiveLimits())
    blocked = tmp_path / "b"
    blocked.write_text("a file where the directory should go")
    with pytest.raises(OSError) as caught:
        extract_archive(io.BytesIO(data), blocked, ArchiveLimits())
    assert not isinstance(caught.value, InvalidInput)


def test_a_gzip_bomb_is_refused_as_hostile_on_its_ratio() -> None:
    bomb = gzip_bomb(members=2)  # 200 MiB of zeros in ~200 KB: under every byte cap
    with pytest.raises(HostileArchive, match="compression bomb") as caught:
        scan_archive(io.BytesIO(bomb), ArchiveLimits())
    assert "upload large files as blobs" in str(caught.value)


def test_a_bomb_below_the_ratio_is_stopped_by_the_running_total() -> None:
    bomb = gzip_bomb(members=3, member_bytes=4 * 1024**2)
    limits = ArchiveLimits(max_bytes=10 * 1024**2, ratio_from_bytes=1024**3)
    with pytest.raises(HostileArchive, match="more than 10485760 bytes"):
        scan_archive(io.BytesIO(bomb), limits)


def test_a_small_file_of_zeros_is_not_a_bomb() -> None:
    # 1000:1, but 16 MiB: a high ratio alone is not hostile.
    data = tar_gz({"app.py": b"print(1)", "empty.bin": bytes(16 * 1024**2)})
    scanned = scan_archive(io.BytesIO(data), ArchiveLimits())
    assert sorted(m.name for m in scanned.members) == ["app.py", "empty.bin"]


def test_the_ratio_applies_only_past_its_size(tmp_path: Path) -> None:
    data = tar_gz({"zeros.bin": bytes(3 * 1024**2)})
    extract_archive(io.BytesIO(data), tmp_path / "ok", ArchiveLimits(ratio_from_bytes=4 * 1024**2))
    with pytest.raises(HostileArchive, match="inflates more than 200:1"):
        extract_archive(io.BytesIO(data), tmp_path / "no", ArchiveLimits(ratio_from_bytes=1024**2))


def test_a_header_larger_than_any_member_declares_is_refused() -> None:
    # tarfile reads a pax header whole into memory: it may not grow without bound.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("app.py")
        info.pax_headers = {"comment": "x" * (8 * 1024**2)}
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(HostileArchive, match="more than its members declare"):
        scan_archive(io.BytesIO(buffer.getvalue()), ArchiveLimits())


def test_a_gzip_file_of_several_members_is_read_whole() -> None:
    whole = tar_gz({"a.py": b"a" * 5000, "b.py": b"b" * 5000})
    plain = gzip.decompress(whole)
    split = gzip.compress(plain[:3000]) + gzip.compress(plain[3000:])
    scanned = scan_archive(io.BytesIO(split), ArchiveLimits())
    assert sorted(m.name for m in scanned.members) == ["a.py", "b.py"]
