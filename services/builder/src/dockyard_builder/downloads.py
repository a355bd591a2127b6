"""Endpoint files fetched from a URL: streamed to disk, capped, failures classified."""

from __future__ import annotations

from pathlib import Path

import httpx

from dockyard_common import PermanentError, TransientError
from dockyard_common.addresses import UnsafeDestination, check_file_url

__all__ = ["download"]

_CHUNK = 1024 * 1024


async def download(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    timeout_s: float = 60.0,
    allow_private: bool = False,
) -> int:
    """Stream ``url`` into ``dest``; the byte count.

    The host is checked again here (the API checked it at submission, but a name may resolve
    elsewhere by now): a private or local address is refused unless ``allow_private``. A 4xx
    answer or an oversized file is the user's to fix (PermanentError); a server error, a
    timeout or an unreachable host may pass (TransientError).
    """
    if not allow_private:
        try:
            await check_file_url(url)
        except UnsafeDestination as exc:
            raise PermanentError(f"downloading {url}: {exc}") from None
    size = 0
    try:
        async with (
            # Redirects are not followed: each hop would need the checks the URL passed.
            httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client,
            client.stream("GET", url) as response,
        ):
            if response.is_redirect:
                raise PermanentError(
                    f"{url} redirects to {response.headers.get('location')}; give the final URL"
                )
            if 400 <= response.status_code < 500:
                raise PermanentError(f"downloading {url} answered {response.status_code}")
            if response.status_code >= 500:
                raise TransientError(f"downloading {url} answered {response.status_code}")
            with dest.open("wb") as out:
                async for chunk in response.aiter_bytes(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise PermanentError(f"{url} is larger than {max_bytes} bytes")
                    out.write(chunk)
    except httpx.TransportError as exc:
        raise TransientError(f"could not download {url}: {exc!r}") from exc
    return size
