"""What the CLI says when an operation fails: the API's refusals told as commands and flags.

The API speaks to every client in HTTP terms ("pass force=true", "POST /v1/owners first"). A
person at the command line needs the command or flag that does it, so every failure a
command shows passes through :func:`advise`, here and nowhere else. The API's problem
``type`` and its extension members decide; the wording of ``detail`` only where the API
gives nothing structured. Pure: what it needs from the environment is passed in.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dockyard_cli.errors import ApiError

__all__ = ["ADMIN_TOKEN_FILE", "Where", "advise", "relogin_command"]

ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name, not a secret
"""The file in the platform's data directory that holds its admin token."""


@dataclass(frozen=True)
class Where:
    """What advice mentions of this machine: the login file and the platform's data dir."""

    login_file: str
    data_dir: str = ".dockyard"

    @property
    def admin_token_file(self) -> str:
        """``<data dir>/admin-token``, as a person would type it."""
        return f"{self.data_dir.rstrip('/')}/{ADMIN_TOKEN_FILE}"


def advise(error: ApiError, where: Where) -> str:
    """The message for a failed operation: the server's refusal and what to run about it."""
    if error.status is None:
        return (
            f"{error}\n  Is the platform running (make run), and is the URL right "
            "(dockyard login --url)?"
        )
    problem = error.problem
    said = _heading(error) + ": "
    for rule in _RULES:
        advice = rule(error, problem, where)
        if advice is not None:
            return said + advice
    return str(error) if not problem else said + _plain(str(problem.get("detail") or ""))


def relogin_command(error: ApiError, where: Where) -> str:
    """``dockyard login ...`` with the current admin token, keeping the login's other values."""
    login = error.login
    words = ["dockyard", "login"]
    if login is not None:
        words += ["--url", login.url]
        words += ["--router-url", login.router_url] if login.router_url else []
        words += ["--project", login.project] if login.project else []
        words += ["--deployment", login.deployment] if login.deployment else []
    else:
        words += ["--url", "<API URL>"]
    token = f'--token "$(cat {shlex.quote(where.admin_token_file)})"'
    return " ".join(shlex.quote(word) for word in words) + " " + token


def _heading(error: ApiError) -> str:
    title = error.problem.get("title")
    return f"{error.status} {title}" if title else f"{error.status}"


def _slug(problem: dict[str, Any]) -> str:
    return str(problem.get("type", "")).rsplit("/", 1)[-1]


def _unauthenticated(error: ApiError, problem: dict[str, Any], where: Where) -> str | None:
    if error.status != 401:
        return None
    login = error.login
    url = login.url if login is not None else "the API"
    current = (
        f"The platform keeps its admin token in {where.admin_token_file} (in the folder "
        "`make run` runs in) and prints it when it starts; DOCKYARD_ADMIN_TOKEN sets one "
        "that never changes."
    )
    if login is not None and login.token_from == "environment":  # noqa: S105
        return (
            f"the API at {url} refused the token in DOCKYARD_TOKEN: it was revoked, or the "
            "platform was started again with another admin token. Set it to the current one:\n"
            f'  export DOCKYARD_TOKEN="$(cat {shlex.quote(where.admin_token_file)})"\n' + current
        )
    if login is not None and login.token_from == "option":  # noqa: S105
        return (
            f"the API at {url} refused this token: it is unknown, revoked or expired. Give "
            f'the platform\'s current admin token: --token "$(cat {where.admin_token_file})"\n'
            + current
        )
    return (
        f"the API at {url} refused the token saved by dockyard login (in {where.login_file}): "
        "it was revoked, or the platform was started again with another admin token. "
        f"Log in again with the current one:\n  {relogin_command(error, where)}\n" + current
    )


def _forbidden(error: ApiError, problem: dict[str, Any], where: Where) -> str | None:
    if error.status != 403:
        return None
    detail = str(problem.get("detail") or "")
    if "platform admin" in detail:
        return f"{detail}: log in with the admin token the platform printed when it started"
    return (
        f"{detail}: ask the owner's admin for a token with that role "
        "(dockyard owners token OWNER --role deployer)"
    )


_MISSING = (
    (
        re.compile(r"owner '([^']+)' does not exist"),
        "owner {0} does not exist: create it with dockyard owners create {0} (as the "
        "platform admin)",
    ),
    (
        re.compile(r"project (\S+) does not exist"),
        "project {0} does not exist: dockyard deploy creates it; or check --project "
        "(default: the login's)",
    ),
    (
        re.compile(r"deployment (\S+) does not exist"),
        "deployment {0} does not exist: dockyard deploy creates it; or check --deployment "
        "(default: the login's)",
    ),
    (
        re.compile(r"version '?([^' ]+?)'? does not exist"),
        "version {0} does not exist: dockyard versions lists them",
    ),
    (
        re.compile(r"alias '([^']+)' does not exist"),
        "alias {0} does not exist: dockyard alias list lists them",
    ),
    (
        re.compile(r"target '([^']+)' does not exist"),
        "target {0} does not exist: dockyard targets lists them",
    ),
)


