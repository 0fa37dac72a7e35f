"""Durable writes: keys are never readable by others, a failed write keeps the old file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from acmeflow.core.files import atomic_write


def test_key_is_0600_from_creation_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "privkey.pem"
    old = os.umask(0)
    try:
        atomic_write(target, b"secret key", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_bytes() == b"secret key"


def test_replacing_keeps_the_mode_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "privkey.pem"
    atomic_write(target, b"one", mode=0o600)
    atomic_write(target, "two", mode=0o600)
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["privkey.pem"]


def test_a_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "site.key"
    atomic_write(target, b"old key", mode=0o600)

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"new key", mode=0o600)
    assert target.read_bytes() == b"old key"
    assert [p.name for p in tmp_path.iterdir()] == ["site.key"]
