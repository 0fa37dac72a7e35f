"""``acmeflow targets ...`` and ``acmeflow deploy`` from the command line (F7)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from acmeflow.config.settings import get_settings
from acmeflow.core.certinfo import parse_certificate
from acmeflow.core.state import certificates, targets
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.storage import stores_from_settings
from tests.fakes import TestPKI
from tests.support import run_cli as cli

SECRET = "S3cret-Nitro-Pass"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ACMEFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ACMEFLOW_DATABASE_URL", raising=False)
    monkeypatch.setenv("NITRO_PASS", SECRET)
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def ok(*args: str, input: str | None = None) -> Result:
    result = cli(*args, input=input)
    assert result.exit_code == 0, result.output
    return result


def as_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json").stdout)


def seed_certificate(pki: TestPKI, store: str, name: str) -> int:
    issued = pki.issue([name])
    info = parse_certificate(issued.cert)
    cs = stores_from_settings(get_settings())[store]
    folder = cs.folder_for([name])
    cs.write(
        folder,
        cert_pem=issued.cert_pem,
        chain_pem=issued.chain_pem,
        fullchain_pem=issued.cert_pem + issued.chain_pem,
        key_pem=issued.key_pem,
        metadata={},
    )
    with session_scope(open_database(get_settings().resolved_database_url)) as s:
        cert = certificates.add_certificate(
            s, store=store, folder=str(folder), names=[name], serial=info.serial
        )
        return cert.id


def add_adc(name: str = "adc", *extra: str, input: str | None = None) -> Result:
    return cli(
        "targets",
        "add",
        name,
        "--type",
        "netscaler",
        "--set",
        "url=https://adc.example.net",
        "--set",
        "username=nsroot",
        *extra,
        input=input,
    )


def stored_secrets(name: str) -> dict[str, str]:
    with session_scope(open_database(get_settings().resolved_database_url)) as s:
        return dict(targets.get_target(s, name).secrets)


def test_add_list_show_edit_remove(home: Path, tmp_path: Path) -> None:
    assert add_adc("adc", "--secret", "password=env:NITRO_PASS").exit_code == 0
    ok(
        "targets",
        "add",
        "web",
        "--type",
        "files",
        "--set",
        f"fullchain_path={tmp_path}/fullchain.pem",
        "--set",
        f"key_path={tmp_path}/privkey.pem",
        "--set",
        "reload_command=systemctl reload nginx",
    )
    listed = as_json("targets", "list")
    assert [(t["name"], t["type"], t["active"]) for t in listed] == [
        ("adc", "netscaler", True),
        ("web", "files", True),
    ]
    assert listed[0]["secrets"] == {"password": "***"}
    table = ok("targets", "list").stdout
    assert "netscaler" in table and "files" in table

    ok("targets", "edit", "adc", "--set", "certkey=web-cert", "--inactive")
    shown = as_json("targets", "show", "adc")
    assert shown["settings"]["certkey"] == "web-cert" and shown["active"] is False
    ok("targets", "edit", "adc", "--unset", "certkey", "--active")
    shown = as_json("targets", "show", "adc")
    assert "certkey" not in shown["settings"] and shown["active"] is True

    ok("targets", "remove", "web")
    assert [t["name"] for t in as_json("targets", "list")] == ["adc"]
    gone = cli("targets", "show", "web")
    assert gone.exit_code == 1 and "no deploy target named 'web'" in gone.output


def test_secrets_are_sealed_refs_kept_and_never_shown(home: Path) -> None:
    assert add_adc("by-ref", "--secret", "password=env:NITRO_PASS").exit_code == 0
    assert stored_secrets("by-ref") == {"password": "env:NITRO_PASS"}

    assert add_adc("typed", "--secret", "password=-", input=SECRET + "\n").exit_code == 0
    sealed = stored_secrets("typed")["password"]
    assert sealed.startswith("enc:") and SECRET not in sealed

    outputs = [
        ok("targets", "show", "typed").stdout,
        ok("targets", "show", "typed", "--json").stdout,
        ok("targets", "list", "--json").stdout,
    ]
    assert all(SECRET not in out and "***" in out for out in outputs)

    literal = add_adc("literal", "--secret", f"password={SECRET}")
    assert literal.exit_code == 1 and "never taken literally" in literal.output
    assert SECRET not in literal.output

    as_setting = add_adc("as-setting", "--set", f"password={SECRET}")
    assert as_setting.exit_code == 1 and "password is a secret" in as_setting.output

    ok("targets", "edit", "typed", "--secret", "password=env:NITRO_PASS")
    assert stored_secrets("typed") == {"password": "env:NITRO_PASS"}


def test_bad_configuration_is_refused_before_saving(home: Path) -> None:
    missing = add_adc("no-pass")
    assert missing.exit_code == 1 and "missing required secret password" in missing.output
    unknown = add_adc("typo", "--secret", "password=env:X", "--set", "vserver=v1")
    assert unknown.exit_code == 1 and "unknown setting vserver" in unknown.output
    bad_url = cli(
        "targets",
        "add",
        "bad",
        "--type",
        "netscaler",
        "--set",
        "url=adc.example.net",
        "--set",
        "username=u",
        "--secret",
        "password=env:X",
    )
    assert bad_url.exit_code == 1 and "url must look like" in bad_url.output
    bad_type = cli("targets", "add", "x", "--type", "f5")
    assert bad_type.exit_code == 1 and "unknown deploy target type 'f5'" in bad_type.output
    assert as_json("targets", "list") == []
    assert add_adc("dup", "--secret", "password=env:X").exit_code == 0
    dup = add_adc("dup", "--secret", "password=env:X")
    assert dup.exit_code == 1 and "already exists" in dup.output


def test_bind_unbind_and_show_bindings(home: Path, tmp_path: Path) -> None:
    pki = TestPKI()
    zt = seed_certificate(pki, "zero-touch", "zt.example.com")
    cs = seed_certificate(pki, "certificate", "cs.example.com")
    assert add_adc("adc", "--secret", "password=env:NITRO_PASS").exit_code == 0

    out = ok("targets", "bind", "adc", str(zt), str(cs)).stdout
    assert "deployed automatically" in out and f"acmeflow deploy {cs}" in out
    ok("targets", "bind", "adc", str(zt))  # idempotent
    shown = as_json("targets", "show", "adc")
    assert shown["certificates"] == [zt, cs]
    assert [(b["certificate_id"], b["in_sync"]) for b in shown["bindings"]] == [
        (zt, False),
        (cs, False),
    ]
    assert as_json("targets", "list")[0]["certificates"] == [zt, cs]

    missing = cli("targets", "bind", "adc", "999")
    assert missing.exit_code == 1 and "no certificate with id 999" in missing.output
    assert cli("targets", "bind", "nope", str(zt)).exit_code == 1

    assert as_json("targets", "unbind", "adc", str(cs))["unbound"] == [cs]
    assert as_json("targets", "show", "adc")["certificates"] == [zt]

    ok("targets", "remove", "adc")
    assert cli("targets", "show", "adc").exit_code == 1
    with session_scope(open_database(get_settings().resolved_database_url)) as s:
        assert targets.bindings_for_certificate(s, zt) == []


def test_types_lists_every_target_type(home: Path) -> None:
    types = {t["type"]: t for t in as_json("targets", "types")}
    assert set(types) == {"netscaler", "files", "aws-acm"}
    password = next(f for f in types["netscaler"]["fields"] if f["name"] == "password")
    assert password["kind"] == "secret" and password["required"]


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_deploy_command(home: Path, tmp_path: Path) -> None:
    pki = TestPKI()
    cert_id = seed_certificate(pki, "certificate", "cmd.example.com")
    no_target = cli("deploy", str(cert_id))
    assert no_target.exit_code == 1 and "no deploy target is bound" in no_target.output
    ok(
        "targets",
        "add",
        "web",
        "--type",
        "files",
        "--set",
        f"fullchain_path={tmp_path}/out/fullchain.pem",
        "--set",
        f"key_path={tmp_path}/out/privkey.pem",
    )
    ok("targets", "add", "broken", "--type", "files", "--set",
       f"fullchain_path={tmp_path}/missing-dir/fullchain.pem", "--set",
       f"key_path={tmp_path}/missing-dir/privkey.pem")  # fmt: skip
    (tmp_path / "out").mkdir()
    ok("targets", "bind", "web", str(cert_id))

    summary = as_json("deploy", str(cert_id))
    assert [(r["target"], r["status"]) for r in summary["results"]] == [("web", "deployed")]
    assert (tmp_path / "out" / "fullchain.pem").is_file()
    shown = as_json("targets", "show", "web")
    assert shown["bindings"][0]["in_sync"] is True

    ok("targets", "bind", "broken", str(cert_id))
    failed = cli("deploy", str(cert_id))
    assert failed.exit_code == 1
    assert "broken" in failed.stdout and "1 failed" in failed.stdout
    only_web = cli("deploy", str(cert_id), "--target", "web", "--json")
    assert only_web.exit_code == 0
    assert json.loads(only_web.stdout)["unchanged"] == 1

    logs = json.loads(ok("logs", "--json").stdout)
    deploys = [e for e in logs if e["kind"] == "deploy"]
    assert {e["status"] for e in deploys} == {"success", "failed"}
