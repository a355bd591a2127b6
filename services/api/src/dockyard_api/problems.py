"""RFC 9457 problem details: the one place errors become HTTP responses."""

from __future__ import annotations

import json
from typing import Any

import nats.errors
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard_common import Conflict, InvalidInput, TransientError, get_logger

__all__ = [
    "PROBLEM_RESPONSES",
    "OversizeAsProblem",
    "Problem",
    "ProblemDetails",
    "document_problems",
    "install_problem_handlers",
]

log = get_logger(__name__)

PROBLEM_BASE = "https://dockyard.dev/problems/"
MEDIA_TYPE = "application/problem+json"


class ProblemDetails(BaseModel):
    """The body of every error answer (RFC 9457)."""

    type: str = Field(description="A stable URI naming the kind of error.")
    title: str
    status: int
    detail: str = Field(description="What went wrong and how to fix it.")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Each invalid field, for validation errors."
    )


_PROBLEM_SCHEMA = {"$ref": "#/components/schemas/ProblemDetails"}

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": title, "content": {MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}}}
    for status, title in {
        400: "Bad request",
        401: "No valid bearer token",
        403: "The token's role may not do this",
        404: "Not found (or not visible to this token)",
        409: "Conflicts with the current state",
        412: "If-Match does not hold",
        413: "Request body too large",
        422: "Invalid input",
        503: "A dependency (NATS) is unavailable",
    }.items()
}
"""The error answers every route may give, documented once for the OpenAPI document."""


def document_problems(app: FastAPI) -> None:
    """Put :class:`ProblemDetails` into the OpenAPI components the error answers refer to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["ProblemDetails"] = ProblemDetails.model_json_schema()
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class Problem(Exception):
    """An error answered as problem+json with a stable ``type`` slug."""

    def __init__(self, status: int, slug: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.extra = extra


MAX_DETAIL_CHARS = 2000
"""An error echoes what it refuses; what a client sent may be megabytes."""
MAX_FIELD_ERRORS = 10


def _capped(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _response(status: int, slug: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": _capped(detail),
    }
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    411: "Length required",
    412: "Precondition failed",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Invalid input",
    503: "Service unavailable",
}


def install_problem_handlers(app: FastAPI) -> None:
    """Map every error the API can raise to problem+json, once."""

    @app.exception_handler(Problem)
    async def on_problem(_: Request, exc: Problem) -> JSONResponse:
        return _response(
            exc.status, exc.slug, _TITLES.get(exc.status, "Error"), exc.detail, **exc.extra
        )

    @app.exception_handler(InvalidInput)
    async def on_invalid(_: Request, exc: InvalidInput) -> JSONResponse:
        return _response(422, "invalid-input", _TITLES[422], str(exc))

    @app.exception_handler(Conflict)
    async def on_conflict(_: Request, exc: Conflict) -> JSONResponse:
        return _response(409, "conflict", _TITLES[409], str(exc))

    @app.exception_handler(TransientError)
    async def on_transient(_: Request, exc: TransientError) -> JSONResponse:
        log.warning("api.dependency.unavailable", error=str(exc))
        return _response(503, "unavailable", _TITLES[503], str(exc))

    @app.exception_handler(nats.errors.Error)
    async def on_nats(_: Request, exc: nats.errors.Error) -> JSONResponse:
        log.warning("api.nats.unavailable", error=repr(exc))
        return _response(503, "unavailable", _TITLES[503], f"NATS is unavailable: {exc!r}")

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        every = exc.errors()
        errors = [
            {
                # A dict key is part of the location, and a client chooses its length.
                "loc": [p if isinstance(p, int) else _capped(str(p), 60) for p in error["loc"]],
                "msg": _capped(str(error.get("msg", "")).removeprefix("Value error, "), 200),
                "type": error.get("type", ""),
            }
            for error in every[:MAX_FIELD_ERRORS]
        ]
        if len(every) > MAX_FIELD_ERRORS:
            errors.append(
                {"loc": [], "msg": f"and {len(every) - MAX_FIELD_ERRORS} more", "type": ""}
            )
        detail = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in errors
        )
        return _response(422, "invalid-input", _TITLES[422], detail, errors=errors)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("api.request.failed", method=request.method, path=request.url.path)
        return _response(
            500,
            "internal",
            "Internal error",
            "the API failed unexpectedly; the error is in its log",
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = _TITLES.get(exc.status_code, "error").lower().replace(" ", "-")
        response = _response(
            exc.status_code, slug, _TITLES.get(exc.status_code, "Error"), str(exc.detail)
        )
        response.headers.update(exc.headers or {})  # Allow on a 405, say
        return response


class OversizeAsProblem:
    """ASGI middleware: Starlette's body-limit answers 413 in plain text; answer problem+json.

    The limit itself stays Starlette's (``max_body_size``), which also stops chunked bodies.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced = False

        async def send_problem_on_413(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 413:
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if content_type.startswith(b"text/plain"):
                    replaced = True
                    body = json.dumps(
                        {
                            "type": PROBLEM_BASE + "too-large",
                            "title": _TITLES[413],
                            "status": 413,
                            "detail": "request body is larger than this route accepts",
                        }
                    ).encode()
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 413,
                            "headers": [
                                (b"content-type", MEDIA_TYPE.encode()),
                                (b"content-length", str(len(body)).encode()),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
            if replaced:
                return  # the plain-text body of the replaced answer
            await send(message)

        await self.app(scope, receive, send_problem_on_413)