def _not_found(error: ApiError, problem: dict[str, Any], where: Where) -> str | None:
    if error.status != 404:
        return None
    detail = str(problem.get("detail") or "")
    for pattern, advice in _MISSING:
        found = pattern.search(detail)
        if found:
            return advice.format(*found.groups())
    return None


def _version_stopped(error: ApiError, problem: dict[str, Any], where: Where) -> str | None:
    if _slug(problem) != "version-stopped":
        return None
    names = [str(name) for name in problem.get("stopped") or []]
    if not names:
        return None
    which = ", ".join(names)
    starts = " and ".join(f"dockyard start {name} --wait" for name in names)
    return (
        f"version {which} {'is' if len(names) == 1 else 'are'} stopped, and an alias never "
        f"points at a stopped version (not even with --force). Start it again with "
        f"{starts}, then run this command again."
    )


def _version_not_built(error: ApiError, problem: dict[str, Any], where: Where) -> str | None:
    if _slug(problem) != "version-not-built":
        return None
    detail = str(problem.get("detail") or "").split(";")[0]
    return f"{detail}; deploy the code again as a new version (dockyard deploy)"


def _version_not_ready(error: ApiError, problem: dict[str, Any], where: Where) -> str | None:
    if _slug(problem) != "version-not-ready":
        return None
    statuses = problem.get("versions")
    if not isinstance(statuses, dict) or not statuses:
        return None
    said = "; ".join(f"version {name} is {status}" for name, status in sorted(statuses.items()))
    first = sorted(statuses)[0]
    return (
        f"{said}: wait until it is ready (dockyard status {first} shows where it stands), "
        "or use --force to point the alias at it anyway"
    )


def _version_in_use(error: ApiError, problem: dict[str, Any], where: Where) -> str | None:
    if _slug(problem) != "version-in-use":
        return None
    aliases = [str(a) for a in problem.get("aliases") or []]
    version = problem.get("version")
    if not aliases or not version:
        return None
    first = aliases[0]
    return (
        f"alias {', '.join(aliases)} {'points' if len(aliases) == 1 else 'point'} to {version}: "
        f"point it at another version first (dockyard alias set {first} VERSION), or stop "
        f"{version} anyway with dockyard stop {version} --force (the alias then serves nothing)"
    )


def _version_exists(error: ApiError, problem: dict[str, Any], where: Where) -> str | None:
    if _slug(problem) != "version-exists":
        return None
    return (
        f"{problem.get('detail')}: give another --name, or leave --name out for the day's "
        "next YYYYMMDD.N"
    )


def _no_endpoints(error: ApiError, problem: dict[str, Any], where: Where) -> str | None:
    if not str(problem.get("detail") or "").startswith("no endpoint definitions"):
        return None
    return (
        "no endpoint definitions: the folder you deploy needs a valohai.yaml with an "
        "endpoint at its root (see examples/digits-wsgi)"
    )


def _missing_upload(error: ApiError, problem: dict[str, Any], where: Where) -> str | None:
    detail = str(problem.get("detail") or "")
    if _slug(problem) != "missing-blob" and "is not uploaded" not in detail:
        return None
    return (
        f"{detail.split(';')[0]}: the server lost an upload this deploy made; "
        "run dockyard deploy again"
    )


_FLAGS = {"name": "--name", "endpoints": "--endpoint", "files": "--file", "targets": "--target"}
"""Fields of a version submission that ``dockyard deploy`` fills from its options."""


def _invalid_fields(error: ApiError, problem: dict[str, Any], where: Where) -> str | None:
    errors = problem.get("errors")
    if error.status != 422 or not isinstance(errors, list) or not errors:
        return None
    said = []
    for item in errors:
        if not isinstance(item, dict):
            continue
        location = [str(part) for part in item.get("loc") or []]
        field = location[1] if len(location) > 1 else ".".join(location)
        if location[:1] == ["body"] and field in _FLAGS:
            where_ = _FLAGS[field]
        elif location[:1] == ["path"]:
            where_ = field.upper()
        else:
            where_ = ".".join(location[1:]) or field
        said.append(f"{where_}: {item.get('msg')}")
    return "; ".join(said) or None


_API_SPEAK = (
    (re.compile(r"\bpass force(=true)?\b"), "use --force"),
    (re.compile(r"\bset force\b"), "use --force"),
)


def _plain(detail: str) -> str:
    """A detail no rule knows, its HTTP parameters named as the CLI's flags."""
    for pattern, replacement in _API_SPEAK:
        detail = pattern.sub(replacement, detail)
    return detail


_RULES: tuple[Callable[[ApiError, dict[str, Any], Where], str | None], ...] = (
    _unauthenticated,
    _forbidden,
    _not_found,
    _version_stopped,
    _version_not_built,
    _version_not_ready,
    _version_in_use,
    _version_exists,
    _no_endpoints,
    _missing_upload,
    _invalid_fields,
)
