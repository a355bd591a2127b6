"""Pages from templates (Jinja2, every value escaped), the one-line result an action leaves
for the next page, and the console's error pages.

:class:`ConsoleRoute` is every console route's class: an error a route raises becomes a
page (the sign-in page, or the API's own problem detail), never JSON or a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

from dockyard_api.console.security import CsrfRefused, SignInNeeded
from dockyard_api.problems import Problem
from dockyard_common import Conflict, InvalidInput, get_logger

__all__ = ["ConsoleRoute", "flash", "render", "templates"]

log = get_logger(__name__)

FLASH_COOKIE = "dockyard_flash"

templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """A page; the result an earlier action left is shown once, then forgotten."""
    message = request.cookies.get(FLASH_COOKIE)
    shown = unquote(message)[:500] if message else None
    html = templates.get_template(template).render(request=request, flash=shown, **values)
    response = HTMLResponse(html, status_code=status)
    if message:
        response.delete_cookie(FLASH_COOKIE, path="/console")
    return response


def flash(response: Response, message: str) -> Response:
    """Leave ``message`` (an action's result) for the page the browser goes to next."""
    response.set_cookie(
        FLASH_COOKIE,
        quote(message[:500]),
        max_age=60,
        httponly=True,
        samesite="strict",
        path="/console",
    )
    return response


def _error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    return render(request, "error.html", status=status, status_code=status, detail=detail)


class ConsoleRoute(APIRoute):
    """A console route: errors become pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInNeeded:
                return RedirectResponse("/console/sign-in", status_code=303)
            except CsrfRefused:
                log.warning("console.csrf.refused", path=request.url.path)
                return _error_page(
                    request,
                    403,
                    "this form is out of date or was not sent by the console; "
                    "reload the page and try again",
                )
            except Problem as exc:
                return _error_page(request, exc.status, exc.detail)
            except Conflict as exc:
                return _error_page(request, 409, str(exc))
            except InvalidInput as exc:
                return _error_page(request, 422, str(exc))
            except RequestValidationError as exc:
                fields = ", ".join(
                    ".".join(str(p) for p in error["loc"][1:]) for error in exc.errors()[:5]
                )
                return _error_page(request, 422, f"these fields are not valid: {fields}")

        return console_handler
