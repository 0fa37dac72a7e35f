"""Durable file writes: create with the final mode from the first byte, fsync, rename."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path


def mkdir_private(path: Path, mode: int = 0o700) -> None:
    """Create ``path`` (and parents) and make sure it has exactly ``mode``, whatever the
    umask, also when it existed with wider permissions."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    if stat.S_IMODE(path.stat().st_mode) != mode:
        path.chmod(mode)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry change (create, rename, unlink) to disk, where the OS allows."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_new(path: Path, data: bytes, mode: int, *, uid: int = -1, gid: int = -1) -> None:
    """Create ``path`` (it must not exist) with ``mode`` and owner from the start; write; fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # exact mode regardless of umask (umask can only remove bits)
        if uid != -1 or gid != -1:
            os.fchown(fd, uid, gid)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes | str, *, mode: int = 0o644, uid: int = -1, gid: int = -1
) -> None:
    """Replace ``path`` atomically: temp file in the same folder, fsync, rename, fsync folder.

    The temp file is created with ``mode`` (0600 for keys) and owner, so the content is never
    exposed with wider permissions, not even briefly.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        write_new(tmp, data, mode, uid=uid, gid=gid)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
