"""The ``deploy`` flow (F7): parallel deployments to bound targets, retries of transient
errors, history entries, bindings, and the issue/renew hook ``deploy_after_store``."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from prefect import flow
from sqlalchemy.orm import Session

from acmeflow.config.settings import get_settings
from acmeflow.core.certinfo import parse_certificate
from acmeflow.core.state import certificates, history, targets
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.storage import stores_from_settings
from acmeflow.flows.deploy import deploy, deploy_after_store, deploy_pending, summary_of
from tests.fakes import Issued
from tests.fakes.nitro import FakeNitroServer
from tests.fixtures_deploy import NITRO_PASSWORD_ENV

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def acme_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh ACMEFLOW_HOME; deploy retries fast (2 retries, 50 ms apart)."""
    home = tmp_path / "home"
    monkeypatch.setenv("ACMEFLOW_HOME", str(home))
    monkeypatch.delenv("ACMEFLOW_DATABASE_URL", raising=False)
    monkeypatch.setenv("ACMEFLOW_DEPLOY_RETRIES", "2")
    monkeypatch.setenv("ACMEFLOW_DEPLOY_RETRY_DELAY", "0.05")
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


def session() -> AbstractContextManager[Session]:
    return session_scope(open_database(get_settings().resolved_database_url))


@flow(name="store_then_deploy")
def store_then_deploy(cert_id: int, bind_to: list[str]) -> dict[str, Any] | None:
    """What issue and renew do once a certificate is stored."""
    return deploy_after_store(cert_id, targets=bind_to)


def run_deploy(cert_id: int, target: str | None = None) -> dict[str, Any]:
    """Run the ``deploy`` flow; its summary whether it completed or failed."""
    return summary_of(deploy(certificate_id=cert_id, target=target, return_state=True))


def store_certificate(issued: Issued, store: str, cert_id: int | None = None) -> int:
    """Put ``issued`` in a store folder and the database, as issue/renew do."""
    names = sorted(
        {
            n.value
            for n in issued.cert.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value
        }
    )
    info = parse_certificate(issued.cert)
    target = stores_from_settings(get_settings())[store]
    with session() as s:
        existing = certificates.get_certificate(s, cert_id) if cert_id else None
        folder = Path(existing.folder) if existing else target.folder_for(names)
        target.write(
            folder,
            cert_pem=issued.cert_pem,
            chain_pem=issued.chain_pem,
            fullchain_pem=issued.cert_pem + issued.chain_pem,
            key_pem=issued.key_pem,
            metadata={"names": names, "serial": info.serial},
        )
        fields = {"serial": info.serial, "not_after": info.not_after, "names": info.names}
        if existing is not None:
            certificates.update_certificate(s, existing, **fields)
            return existing.id
        cert = certificates.add_certificate(
            s, store=store, folder=str(folder), enrollment="auto", source="acmeflow", **fields
        )
        return cert.id


