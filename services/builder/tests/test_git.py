"""Fetching code from git: never from this machine's disk or an internal address unless an
admin allows it, only from the address that was checked, and one answer for every way the
far side can fail."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard_builder.git import fetch_commit, pinned_git_options
from dockyard_common import PermanentError
from dockyard_common.addresses import GitDestination, IPAddress
from dockyard_common.models import GitRef
from tests.harness.git_server import (
    GitHttpsServer,
    make_repository,
    serve_git_https,
    silent_listener,
)

HOST = "git.example.invalid"
"""A name no resolver knows (RFC 2606): a fetch from it works only through the pin."""

LOOPBACK = ipaddress.ip_address("127.0.0.1")


async def resolve_to_loopback(host: str, port: int) -> list[IPAddress]:
    """The test's DNS: every name is 127.0.0.1 (the address policy is told to allow it)."""
    return [LOOPBACK]


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GitHttpsServer, str]]:
    """A repository ``repo.git`` served over HTTPS as git.example.invalid; its commit."""
    commit = make_repository(tmp_path / "served" / "repo.git", {"app.py": b"print('hi')\n"})
    with serve_git_https(tmp_path / "served", HOST, tmp_path) as server:
        monkeypatch.setenv("GIT_SSL_CAINFO", str(server.ca_file))
        yield server, commit


async def test_file_urls_are_refused_by_default(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="file:// URLs are not allowed"):
        await fetch_commit(
            GitRef(url=f"file://{tmp_path}", ref="main"), tmp_path / "out", allow_file_urls=False
        )
    assert not (tmp_path / "out").exists()


async def test_code_is_fetched_from_the_checked_address_under_its_host_name(
    tmp_path: Path, served: tuple[GitHttpsServer, str]
) -> None:
    server, commit = served
    ref = GitRef(url=f"https://{HOST}:{server.port}/repo.git", ref="main")
    fetched = await fetch_commit(
        ref,
        tmp_path / "out",
        allow_file_urls=False,
        allow_private=True,
        resolve=resolve_to_loopback,
    )
    assert fetched == commit
    assert (tmp_path / "out" / "app.py").read_bytes() == b"print('hi')\n"
    # TLS was checked against the name, and the name went in the Host header.
    assert server.hosts_seen and all(h == f"{HOST}:{server.port}" for h in server.hosts_seen)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("https://127.0.0.1:{port}/x.git", "a loopback address"),
        ("ssh://127.0.0.1:{port}/x.git", "a loopback address"),
        ("git@127.0.0.1:x.git", "a loopback address"),
        ("https://[::1]:{port}/x.git", "a loopback address"),
        ("https://169.254.169.254/x.git", "a cloud metadata address"),
        ("https://10.1.2.3/x.git", "a private address"),
    ],
)
async def test_internal_addresses_are_refused_before_any_connection(
    tmp_path: Path, url: str, rule: str
) -> None:
    with silent_listener(b"") as listener:
        ref = GitRef(url=url.format(port=listener.port), ref="main")
        with pytest.raises(PermanentError) as caught:
            await fetch_commit(ref, tmp_path / "out", allow_file_urls=False, timeout_s=5)
    assert rule in str(caught.value)
    assert "DOCKYARD_GIT_ALLOW_PRIVATE_ADDRESSES" in str(caught.value)
    assert listener.connections == 0
    assert not (tmp_path / "out").exists()


async def test_a_name_that_now_resolves_to_an_internal_address_is_refused(
    tmp_path: Path,
) -> None:
    # The API checked the name at submission; by build time it may resolve elsewhere.
    ref = GitRef(url=f"https://{HOST}/repo.git", ref="main")
    with pytest.raises(PermanentError, match=r"git\.example\.invalid is 127\.0\.0\.1, a loopback"):
        await fetch_commit(
            ref, tmp_path / "out", allow_file_urls=False, resolve=resolve_to_loopback
        )


def failure_text(error: PermanentError, url: str) -> str:
    return str(error).replace(url, "<url>")


async def test_every_way_the_far_side_fails_reads_the_same(
    tmp_path: Path, served: tuple[GitHttpsServer, str]
) -> None:
    server, _ = served
    texts: dict[str, str] = {}

    async def fail(case: str, url: str, timeout_s: float = 20.0) -> None:
        with pytest.raises(PermanentError) as caught:
            await fetch_commit(
                GitRef(url=url, ref="main"),
                tmp_path / case,
                allow_file_urls=False,
                allow_private=True,
                timeout_s=timeout_s,
                resolve=resolve_to_loopback,
            )
        texts[case] = failure_text(caught.value, url)

    with silent_listener(b"") as closing:
        closed_port = closing.port
    # The listener is closed: nothing listens on its port any more.
    await fail("refused", f"https://{HOST}:{closed_port}/x.git")
    with silent_listener(None) as silent:
        await fail("timed out", f"https://{HOST}:{silent.port}/x.git", timeout_s=2)
    with silent_listener(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi") as not_tls:
        await fail("not tls", f"https://{HOST}:{not_tls.port}/x.git")
    await fail("no such repository", f"https://{HOST}:{server.port}/missing.git")
    with silent_listener(b"SSH-2.0-NotReally\r\n") as not_ssh:
        await fail("ssh not git", f"ssh://{HOST}:{not_ssh.port}/x.git")
    assert len(set(texts.values())) == 1, texts
    assert "could not fetch 'main' from <url>" in next(iter(texts.values()))


async def test_ssh_connects_to_the_checked_address(tmp_path: Path) -> None:
    with silent_listener(b"") as listener:
        ref = GitRef(url=f"ssh://{HOST}:{listener.port}/repo.git", ref="main")
        with pytest.raises(PermanentError, match="could not fetch"):
            await fetch_commit(
                ref,
                tmp_path / "out",
                allow_file_urls=False,
                allow_private=True,
                timeout_s=20,
                resolve=resolve_to_loopback,
            )
    # The name resolves nowhere: ssh reached the listener through HostName alone.
    assert listener.connections == 1
    assert listener.received[0].startswith(b"SSH-2.0-")


def test_https_pins_every_checked_address_and_follows_no_redirect() -> None:
    destination = GitDestination(
        scheme="https",
        host="git.example.com",
        port=443,
        addresses=[ipaddress.ip_address("203.0.113.7"), ipaddress.ip_address("2001:db8::7")],
    )
    options, env = pinned_git_options(destination)
    assert "http.curloptResolve=git.example.com:443:203.0.113.7,[2001:db8::7]" in options
    assert "http.followRedirects=false" in options
    assert "protocol.allow=never" in options and "protocol.https.allow=always" in options
    assert env == {}


def test_ssh_keeps_the_host_name_for_its_host_key() -> None:
    destination = GitDestination(
        scheme="ssh",
        host="git.example.com",
        port=22,
        addresses=[ipaddress.ip_address("203.0.113.7")],
    )
    options, env = pinned_git_options(destination)
    command = env["GIT_SSH_COMMAND"]
    assert "HostName=203.0.113.7" in command and "HostKeyAlias=git.example.com" in command
    assert "protocol.ssh.allow=always" in options
