"""Files that hold calls (the database, recordings, decoded audio, keys) are readable by
this user only: folders 0700, files 0600.

``callmood`` sets the process umask to ``PRIVATE_UMASK`` when it starts, so whatever this
process or its children (ffmpeg, SQLite's -wal and -shm files) create is private; the
functions here also set the modes explicitly where our own code creates files, so the
same holds when CallMood is used as a library under another umask.

The layout of ``data_dir`` is named here too, so the worker that writes a recording copy
and the purge that removes it agree on where it is.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600

TMP = "tmp"  # per-call work folders: the download and the decoded audio, removed after the call
RECORDINGS = "recordings"  # worker.keep_recordings: one copy per call, named call-<id>
# `callmood import`: a private copy of each imported file, named by the sha256 of its bytes,
# which is also the external id of its call (source IMPORT_SOURCE). The worker reads these
# and nothing else from the local disk (plugin/flow/recording.py).
IMPORTS = "imports"
IMPORT_SOURCE = "import"  # no webhook source has this name: local files are never a webhook's


def restrict_umask() -> int:
    """Make everything this process creates from now on private; the previous umask."""
    return os.umask(PRIVATE_UMASK)


def private_dir(path: str | os.PathLike) -> Path:
    """``path`` as a folder only this user can enter: created 0700 (with its missing
    parents), or tightened to 0700 if it exists and is ours."""
    p = Path(path)
    p.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(p, DIR_MODE)
    return p


def private_file(path: str | os.PathLike) -> Path:
    """Create ``path`` empty and 0600 if it does not exist; make it 0600 if it does.

    Programs that truncate an existing file (ffmpeg -y, SQLite) keep its mode, so creating
    it first decides the mode of what they write."""
    p = Path(path)
    try:
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass
    _tighten(p, FILE_MODE)  # also undoes the umask, which O_CREAT's mode passes through
    return p


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for open(): new files are created 0600 whatever the umask."""
    return os.open(path, flags, FILE_MODE)


def no_follow_opener(path: str, flags: int) -> int:
    """An ``opener`` for open() reading a file someone else may write into (the drop
    folder of `callmood import`): a link in its place is refused (ELOOP) rather than
    followed, and so is anything but a regular file (a FIFO would block the reader
    forever), checked on the opened descriptor so a swap after a check cannot slip by."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def data_subdir(data_dir: str | os.PathLike, name: str) -> Path:
    """A folder of ours under ``data_dir`` (``TMP``, ``RECORDINGS``), 0700.

    ``data_dir`` itself is created 0700 when it does not exist; an existing one keeps its
    mode (it may be a folder the operator shares on purpose), with a warning when others
    may list it."""
    base = Path(data_dir)
    if not base.exists():
        private_dir(base)
    else:
        warn_if_open(base)
    return private_dir(base / name)


def recording_copy(data_dir: str | os.PathLike, call_id: int) -> Path:
    """Where worker.keep_recordings keeps call ``call_id``'s recording."""
    return Path(data_dir) / RECORDINGS / f"call-{call_id}"


def listening_copy(data_dir: str | os.PathLike, call_id: int) -> Path:
    """A call's recording as the call page plays it (plugin/flow/listen.py): in ``TMP``, so
    it goes a day after it was made, like any work file (plugin/store/retention.py)."""
    return Path(data_dir) / TMP / f"listen-call-{int(call_id)}.wav"


def imported_copy(data_dir: str | os.PathLike, sha256: str) -> Path:
    """Where `callmood import` keeps the file whose bytes hash to ``sha256`` (64 lowercase
    hex digits); ValueError for any other name, so no stored value becomes a path."""
    if not is_sha256(sha256):
        raise ValueError("an imported file is named by its sha256 (64 hex digits)")
    return Path(data_dir) / IMPORTS / sha256


def is_sha256(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def copied_call_id(name: str) -> int | None:
    """The call id of a file in the recordings folder (``call-<id>``), None for any other name."""
    prefix, _, rest = name.partition("-")
    return int(rest) if prefix == "call" and rest.isdigit() else None


_warned: set[str] = set()


def warn_if_open(path: Path) -> None:
    """Say once per folder when users other than this one may read or list it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and str(path) not in _warned:
        _warned.add(str(path))
        log.warning("data_dir %s is open to other users (mode %o); its files are private, "
                    "but `chmod 700 %s` keeps their names private too", path, stat.S_IMODE(mode), path)


def _tighten(p: Path, mode: int) -> None:
    # Only what this user owns: a shared folder named by mistake (/tmp, say) is left alone.
    st = p.stat()
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != mode:
        os.chmod(p, mode)
