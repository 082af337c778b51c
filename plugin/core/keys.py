"""The service's secret key: it signs session cookies, CSRF tokens and (unless
``auth.link_key`` is set) call links. Configured (``auth.secret_key``), or made once and
kept in ``<data_dir>/secret_key``, readable by this user only. Every process that serves
the web app or sends alerts must use the same key: share the file, or configure it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_NAME = "secret_key"
MIN_LENGTH = 32


def secret_key(configured: str | None, data_dir: str | os.PathLike) -> str:
    """The configured key, else the one in ``data_dir`` (created on first use)."""
    if configured:
        return configured
    path = Path(data_dir) / FILE_NAME
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Written under another name, then linked into place: a process starting at the same
    # moment either finds the whole key or makes the link fail and reads the winner's.
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    key = path.read_text(encoding="ascii").strip()
    if len(key) < MIN_LENGTH:
        raise ValueError(f"{path}: secret key shorter than {MIN_LENGTH} characters; "
                         "delete the file to make a new one")
    return key
