"""Where the platform may send a request a user chose: no loopback, private, link-local or
metadata addresses (webhook deliveries, model files downloaded from a URL, git code).

A URL is checked when the user gives it and again just before it is called (a name may
resolve elsewhere by then). Hosts, addresses or networks on an admin's allow-list pass.
:func:`refusal`, :func:`allowed_by_list` and :func:`git_host` are pure;
:func:`checked_addresses` and :func:`checked_git_destination` resolve the name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "GIT_ALLOW_SETTING",
    "GitDestination",
    "IPAddress",
    "Resolver",
    "UnsafeDestination",
    "allowed_by_list",
    "check_file_url",
    "checked_addresses",
    "checked_git_destination",
    "git_host",
    "refusal",
    "resolve_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
RESOLVE_TIMEOUT_S = 5.0


class UnsafeDestination(ValueError):
    """A URL that must not be called; the message says why."""


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64, compatible)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in network for network in _NAT64) or (
        int(address) >> 32 == 0 and int(address) > 1
    ):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` must not be called (None when it may): a pure decision."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return refusal(embedded)
    checks = (
        (address in _METADATA, "a cloud metadata address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address (this machine)"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, "a CGNAT address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    )
    return next((reason for refused, reason in checks if refused), None)


def allowed_by_list(host: str, address: IPAddress | None, allowed: Sequence[str]) -> bool:
    """Whether the allow-list names ``host``, or an address or network holding ``address``."""
    for entry in allowed:
        if entry == host.lower():
            return True
        if address is None:
            continue
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host name entry
    return False


def _host_of(url: str) -> str:
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError as exc:
        raise UnsafeDestination(f"{url!r} is not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise UnsafeDestination(f"{url} is not an http or https URL")
    if parsed.username or parsed.password:
        raise UnsafeDestination(f"{parsed.hostname}: a URL here may not carry credentials")
    if not parsed.hostname:
        raise UnsafeDestination(f"{url} names no host")
    if not parsed.hostname.isascii():
        try:
            ascii_form = parsed.hostname.encode("idna").decode()
        except UnicodeError:
            ascii_form = "its punycode (xn--) form"
        raise UnsafeDestination(f"{parsed.hostname}: give the host in ASCII, as {ascii_form}")
    return parsed.hostname


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to (itself when it is an address); UnsafeDestination
    when it does not resolve."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        raise UnsafeDestination(f"host {host!r} does not resolve: {exc}") from exc
    # The scope of an IPv6 address (fe80::1%eth0) is not part of the address.
    return sorted({ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}, key=str)


async def checked_addresses(
    url: str,
    allowed: Sequence[str],
    *,
    refused_because: str = "webhooks are not delivered there",
    allow_setting: str = "DOCKYARD_WEBHOOK_ALLOWED_HOSTS",
) -> tuple[str, list[IPAddress]]:
    """The URL's host and the addresses it may be reached at; :class:`UnsafeDestination` if any
    address it resolves to is refused and not allowed by the list.

    ``refused_because`` and ``allow_setting`` finish the refusal's message for the caller's use.
    """
    host = _host_of(url)
    port = urllib.parse.urlsplit(url).port or (443 if url.lower().startswith("https") else 80)
    addresses = await resolve_host(host, port)
    _check_each(host, addresses, allowed, refused_because, allow_setting)
    return host, addresses


def _check_each(
    host: str,
    addresses: Sequence[IPAddress],
    allowed: Sequence[str],
    refused_because: str,
    allow_setting: str,
) -> None:
    for address in addresses:
        reason = refusal(address)
        if reason is not None and not allowed_by_list(host, address, allowed):
            raise UnsafeDestination(
                f"{host} is {address}, {reason}; {refused_because} "
                f"(an admin may allow it with {allow_setting})"
            )


async def check_file_url(url: str) -> None:
    """Refuse a model-file URL whose host is or resolves to an address not to be called.

    The one policy of the API (at submission) and the builder (again at download).
    """
    await checked_addresses(
        url,
        [],
        refused_because="model files are not downloaded from there",
        allow_setting="DOCKYARD_FILES_ALLOW_HTTP",
    )


GIT_ALLOW_SETTING = "DOCKYARD_GIT_ALLOW_PRIVATE_ADDRESSES"

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""How a host name becomes addresses: :func:`resolve_host`, or a test's fixed answer."""


@dataclass(frozen=True)
class GitDestination:
    """Where a git URL's code is fetched from: the host as written, and the addresses it
    was checked at (the fetch must connect to these, not resolve the name again)."""

    scheme: str
    """``https`` or ``ssh`` (``git@host:path`` is ssh)."""
    host: str
    port: int
    addresses: list[IPAddress]


def git_host(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an ``https://``, ``ssh://`` or ``git@host:path`` URL;
    :class:`UnsafeDestination` for another form. Pure."""
    if url.startswith("git@") and "://" not in url:
        rest = url.removeprefix("git@")
        host, colon, _ = rest[1:].partition("]:") if rest.startswith("[") else rest.partition(":")
        if not colon or not host:
            raise UnsafeDestination(f"{url} is not a git URL of the form git@host:path")
        return "ssh", host, 22
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError as exc:
        raise UnsafeDestination(f"{url!r} is not a valid URL: {exc}") from exc
    if parsed.scheme not in ("https", "ssh"):
        raise UnsafeDestination(f"{url} is not an https://, ssh:// or git@host:path URL")
    if not parsed.hostname:
        raise UnsafeDestination(f"{url} names no host")
    return parsed.scheme, parsed.hostname, port or (443 if parsed.scheme == "https" else 22)


async def checked_git_destination(
    url: str, *, allow_private: bool, resolve: Resolver = resolve_host
) -> GitDestination:
    """Resolve a git URL's host once and check every address like a model file's;
    :class:`UnsafeDestination` naming the rule when one is refused (unless
    ``allow_private``, for tests and closed networks)."""
    scheme, host, port = git_host(url)
    if not host.isascii() or host.startswith("-"):
        raise UnsafeDestination(f"{host!r} is not a host name git may be pointed at")
    addresses = await resolve(host, port)
    if not addresses:
        raise UnsafeDestination(f"host {host!r} resolves to no address")
    if not allow_private:
        _check_each(host, addresses, [], "code is not fetched from there", GIT_ALLOW_SETTING)
    return GitDestination(scheme=scheme, host=host, port=port, addresses=addresses)