def add_files_target(name: str, directory: Path, **extra: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    settings = {
        "fullchain_path": str(directory / "fullchain.pem"),
        "key_path": str(directory / "privkey.pem"),
        **extra,
    }
    with session() as s:
        targets.add_target(s, name=name, type="files", settings=settings)


def add_adc_target(
    name: str, fake: FakeNitroServer, password: str = f"env:{NITRO_PASSWORD_ENV}"
) -> None:
    settings = {
        "url": fake.url,
        "username": fake.username,
        "ca_bundle": str(fake.ca_bundle_path),
        "certkey": "web-cert",
    }
    with session() as s:
        targets.add_target(
            s, name=name, type="netscaler", settings=settings, secrets={"password": password}
        )


def bind(target: str, cert_id: int) -> None:
    with session() as s:
        targets.bind(s, target, [cert_id])


def deploy_log(cert_id: int) -> list[dict[str, str | None]]:
    """The certificate's deploy history entries, oldest first."""
    with session() as s:
        entries = [e for e in history.list_log(s, certificate_id=cert_id) if e.kind == "deploy"]
        return [
            {"status": e.status, "message": e.message, "detail": e.detail, "serial": e.serial}
            for e in reversed(entries)
        ]


def binding_state(target: str, cert_id: int) -> tuple[str | None, str | None]:
    with session() as s:
        (b,) = targets.bindings_for_certificate(s, cert_id, target_name=target)
        return b.last_deployed_serial, b.last_error


def adc_serial(fake: FakeNitroServer) -> str | None:
    ck = fake.certkey("web-cert")
    return format(ck.cert.serial_number, "x") if ck else None


@pytest.mark.prefect
def test_deploys_to_every_bound_target_and_records_each(acme_home, tmp_path, pki, adc):
    cert = pki.issue(["www.example.com", "example.com"])
    cert_id = store_certificate(cert, "zero-touch")
    add_files_target("web", tmp_path / "web")
    add_adc_target("adc", adc)
    bind("web", cert_id)
    bind("adc", cert_id)

    summary = run_deploy(cert_id)

    assert (summary["deployed"], summary["failed"]) == (2, 0)
    assert {r["target"]: r["status"] for r in summary["results"]} == {
        "adc": "deployed",
        "web": "deployed",
    }
    assert (tmp_path / "web" / "fullchain.pem").read_bytes().startswith(cert.cert_pem)
    assert (tmp_path / "web" / "privkey.pem").read_bytes() == cert.key_pem
    assert adc_serial(adc) == cert.serial
    assert binding_state("web", cert_id) == (cert.serial, None)
    assert binding_state("adc", cert_id) == (cert.serial, None)
    log = deploy_log(cert_id)
    assert [e["status"] for e in log] == ["success", "success"]
    assert {e["serial"] for e in log} == {cert.serial}
    assert any("target adc (netscaler)" in (e["message"] or "") for e in log)

    again = run_deploy(cert_id)  # idempotent: nothing to change
    assert (again["deployed"], again["unchanged"]) == (0, 2)


@pytest.mark.prefect
def test_targets_are_deployed_in_parallel(acme_home, tmp_path, pki):
    """Each reload command waits for the other one to have started (a barrier): one after
    the other, the first would time out."""
    cert_id = store_certificate(pki.issue(["par.example.com"]), "zero-touch")
    for me, other in (("a", "b"), ("b", "a")):
        script = (
            f"touch {tmp_path}/{me}.started; "
            f"while [ ! -f {tmp_path}/{other}.started ]; do sleep 0.02; done"
        )
        add_files_target(
            me,
            tmp_path / me,
            reload_command=shlex.join(["sh", "-c", script]),
            reload_timeout="20",
        )
        bind(me, cert_id)

    summary = run_deploy(cert_id)

    assert summary["deployed"] == 2, summary


@pytest.mark.prefect
def test_target_down_retries_fails_alone_and_next_run_deploys(acme_home, tmp_path, pki, adc):
    old, new = pki.issue(["down.example.com"]), pki.issue(["down.example.com"])
    cert_id = store_certificate(old, "zero-touch")
    add_files_target("web", tmp_path / "web")
    add_adc_target("adc", adc)
    bind("web", cert_id)
    bind("adc", cert_id)
    assert run_deploy(cert_id)["deployed"] == 2

    store_certificate(new, "zero-touch", cert_id)  # a renewal
    folder_files = stores_from_settings(get_settings())["zero-touch"]
    adc.set_down("503")
    state = deploy(certificate_id=cert_id, return_state=True)

    assert state.is_failed()
    summary = summary_of(state)
    assert (summary["deployed"], summary["failed"]) == (1, 1)
    failed = next(r for r in summary["results"] if r["status"] == "failed")
    assert failed["target"] == "adc" and failed["attempts"] == 3
    # the other target and the store are unaffected
    assert (tmp_path / "web" / "fullchain.pem").read_bytes().startswith(new.cert_pem)
    assert binding_state("web", cert_id) == (new.serial, None)
    with session() as s:
        folder = Path(certificates.get_certificate(s, cert_id).folder)
    assert folder_files.read_set(folder).cert == new.cert_pem
    # the ADC keeps serving the old certificate; the history and the binding say why
    assert adc_serial(adc) == old.serial
    last_serial, last_error = binding_state("adc", cert_id)
    assert last_serial == old.serial and last_error and "netscaler" in last_error
    entry = deploy_log(cert_id)[-2:]
    adc_entry = next(e for e in entry if "adc" in (e["message"] or ""))
    assert adc_entry["status"] == "failed"
    assert "after 3 attempts" in (adc_entry["message"] or "")
    detail = adc_entry["detail"] or ""
    assert detail.count("failed, retrying") == 2 and "503" in detail
    assert adc.password not in detail + last_error

    adc.set_down(None)  # back up: the next run deploys what is pending, and only that
    pending = summary_of(deploy_pending(return_state=True))
    assert [(r["target"], r["status"]) for r in pending["results"]] == [("adc", "deployed")]
    assert adc_serial(adc) == new.serial
    assert binding_state("adc", cert_id) == (new.serial, None)


@pytest.mark.prefect
def test_permanent_error_is_not_retried_and_secret_never_shown(acme_home, tmp_path, pki, adc):
    cert_id = store_certificate(pki.issue(["auth.example.com"]), "zero-touch")
    wrong = "Wrong-Password-123"
    add_adc_target("adc", adc, password=wrong)  # a literal: sealed in the database
    bind("adc", cert_id)
    with session() as s:
        stored = targets.get_target(s, "adc").secrets["password"]
    assert stored.startswith("enc:") and wrong not in stored

    adc.clear_requests()
    summary = run_deploy(cert_id)

    (row,) = summary["results"]
    assert row["status"] == "failed" and row["attempts"] == 1
    assert [r.resource for r in adc.requests].count("login") == 1
    (entry,) = deploy_log(cert_id)
    assert "failed, retrying" not in (entry["detail"] or "")
    text = repr(summary) + repr(entry) + (binding_state("adc", cert_id)[1] or "")
    assert wrong not in text


@pytest.mark.prefect
def test_certificate_store_waits_for_manual_deploy(acme_home, tmp_path, pki):
    cert = pki.issue(["manual.example.com"])
    cert_id = store_certificate(cert, "certificate")
    add_files_target("web", tmp_path / "web")

    assert store_then_deploy(cert_id, ["web"]) is None

    assert not (tmp_path / "web" / "fullchain.pem").exists()
    assert binding_state("web", cert_id) == (None, None)
    (entry,) = deploy_log(cert_id)
    assert entry["status"] == "skipped"
    assert "awaits manual deployment" in (entry["message"] or "")
    assert f"acmeflow deploy {cert_id}" in (entry["detail"] or "")

    summary = run_deploy(cert_id)  # what `acmeflow deploy` runs
    assert summary["deployed"] == 1
    assert (tmp_path / "web" / "fullchain.pem").read_bytes().startswith(cert.cert_pem)


@pytest.mark.prefect
def test_zero_touch_hook_binds_and_deploys(acme_home, tmp_path, pki):
    cert = pki.issue(["hook.example.com"])
    cert_id = store_certificate(cert, "zero-touch")
    add_files_target("web", tmp_path / "web")

    summary = store_then_deploy(cert_id, ["web"])

    assert summary is not None and summary["deployed"] == 1
    assert binding_state("web", cert_id) == (cert.serial, None)


@pytest.mark.prefect
def test_disabled_target_is_skipped_and_target_filter(acme_home, tmp_path, pki):
    cert_id = store_certificate(pki.issue(["skip.example.com"]), "zero-touch")
    add_files_target("on", tmp_path / "on")
    add_files_target("off", tmp_path / "off")
    add_files_target("other", tmp_path / "other")
    for name in ("on", "off", "other"):
        bind(name, cert_id)
    with session() as s:
        targets.update_target(s, "off", active=False)

    summary = run_deploy(cert_id, target="on")
    assert [(r["target"], r["status"]) for r in summary["results"]] == [("on", "deployed")]

    summary = run_deploy(cert_id)
    statuses = {r["target"]: r["status"] for r in summary["results"]}
    assert statuses == {"off": "skipped", "on": "unchanged", "other": "deployed"}
    assert not (tmp_path / "off" / "fullchain.pem").exists()


@pytest.mark.prefect
def test_unbound_target_is_refused(acme_home, tmp_path, pki):
    cert_id = store_certificate(pki.issue(["unbound.example.com"]), "zero-touch")
    add_files_target("web", tmp_path / "web")
    state = deploy(certificate_id=cert_id, target="web", return_state=True)
    assert state.is_failed()
    summary = summary_of(state)
    assert "not bound" in summary["error"]["detail"]


@pytest.mark.prefect
def test_missing_key_file_fails_with_a_clear_reason(acme_home, tmp_path, pki):
    cert_id = store_certificate(pki.issue(["nokey.example.com"]), "zero-touch")
    add_files_target("web", tmp_path / "web")
    bind("web", cert_id)
    with session() as s:
        folder = Path(certificates.get_certificate(s, cert_id).folder)
    (folder / "privkey.pem").unlink()

    summary = run_deploy(cert_id)

    (row,) = summary["results"]
    assert row["status"] == "failed" and "privkey.pem is missing" in row["detail"]
    assert row["attempts"] == 1
