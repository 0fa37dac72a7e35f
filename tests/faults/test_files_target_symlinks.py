"""The files deploy target never writes through a symbolic link it was not told to follow,
and a failed reload restores links as links (issue: "Files target follows symlinks")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from acmeflow.core.errors import DeployError
from acmeflow.providers.deploy.files import FilesTarget
from acmeflow.providers.deploy.registry import build_target
from tests.fakes import TestPKI


def target(tmp_path: Path, reload_command: str, **extra: str) -> FilesTarget:
    built = build_target(
        "files",
        {
            "fullchain_path": str(tmp_path / "site" / "fullchain.pem"),
            "key_path": str(tmp_path / "site" / "privkey.pem"),
            "reload_command": reload_command,
            **extra,
        },
        {},
    )
    assert isinstance(built, FilesTarget)
    return built


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The deploy folder, with privkey.pem a symlink into a file that belongs to someone else."""
    (tmp_path / "site").mkdir()
    other = tmp_path / "someone-elses" / "secret.txt"
    other.parent.mkdir()
    other.write_text("not yours\n")
    (tmp_path / "site" / "privkey.pem").symlink_to(other)
    return other


def test_a_symlinked_destination_is_refused_and_nothing_is_written(
    tmp_path: Path, site: Path, pki: TestPKI
) -> None:
    with pytest.raises(DeployError) as refused:
        target(tmp_path, "true").deploy(pki.issue(["www.example.com"]).bundle("www.example.com"))
    assert refused.value.retryable is False
    assert "is a symbolic link" in (refused.value.detail or "")
    assert "follow_symlinks=true" in (refused.value.detail or "")
    assert site.read_text() == "not yours\n"
    assert (tmp_path / "site" / "privkey.pem").is_symlink()
    assert not (tmp_path / "site" / "fullchain.pem").exists()


def test_follow_symlinks_writes_the_target_and_a_failed_reload_restores_links_as_links(
    tmp_path: Path, site: Path, pki: TestPKI
) -> None:
    link = tmp_path / "site" / "privkey.pem"
    issued = pki.issue(["www.example.com"])
    ok = target(tmp_path, "true", follow_symlinks="true").deploy(issued.bundle("www.example.com"))
    assert ok.changed
    assert link.is_symlink() and os.readlink(link) == str(site)
    assert site.read_bytes() == issued.key_pem
    assert oct(site.stat().st_mode & 0o777) == oct(0o600)

    newer = pki.issue(["www.example.com"])
    with pytest.raises(DeployError) as failed:
        target(tmp_path, "false", follow_symlinks="true").deploy(newer.bundle("www.example.com"))
    assert "previous files restored" in (failed.value.detail or "")
    assert link.is_symlink() and os.readlink(link) == str(site)  # still a link
    assert site.read_bytes() == issued.key_pem  # the previous key, through the link
