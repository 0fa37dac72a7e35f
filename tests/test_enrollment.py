"""Enrollment (F3) and migration (F6): automatic renewal under a CA, vendor change, tabs."""
# ruff: noqa: F811  (pytest fixtures shared from tests.test_scan are parameters here)

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from acmeflow.core.errors import NotFound
from acmeflow.core.state import cas, certificates, inventory
from acmeflow.core.state.db import session_scope
from tests.support import run_cli as cli
from tests.test_scan import (  # noqa: F401  (fixtures)
    Issuer,
    add_custom_ca,
    add_le_ca,
    engine,
    issuers,
    local_home,
    make_leaf,
    roots,
    run_scan,
    write_der,
    write_pem,
)


def ok_json(*args: str) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def inventory_ids(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer]
) -> dict[str, int]:
    """Two Let's Encrypt certificates, two from another CA, one from a private CA; CAs
    ``le`` (Let's Encrypt) and ``private`` (custom) configured."""
    write_pem(roots["certificate"] / "le1.pem", make_leaf(issuers["le"], ["le1.example.com"])[0])
    write_pem(roots["zero-touch"] / "le2.pem", make_leaf(issuers["le"], ["le2.example.com"])[0])
    write_der(roots["certificate"] / "o1.der", make_leaf(issuers["other"], ["o1.example.com"])[0])
    write_der(roots["zero-touch"] / "o2.der", make_leaf(issuers["other"], ["o2.example.com"])[0])
    write_pem(roots["certificate"] / "p1.pem", make_leaf(issuers["private"], ["p1.example.com"])[0])
    with session_scope(engine) as s:
        add_le_ca(s, renew_days=20)
        add_custom_ca(s)
        cas.add_issuer_names(s, cas.get_ca(s, "private"), ["Private Intermediate CA 7f3a"])
    run_scan(engine)
    with session_scope(engine) as s:
        return {c.names[0].split(".")[0]: c.id for c in certificates.list_certificates(s)}


def snapshot(engine: Engine) -> list[tuple[int, str, int | None]]:
    with session_scope(engine) as s:
        return [(c.id, c.enrollment, c.ca_vendor_id) for c in certificates.list_certificates(s)]


def test_enroll_certificates_of_the_same_ca_needs_no_confirmation(
    engine: Engine, inventory_ids: dict[str, int]
) -> None:
    shown = ok_json(
        "certs", "enroll", str(inventory_ids["le1"]), str(inventory_ids["le2"]), "--ca", "le"
    )
    assert [(c["enrollment"], c["ca"]) for c in shown["certificates"]] == [("auto", "le")] * 2
    with session_scope(engine) as s:
        cert = certificates.get_certificate(s, inventory_ids["le1"])
        assert cert.not_after is not None
        assert cert.renewal_due_at == cert.not_after - timedelta(days=20)
    # the certificates are due under le now: the renewal schedule finds them when due
    with session_scope(engine) as s:
        due = certificates.certificates_due(s, now=cert.not_after, ca=cas.get_ca(s, "le"))
        assert {c.id for c in due} == {inventory_ids["le1"], inventory_ids["le2"]}


def test_vendor_change_without_confirmation_changes_nothing(
    engine: Engine, inventory_ids: dict[str, int]
) -> None:
    before = snapshot(engine)
    result = cli(
        "certs", "enroll", str(inventory_ids["le1"]), str(inventory_ids["o1"]), "--ca", "le"
    )
    assert result.exit_code == 1
    assert "Invalid configuration." in result.output
    assert "--confirm-vendor-change" in result.output
    assert f"certificate {inventory_ids['o1']} was issued by 'Other Issuing CA'" in result.output
    assert snapshot(engine) == before  # all or nothing: le1 was not enrolled either


def test_vendor_change_with_confirmation(engine: Engine, inventory_ids: dict[str, int]) -> None:
    shown = ok_json(
        "certs", "enroll", str(inventory_ids["o1"]), "--ca", "le", "--confirm-vendor-change"
    )
    (cert,) = shown["certificates"]
    assert (cert["enrollment"], cert["ca"], cert["issued_by"]) == ("auto", "le", "Other CA")
    # a certificate of a configured custom CA, moved to Let's Encrypt: also a vendor change
    result = cli("certs", "enroll", str(inventory_ids["p1"]), "--ca", "le")
    assert result.exit_code == 1 and "--confirm-vendor-change" in result.output
    ok_json("certs", "enroll", str(inventory_ids["p1"]), "--ca", "le", "--confirm-vendor-change")


def test_certificate_under_one_ca_must_be_unenrolled_before_another_takes_it(
    engine: Engine, inventory_ids: dict[str, int]
) -> None:
    p1 = str(inventory_ids["p1"])
    ok_json("certs", "enroll", p1, "--ca", "private")
    result = cli("certs", "enroll", p1, "--ca", "le", "--confirm-vendor-change")
    assert result.exit_code == 1
    assert "is under CA vendor 'private'" in result.output
    assert f"acmeflow certs unenroll {p1}" in result.output
    (cert,) = ok_json("certs", "unenroll", p1)["certificates"]
    assert (cert["enrollment"], cert["ca"]) == ("manual", None)
    (cert,) = ok_json("certs", "enroll", p1, "--ca", "le", "--confirm-vendor-change")[
        "certificates"
    ]
    assert cert["ca"] == "le"


def test_enroll_every_certificate_issued_by_a_ca(
    engine: Engine, inventory_ids: dict[str, int]
) -> None:
    shown = ok_json("certs", "enroll", "--ca", "le", "--all-issued")
    assert sorted(c["id"] for c in shown["certificates"]) == sorted(
        [inventory_ids["le1"], inventory_ids["le2"]]
    )


