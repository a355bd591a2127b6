"""Where the CLI finds the platform: ``dockyard login`` writes it, every other command reads it.

The login lives in the user's config directory (``platformdirs``; ``$XDG_CONFIG_HOME`` on
Linux) as JSON readable by its owner only, since it holds an API token. Environment
variables (``DOCKYARD_URL``, ``DOCKYARD_TOKEN``, ``DOCKYARD_ROUTER_URL``,
``DOCKYARD_PROJECT``, ``DOCKYARD_DEPLOYMENT``) and command options win over the file, so a
script or CI job needs no file at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from dockyard_cli.errors import ConfigError

__all__ = ["ConfigError", "Login", "TokenSource", "config_path", "load_login", "save_login"]

CONFIG_FILE = "login.json"

TokenSource = Literal["option", "environment", "file"]
"""Where a command's token came from: ``--token``, ``DOCKYARD_TOKEN`` or the login file."""


class Login(BaseModel):
    """What ``dockyard login`` stores: the API, its token, the router, and default scopes."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="The API, e.g. http://127.0.0.1:8080.")
    token: SecretStr
    router_url: str | None = Field(
        default=None, description="The router model consumers call, e.g. http://127.0.0.1:8081."
    )
    project: str | None = Field(default=None, description="Default owner/project.")
    deployment: str | None = Field(default=None, description="Default deployment.")
    token_from: TokenSource = Field(
        default="option", exclude=True, description="Where the token came from; not stored."
    )

    def dumped(self) -> dict[str, str | None]:
        """The stored form, the token in clear (the file is the owner's only)."""
        return {
            "url": self.url,
            "token": self.token.get_secret_value(),
            "router_url": self.router_url,
            "project": self.project,
            "deployment": self.deployment,
        }


def config_path() -> Path:
    """The login file: ``$DOCKYARD_CONFIG``, else ``<user config dir>/dockyard/login.json``."""
    explicit = os.environ.get("DOCKYARD_CONFIG")
    if explicit:
        return Path(explicit)
    return Path(platformdirs.user_config_dir("dockyard")) / CONFIG_FILE


def save_login(login: Login, path: Path | None = None) -> Path:
    """Write the login with mode 0600 (created so, never world-readable even briefly)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(login.dumped(), handle, indent=2)
        handle.write("\n")
    os.chmod(temporary, 0o600)  # an existing .tmp keeps its old mode through O_CREAT
    temporary.replace(path)
    return path


def _stored(path: Path) -> dict[str, str | None]:
    if not path.exists():
        return {}
    try:
        loaded = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} does not hold a JSON object; run dockyard login again")
    return {str(k): v for k, v in loaded.items()}


def load_login(
    *,
    url: str | None = None,
    token: str | None = None,
    router_url: str | None = None,
    project: str | None = None,
    deployment: str | None = None,
) -> Login:
    """The login from options, else the environment, else the file; ConfigError when no
    API URL or token is known."""
    stored = _stored(config_path())
    environ = os.environ
    merged = {
        "url": url or environ.get("DOCKYARD_URL") or stored.get("url"),
        "token": token or environ.get("DOCKYARD_TOKEN") or stored.get("token"),
        "router_url": router_url or environ.get("DOCKYARD_ROUTER_URL") or stored.get("router_url"),
        "project": project or environ.get("DOCKYARD_PROJECT") or stored.get("project"),
        "deployment": deployment or environ.get("DOCKYARD_DEPLOYMENT") or stored.get("deployment"),
    }
    token_from: TokenSource = (
        "option" if token else "environment" if environ.get("DOCKYARD_TOKEN") else "file"
    )
    if not merged["url"] or not merged["token"]:
        raise ConfigError(
            "not logged in: run dockyard login --url <API URL> --token <token> "
            "(dockyard up prints both), or set DOCKYARD_URL and DOCKYARD_TOKEN"
        )
    try:
        return Login.model_validate({**merged, "token_from": token_from})
    except ValidationError as exc:
        raise ConfigError(f"the login in {config_path()} is not valid: {exc}") from exc
