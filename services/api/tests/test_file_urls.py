"""File URLs a user gives must not make the builder read this machine or private networks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dockyard_api.submission import file_url_refusal
from dockyard_common.models import GitRef


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/model.bin",
        "https://127.0.0.1/model.bin",
        "https://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/model.bin",
        "https://[::1]/model.bin",
        "https://localhost:8222/varz",
    ],
)
async def test_local_private_and_plain_http_urls_are_refused(url: str) -> None:
    assert await file_url_refusal(url) is not None


async def test_a_name_resolving_to_this_machine_is_refused() -> None:
    refusal = await file_url_refusal("https://localhost:8222/varz")
    assert refusal is not None and "a loopback address" in refusal


async def test_a_public_https_url_is_accepted() -> None:
    # An address, not a name: no test may depend on public DNS.
    assert await file_url_refusal("https://93.184.215.14/digits/model.bin") is None


def test_git_urls_may_not_carry_credentials() -> None:
    with pytest.raises(ValidationError, match="must not carry credentials"):
        GitRef(url="https://user:token@git.example.com/r.git", ref="main")
    assert GitRef(url="git@github.com:acme/r.git", ref="main").url.startswith("git@")