def test_migrate_many_between_the_two_tabs(engine: Engine, inventory_ids: dict[str, int]) -> None:
    le1, le2, o1 = (str(inventory_ids[k]) for k in ("le1", "le2", "o1"))
    ok_json("certs", "enroll", le1, le2, "--ca", "le")
    ok_json("certs", "enroll", o1, "--ca", "le", "--confirm-vendor-change")
    auto = ok_json("certs", "list", "--auto")
    assert sorted(c["id"] for c in auto) == sorted(int(i) for i in (le1, le2, o1))
    moved = ok_json("certs", "migrate", f"{le1},{le2}", o1, "--to", "manual")
    assert {(c["enrollment"], c["ca"]) for c in moved["certificates"]} == {("manual", "le")}
    assert ok_json("certs", "list", "--auto") == []
    manual_ids = {c["id"] for c in ok_json("certs", "list", "--manual")}
    assert manual_ids == set(inventory_ids.values())
    # back to automatic: they kept their CA, so no new enrollment is needed
    back = ok_json("certs", "migrate", le1, le2, o1, "--to", "auto")
    assert {(c["enrollment"], c["ca"]) for c in back["certificates"]} == {("auto", "le")}
    table = cli("certs", "list", "--auto")
    assert table.exit_code == 0 and "Automatic renewals" in table.stdout


def test_migrate_to_auto_needs_a_ca(engine: Engine, inventory_ids: dict[str, int]) -> None:
    # issued by a configured CA: it goes under that CA
    (cert,) = ok_json("certs", "migrate", str(inventory_ids["p1"]), "--to", "auto")["certificates"]
    assert (cert["enrollment"], cert["ca"]) == ("auto", "private")
    before = snapshot(engine)
    result = cli(
        "certs", "migrate", str(inventory_ids["le1"]), str(inventory_ids["o2"]), "--to", "auto"
    )
    assert result.exit_code == 1
    assert f"certificate {inventory_ids['o2']} is not under an active CA vendor" in result.output
    assert snapshot(engine) == before


def test_id_ranges_and_unknown_ids(engine: Engine, inventory_ids: dict[str, int]) -> None:
    low, high = min(inventory_ids.values()), max(inventory_ids.values())
    moved = ok_json("certs", "migrate", f"{low}-{high}", "--to", "manual")
    assert len(moved["certificates"]) == len(inventory_ids)
    result = cli("certs", "migrate", str(high + 100), "--to", "manual")
    assert result.exit_code == 1 and "Not found." in result.output
    result = cli("certs", "migrate", "abc", "--to", "manual")
    assert result.exit_code == 1 and "'abc' is not a certificate id" in result.output


def test_unknown_ca_uses_the_catalog_message(engine: Engine, inventory_ids: dict[str, int]) -> None:
    result = cli("certs", "enroll", str(inventory_ids["le1"]), "--ca", "nope")
    assert result.exit_code == 1
    assert "Config CA ID is empty/does not exist." in result.output


def test_gone_certificate_cannot_be_enrolled(
    engine: Engine, roots: dict[str, Path], inventory_ids: dict[str, int]
) -> None:
    (roots["certificate"] / "le1.pem").unlink()
    run_scan(engine)
    result = cli("certs", "enroll", str(inventory_ids["le1"]), "--ca", "le")
    assert result.exit_code == 1 and "is gone from its store" in result.output
    listed = ok_json("certs", "list", "--all")
    (gone,) = [c for c in listed if c["id"] == inventory_ids["le1"]]
    assert gone["status"] == "gone" and gone["gone_at"] is not None


def test_enrolled_names_without_dns_provider_are_warned(
    engine: Engine, inventory_ids: dict[str, int]
) -> None:
    result = cli("certs", "enroll", str(inventory_ids["le1"]), "--ca", "le")
    assert result.exit_code == 0
    assert "Renewal skipped as no active DNS providers are configured." in result.output


def test_enrollment_api_is_all_or_nothing(engine: Engine, inventory_ids: dict[str, int]) -> None:
    with session_scope(engine) as s, pytest.raises(NotFound):
        inventory.enroll(s, [inventory_ids["le1"], 99999], "le")
    assert all(enrollment == "manual" for _, enrollment, _ in snapshot(engine))


def test_enrolling_the_same_certificate_in_both_stores_is_warned(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer]
) -> None:
    cert, _ = make_leaf(issuers["le"], ["both.example.com"])
    write_pem(roots["certificate"] / "both.pem", cert)
    write_der(roots["zero-touch"] / "both.der", cert)
    with session_scope(engine) as s:
        add_le_ca(s)
    run_scan(engine)
    with session_scope(engine) as s:
        first, second = (c.id for c in certificates.list_certificates(s))
    assert "renewed twice" not in cli("certs", "enroll", str(first), "--ca", "le").output
    result = cli("certs", "enroll", str(second), "--ca", "le")
    assert result.exit_code == 0
    assert f"is the same certificate as {first} in the other store" in result.output


def test_removing_a_ca_leaves_its_certificates_as_other_ca(
    engine: Engine, inventory_ids: dict[str, int]
) -> None:
    ok_json("certs", "enroll", str(inventory_ids["le1"]), "--ca", "le")
    with session_scope(engine) as s:
        cas.remove_ca(s, "le", force=True)
    with session_scope(engine) as s:
        cert = certificates.get_certificate(s, inventory_ids["le1"])
        assert (cert.ca_vendor_id, cert.issued_by_ca_id, cert.enrollment) == (None, None, "manual")
        assert inventory.inventory_report(s).counts_line() == "private: 1, Other CA: 4"
