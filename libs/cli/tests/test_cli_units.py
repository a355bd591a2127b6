"""The CLI's pure parts: packing and ignore rules, alias bodies, call paths, log rendering,
and the login file's mode."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

from dockyard_cli.aliases import alias_body
from dockyard_cli.calls import call_path, request_body, served_line
from dockyard_cli.config import Login, load_login, save_login
from dockyard_cli.deploying import (
    OptionError,
    lines_until,
    parse_file_options,
    parse_replicas_options,
)
from dockyard_cli.logs import new_lines, render_logs
from dockyard_cli.packing import pack, packed_files
from dockyard_cli.scope import Scope
from dockyard_cli.versions import notes_lines


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_ignored_files_stay_out_of_the_archive(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "valohai.yaml": "-",
            "predict.py": "",
            "model.json": "{}",
            "keep.log": "",
            "a.log": "",
            "data/big.csv": "",
            "src/pkg/mod.py": "",
            "src/pkg/build/out.o": "",
            "src/.gitignore": "build/\n",
            ".gitignore": "*.log\n!keep.log\n/data/\n",
            ".dockyardignore": "model.json\n",
            ".git/HEAD": "",
            "__pycache__/x.pyc": "",
        },
    )
    assert packed_files(tmp_path) == [
        ".dockyardignore",
        ".gitignore",
        "keep.log",
        "predict.py",
        "src/.gitignore",
        "src/pkg/mod.py",
        "valohai.yaml",
    ]


def test_same_files_pack_to_the_same_digest_whatever_their_times(tmp_path: Path) -> None:
    root = tmp_path / "code"
    root.mkdir()
    _tree(root, {"b.py": "b", "a/c.py": "c"})
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o775)
    first = pack(root, tmp_path / "1.tar.gz")
    os.utime(root / "b.py", (1, 1))
    second = pack(root, tmp_path / "2.tar.gz")
    assert first.digest == second.digest
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(first.path.read_bytes()))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == ["a/c.py", "b.py", "run.sh"]
    assert members["run.sh"].mode == 0o755 and members["b.py"].mode == 0o644
    assert {m.mtime for m in members.values()} == {0}


def test_login_file_is_its_owners_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "conf" / "login.json"
    monkeypatch.setenv("DOCKYARD_CONFIG", str(path))
    for name in ("DOCKYARD_URL", "DOCKYARD_TOKEN", "DOCKYARD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    save_login(Login.model_validate({"url": "http://api", "token": "s3cret", "project": "a/b"}))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_login()
    assert loaded.token.get_secret_value() == "s3cret" and loaded.project == "a/b"
    monkeypatch.setenv("DOCKYARD_PROJECT", "c/d")
    assert load_login().project == "c/d"
    assert load_login(project="e/f").project == "e/f"


def test_canary_sends_the_share_to_the_new_version_and_the_rest_to_the_current() -> None:
    current = {"target": {"version": "v1", "weights": None}, "regions": {}}
    assert alias_body(current, "v2", None, None) == {"version": "v2"}
    assert alias_body(current, "v2", 10, None) == {"weights": {"v1": 90, "v2": 10}}
    assert alias_body(current, "v2", None, "us") == {
        "version": "v1",
        "regions": {"us": {"version": "v2"}},
    }
    with pytest.raises(ValueError, match="points at v1 already"):
        alias_body(current, "v1", 10, None)
    with pytest.raises(ValueError, match="first"):
        alias_body(None, "v2", 10, None)
    split = {"target": {"weights": {"v1": 90, "v2": 10}}, "regions": {}}
    with pytest.raises(ValueError, match="split"):
        alias_body(split, "v3", 10, None)


def test_call_paths_and_bodies() -> None:
    scope = Scope("acme/demo", "digits")
    assert call_path("production/predict", scope) == "/acme/demo/digits/production/predict/"
    assert call_path("v1/predict/health", scope) == "/acme/demo/digits/v1/predict/health"
    with pytest.raises(ValueError, match="ALIAS/ENDPOINT"):
        call_path("production", scope)
    assert request_body('{"x": 1}') == b'{"x": 1}'
    with pytest.raises(ValueError, match="not JSON"):
        request_body("{x")
    assert parse_file_options(["predict.model=m.json"]) == {"predict": {"model": Path("m.json")}}
    with pytest.raises(ValueError, match=r"ENDPOINT\.NAME=PATH"):
        parse_file_options(["model=m.json"])


def test_logs_render_per_target_and_follow_prints_only_new_lines() -> None:
    answer = {
        "targets": [
            {"target": "local-eu", "region": "eu", "error": None,
             "replicas": [{"replica": 0, "lines": ["a", "b"]}]},
            {"target": "local-us", "region": "us", "error": "unreachable", "replicas": []},
        ]
    }  # fmt: skip
    assert render_logs(answer) == [
        "local-eu/0 | a",
        "local-eu/0 | b",
        "local-us (us) | cannot read logs: unreachable",
    ]
    seen: dict[tuple[str, int], list[str]] = {}
    render_logs(answer, seen)
    answer["targets"][0]["replicas"][0]["lines"] = ["b", "c"]  # type: ignore[index]
    assert render_logs(answer, seen)[0] == "local-eu/0 | c"
    waiting = {"replica": 1, "lines": [], "error": "waiting to start"}
    answer["targets"][0]["replicas"].append(waiting)  # type: ignore[index]
    assert render_logs(answer, seen)[0] == "local-eu/1 | cannot read logs: waiting to start"
    assert not [line for line in render_logs(answer, seen) if line.startswith("local-eu/1")], (
        "following repeated a replica's error"
    )
    assert new_lines(["a", "b", "c"], ["a", "b", "c"]) == []
    assert new_lines(["a", "b"], ["x", "y"]) == ["x", "y"]


def test_a_replica_that_wrote_nothing_says_so_instead_of_printing_a_blank() -> None:
    answer = {
        "targets": [
            {"target": "local-eu", "region": "eu", "error": None,
             "replicas": [{"replica": 0, "lines": []}]},
        ]
    }  # fmt: skip
    assert render_logs(answer) == ["local-eu/0 | (no output yet)"]
    assert render_logs(answer, {}) == []  # --follow waits quietly for the first line


def test_a_call_nothing_serves_names_no_version() -> None:
    unserved = {"status": 404, "version": None, "region": None, "alias": None, "body": {}}
    assert "None" not in served_line(unserved)
    assert "HTTP 404 from the router" in served_line(unserved)
    typo = {**unserved, "body": {"detail": "version v1 of acme/demo/web has no endpoint predcit"}}
    assert served_line(typo).endswith("has no endpoint predcit")  # the router's reason, as said
    served = {"status": 200, "version": "v1", "region": "eu", "alias": "production", "body": {}}
    assert served_line(served) == "served by version v1 in region eu (alias production)"


def test_following_a_quiet_feed_stops_at_the_deadline() -> None:
    # --wait --timeout: a feed that only sends keep-alives must not hold the command for ever.
    keep_alives = (": keep-alive" for _ in range(10**9))
    assert list(lines_until(keep_alives, time.monotonic() - 1)) == []
    assert list(lines_until(iter(["a", "b"]), time.monotonic() + 60)) == ["a", "b"]


def test_a_version_s_warnings_and_every_target_s_notes_are_shown() -> None:
    version = {
        "warnings": ["valohai.yaml's endpoint 'Horses_Vs_Humans' is not valid (not deployed)"],
        "image": {"notes": ["endpoint greet: dependencies built for Python 3.9"]},
        "endpoint_states": [
            {"endpoint": "greet", "target": "local-eu", "notes": ["runs on Python 3.11"]},
            {"endpoint": "greet", "target": "local-us"},
        ],
    }
    assert notes_lines(version) == [
        "warning: valohai.yaml's endpoint 'Horses_Vs_Humans' is not valid (not deployed)",
        "note: endpoint greet: dependencies built for Python 3.9",
        "note: greet on local-eu: runs on Python 3.11",
    ]


def test_replicas_options_become_the_version_body_s_replicas() -> None:
    assert parse_replicas_options(["predict=0:4:2", "embed=2:2"], ["predict=60"]) == {
        "predict": {"min": 0, "max": 4, "target_concurrency": 2.0, "idle_s": 60.0},
        "embed": {"min": 2, "max": 2},
    }
    for bad in (["predict=4"], ["predict"], ["predict=a:b"], ["=1:2"]):
        with pytest.raises(ValueError, match="ENDPOINT=MIN:MAX"):
            parse_replicas_options(bad, [])
    with pytest.raises(OptionError, match="give predict --replicas predict=0:MAX") as given:
        parse_replicas_options([], ["predict=60"])
    assert given.value.option == "--idle"


def test_replicas_options_out_of_range_are_usage_errors_naming_their_option() -> None:
    # inf crashed with OverflowError, 1.5 was truncated to 1, --idle errors were blamed on
    # --replicas, and --idle was taken for an endpoint that never idles.
    for bad in (["e=inf:3"], ["e=1.5:3"], ["e=-1:3"], ["e=1:nan"]):
        with pytest.raises(OptionError, match="MIN and MAX whole numbers") as caught:
            parse_replicas_options(bad, [])
        assert caught.value.option == "--replicas"
    for bad in (["e=0:3:0"], ["e=0:3:inf"], ["e=0:3:x"]):
        with pytest.raises(OptionError, match="TARGET a number above 0"):
            parse_replicas_options(bad, [])
    for idle in (["e=inf"], ["e=-5"], ["e=soon"], ["e"]):
        with pytest.raises(OptionError, match="ENDPOINT=SECONDS") as caught:
            parse_replicas_options(["e=0:3"], idle)
        assert caught.value.option == "--idle"
    with pytest.raises(OptionError, match="only an endpoint with MIN 0 idles"):
        parse_replicas_options(["e=1:3"], ["e=60"])
