"""``acmeflow certs export ID DIR``: the live files of a stored certificate, one version,
the key 0600; existing files are kept unless --force; bad input changes nothing."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.fixtures_acmeflow import Home
from tests.test_issue_e2e import issue_json

pytestmark = [pytest.mark.sandbox, pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

FILES = ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"]


def test_export_writes_the_live_set(home: Home, tmp_path: Path) -> None:
    issued = issue_json(home, "--name", "export.example.com")
    target = tmp_path / "out" / "www"
    shown = json.loads(home.ok("certs", "export", str(issued["id"]), str(target), "--json").stdout)
    assert shown["files"] == [str(target / name) for name in FILES]
    live = Path(issued["files"]["cert"]).parent
    for name in FILES:
        assert (target / name).read_bytes() == (live / name).read_bytes()
    assert stat.S_IMODE((target / "privkey.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((target / "cert.pem").stat().st_mode) == 0o644
    assert stat.S_IMODE(target.stat().st_mode) == 0o700

    (target / "cert.pem").write_text("mine")
    refused = home.cli("certs", "export", str(issued["id"]), str(target))
    assert refused.exit_code == 1
    assert "Invalid configuration." in refused.output and "--force" in refused.output
    assert (target / "cert.pem").read_text() == "mine"  # nothing changed
    home.ok("certs", "export", str(issued["id"]), str(target), "--force")
    assert (target / "cert.pem").read_bytes() == (live / "cert.pem").read_bytes()


def test_export_of_an_unknown_certificate_changes_nothing(home: Home, tmp_path: Path) -> None:
    result = home.cli("certs", "export", "999", str(tmp_path / "out"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
