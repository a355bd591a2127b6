"""What every command shares: its options, how it answers (table or JSON), and exit codes.

Exit codes: 0 done, 1 the operation failed (the server refused, or could not be reached),
2 the command was used wrongly (click's usage errors, and a missing login or project).

Light to import: every command module imports this one when ``dockyard`` starts, so the
HTTP client and the login's pydantic model are imported by :func:`session`, when a command
runs (``dockyard --help`` needs neither).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dockyard_cli.errors import ApiError, ConfigError
from dockyard_cli.scope import Scope

if TYPE_CHECKING:
    from dockyard_cli.client import ApiClient

__all__ = [
    "DeploymentOption",
    "Output",
    "OutputOption",
    "ProjectOption",
    "emit",
    "explain",
    "fail",
    "failures_exit",
    "say",
    "session",
    "table",
]


class Output(StrEnum):
    """How read commands answer."""

    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table for people, json for scripts.")
]
ProjectOption = Annotated[
    str | None,
    typer.Option(
        "--project", "-p", help="OWNER/PROJECT (default: DOCKYARD_PROJECT, then the login's)."
    ),
]
DeploymentOption = Annotated[
    str | None,
    typer.Option(
        "--deployment",
        "-d",
        help="Deployment name (default: DOCKYARD_DEPLOYMENT, then the login's).",
    ),
]


def say(line: str) -> None:
    """Progress and notes for a person: on stderr, so stdout stays the answer."""
    print(line, file=sys.stderr, flush=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Say why on stderr and return the exit to raise."""
    print(f"dockyard: {message}", file=sys.stderr, flush=True)
    return typer.Exit(code)


def explain(error: ApiError) -> str:
    """What to say about a failed operation: :func:`dockyard_cli.advice.advise` given where
    this machine keeps the login and the platform's data."""
    from dockyard_cli.advice import Where, advise
    from dockyard_cli.config import config_path

    where = Where(
        login_file=str(config_path()), data_dir=os.environ.get("DOCKYARD_DATA_DIR", ".dockyard")
    )
    return advise(error, where)


@contextmanager
def failures_exit() -> Iterator[None]:
    """Turn the CLI's known failures into a message and an exit code (see module doc)."""
    try:
        yield
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    except ApiError as exc:
        raise fail(explain(exc), 1) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


@contextmanager
def session(
    project: str | None = None, deployment: str | None = None, *, scoped: bool = True
) -> Iterator[tuple[ApiClient, Scope | None]]:
    """An API client as the logged-in token and the scope the options name; exits on the
    known failures."""
    with failures_exit():
        from dockyard_cli.client import ApiClient
        from dockyard_cli.config import load_login

        login = load_login(project=project, deployment=deployment)
        scope = Scope(login.project, login.deployment) if scoped else None
        with ApiClient(login) as client:
            yield client, scope


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as aligned columns under upper-case headings. Pure."""
    cells = [[c.upper() for c in columns]] + [
        ["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def emit(output: Output, data: Any, text: str) -> None:
    """Print ``data`` as JSON, or ``text`` for a person."""
    if output is Output.JSON:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)
