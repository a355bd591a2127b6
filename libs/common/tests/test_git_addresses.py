"""Git URLs get the model-file address policy: the host of every form is found and checked."""

from __future__ import annotations

import ipaddress

import pytest

from dockyard_common.addresses import (
    IPAddress,
    Resolver,
    UnsafeDestination,
    checked_git_destination,
    git_host,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/acme/model.git", ("https", "github.com", 443)),
        ("https://git.example.com:8443/m.git", ("https", "git.example.com", 8443)),
        ("ssh://git.example.com/m.git", ("ssh", "git.example.com", 22)),
        ("ssh://git.example.com:2222/m.git", ("ssh", "git.example.com", 2222)),
        ("git@github.com:acme/model.git", ("ssh", "github.com", 22)),
        ("git@[::1]:model.git", ("ssh", "::1", 22)),
        ("https://[::1]:1/x.git", ("https", "::1", 1)),
    ],
)
def test_the_host_of_every_git_url_form_is_found(url: str, expected: tuple[str, str, int]) -> None:
    assert git_host(url) == expected


@pytest.mark.parametrize(
    "url", ["http://example.com/x.git", "ext::sh -c id", "git@host", "https://h:99999/x"]
)
def test_other_forms_are_refused(url: str) -> None:
    with pytest.raises(UnsafeDestination):
        git_host(url)


def answering(*addresses: str) -> Resolver:
    """A resolver that answers ``addresses`` for every name."""

    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in addresses]

    return resolve


async def test_a_name_resolving_to_any_internal_address_is_refused_naming_the_rule() -> None:
    resolve = answering("8.8.4.4", "10.0.0.8")
    with pytest.raises(UnsafeDestination, match=r"10\.0\.0\.8, a private address") as caught:
        await checked_git_destination(
            "https://git.example.com/x.git", allow_private=False, resolve=resolve
        )
    assert "DOCKYARD_GIT_ALLOW_PRIVATE_ADDRESSES" in str(caught.value)


async def test_public_addresses_pass_and_are_kept_for_the_pin() -> None:
    destination = await checked_git_destination(
        "git@git.example.com:x.git", allow_private=False, resolve=answering("8.8.8.8")
    )
    assert destination.scheme == "ssh" and destination.host == "git.example.com"
    assert destination.addresses == [ipaddress.ip_address("8.8.8.8")]


async def test_a_host_that_looks_like_an_option_is_refused() -> None:
    with pytest.raises(UnsafeDestination, match="not a host name"):
        await checked_git_destination(
            "ssh://-oProxyCommand=id/x.git", allow_private=True, resolve=answering("8.8.8.8")
        )
