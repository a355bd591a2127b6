"""The CLI's failures, in a module that imports nothing heavy (every command loads it).

:class:`ConfigError` is a usage problem (exit 2): no login, no project. :class:`ApiError` is a
failed operation (exit 1): the server refused, or could not be reached; a refusal keeps the
problem the server answered, so that :mod:`dockyard_cli.advice` can say what to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dockyard_cli.config import Login

__all__ = ["ApiError", "ConfigError"]


class ConfigError(RuntimeError):
    """The stored login is missing a value a command needs, or cannot be read."""


class ApiError(RuntimeError):
    """The server refused a call (``status`` set) or could not be reached (``status`` None).

    ``problem`` is the RFC 9457 body of a refusal when the server sent one (``type``,
    ``title``, ``detail`` and the extension members of the problem); ``login`` is what the
    call was sent with (where its token came from, for a 401).
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        problem: dict[str, Any] | None = None,
        login: Login | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem or {}
        self.login = login
