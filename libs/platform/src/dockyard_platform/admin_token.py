"""The embedded platform's admin token, kept in its data directory across restarts.

The data survives in the data directory, so the token that owns it must too: a saved
``dockyard login`` keeps working after ``make run`` starts again. The file is
``<data_dir>/admin-token``, mode 0600, made atomically (written under another name, then
linked into place, which fails if another launcher made it first: then that one's counts).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from dockyard_common import get_logger

__all__ = ["ADMIN_TOKEN_FILE", "AdminTokenUnreadable", "admin_token_path", "kept_admin_token"]

log = get_logger(__name__)

ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name, not a secret


class AdminTokenUnreadable(RuntimeError):
    """The token file exists but holds no token; the message says what to do."""


def admin_token_path(data_dir: Path) -> Path:
    """Where the platform keeps its generated admin token."""
    return data_dir / ADMIN_TOKEN_FILE


def kept_admin_token(data_dir: Path) -> tuple[str, bool]:
    """The token kept in ``data_dir``, made now if there is none; and whether it was made."""
    path = admin_token_path(data_dir)
    try:
        return _read(path), False
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    scratch = path.with_name(f".{ADMIN_TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(scratch, path)
        except FileExistsError:  # another launcher on this directory made it first
            return _read(path), False
    finally:
        with contextlib.suppress(FileNotFoundError):
            scratch.unlink()
    return token, True


def _read(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Someone loosened it (a copy, an archive): the token is the platform's keys.
        path.chmod(0o600)
        log.warning("admin_token.mode.tightened", path=str(path), was=oct(mode))
    token = path.read_text().strip()
    if not token or any(c.isspace() for c in token):
        raise AdminTokenUnreadable(
            f"{path} holds no admin token: delete it to have a new one made, or set "
            "DOCKYARD_ADMIN_TOKEN"
        )
    return token
