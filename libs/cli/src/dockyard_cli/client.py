"""The one HTTP seam of the CLI: the platform's API (and the router's ops API) over httpx.

Every failure becomes an :class:`ApiError` carrying what a person needs: the HTTP status
and the RFC 9457 problem the server answered, or why no answer came. Commands import this
module when they run, not when the CLI starts: httpx alone costs a quarter of a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from dockyard_cli.config import Login
from dockyard_cli.errors import ApiError, ConfigError

__all__ = ["ApiClient", "ApiError", "problem_of", "problem_text", "refusal"]


def problem_of(response: httpx.Response) -> dict[str, Any] | None:
    """The RFC 9457 problem a refusal carries, if its body is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and ("detail" in body or "title" in body):
        return body
    return None


def refusal(response: httpx.Response, login: Login | None = None) -> ApiError:
    """The :class:`ApiError` of a refused call (``login``: what the call was sent with)."""
    return ApiError(problem_text(response), response.status_code, problem_of(response), login)


def problem_text(response: httpx.Response) -> str:
    """One line for a refused call: the problem's title and detail, else the body."""
    body = problem_of(response)
    if body is not None:
        title = body.get("title") or body.get("type", "")
        detail = body.get("detail")
        if isinstance(detail, list):  # FastAPI's own 422 lists every field error
            detail = "; ".join(
                f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg')}"
                for item in detail
                if isinstance(item, dict)
            )
        return (
            f"{response.status_code} {title}: {detail}"
            if detail
            else f"{response.status_code} {title}"
        )
    text = response.text.strip()[:300]
    return f"{response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")


class ApiClient:
    """Calls to the API as the logged-in token; raises :class:`ApiError` on any refusal."""

    def __init__(self, login: Login, *, timeout: float = 30.0) -> None:
        self.login = login
        self.http = httpx.Client(
            base_url=login.url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {login.token.get_secret_value()}",
                "User-Agent": "dockyard-cli",
            },
            timeout=timeout,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def call(
        self, method: str, path: str, *, expect: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        """Send one request; ApiError unless it answers 2xx or one of ``expect``."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the API at {self.login.url}: {exc}") from exc
        if response.is_success or response.status_code in expect:
            return response
        raise refusal(response, self.login)

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET and decode the JSON answer."""
        return self.call("GET", path, **kwargs).json()

    def put(self, path: str, body: Any, **kwargs: Any) -> Any:
        """PUT JSON and decode the answer."""
        return self.call("PUT", path, json=body, **kwargs).json()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        """POST JSON (or nothing) and decode the answer."""
        return self.call("POST", path, json=body, **kwargs).json()

    def items(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paged listing (``{"items": [...], "next": cursor}``)."""
        collected: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            page = self.get(path, params=query)
            collected.extend(page.get("items", []))
            cursor = page.get("next")
            if not cursor:
                return collected

    @contextmanager
    def stream(
        self, path: str, *, idle_s: float | None = None, **params: Any
    ) -> Iterator[httpx.Response]:
        """An open streaming GET (the event feed); reading raises httpx.ReadTimeout after
        ``idle_s`` seconds without a byte (None: wait for ever, the feed idles)."""
        timeout = httpx.Timeout(10.0, read=idle_s)
        try:
            with self.http.stream("GET", path, params=params, timeout=timeout) as response:
                if not response.is_success:
                    response.read()
                    raise refusal(response, self.login)
                yield response
        except httpx.ReadTimeout:
            raise
        except httpx.TransportError as exc:
            raise ApiError(f"the event feed at {self.login.url} broke off: {exc}") from exc

    def router(self, *, admin: bool = False) -> httpx.Client:
        """A client of the router; with ``admin`` it sends the token (for ``/_ops`` only:
        model calls must never hand it to a model's code)."""
        if not self.login.router_url:
            raise ConfigError(
                "no router URL: run dockyard login --router-url <URL> "
                "(dockyard up prints it), or set DOCKYARD_ROUTER_URL"
            )
        return httpx.Client(
            base_url=self.login.router_url.rstrip("/"),
            headers=(
                {"Authorization": f"Bearer {self.login.token.get_secret_value()}"} if admin else {}
            ),
            timeout=60.0,
        )
