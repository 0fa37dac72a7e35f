"""CA vendors (F1): add, edit, list, remove, the issuer names the scan learns.

Functions over a :class:`~sqlalchemy.orm.Session`: they validate all their input before
changing anything, flush but never commit (the caller's ``session_scope`` does), and raise
catalog errors (:mod:`acmeflow.core.errors`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from acmeflow.config.vendors import VendorPreset
from acmeflow.core.errors import (
    CAConfigMissing,
    ConfigError,
)
from acmeflow.core.secrets import SecretBox
from acmeflow.core.state.models import (
    CAVendor,
    Certificate,
)
from acmeflow.core.state.validation import (
    sealing_box,
    validate_contacts,
    validate_max_in_flight,
    validate_name,
    validate_renew_days,
    validate_url,
    vendor_preset,
)

_CA_FIELDS = {
    "name",
    "vendor",
    "email",
    "directory_url",
    "eab_kid",
    "eab_hmac_key",
    "ca_bundle",
    "renew_days",
    "profile",
    "preferred_chain",
    "issuer_names",
    "active",
    "max_in_flight",
    "order_rate",
}


def find_ca(s: Session, name: str) -> CAVendor | None:
    return s.scalars(select(CAVendor).where(CAVendor.name == name)).one_or_none()


def _check_ca(
    *,
    preset: VendorPreset,
    directory_url: str | None,
    eab_kid: str | None,
    has_eab_hmac: bool,
    ca_bundle: str | None,
) -> str:
    """Validate a CA configuration; returns the directory URL to store."""
    url = directory_url or preset.directory_url
    if not url:
        raise ConfigError(detail=f"the {preset.label} vendor needs an ACME directory URL")
    url = validate_url(url, "directory_url")
    if bool(eab_kid) != has_eab_hmac:
        raise ConfigError(detail="External Account Binding needs both eab_kid and eab_hmac_key")
    if preset.eab_required and not eab_kid:
        raise ConfigError(
            detail=f"{preset.label} requires External Account Binding (eab_kid and eab_hmac_key)"
        )
    if ca_bundle is not None and "-----BEGIN CERTIFICATE-----" not in ca_bundle:
        raise ConfigError(detail="ca_bundle must be PEM certificates")
    return url


def add_ca(
    s: Session,
    *,
    name: str,
    vendor: str,
    email: str,
    directory_url: str | None = None,
    eab_kid: str | None = None,
    eab_hmac_key: str | None = None,
    ca_bundle: str | None = None,
    renew_days: int | None = None,
    profile: str | None = None,
    preferred_chain: str | None = None,
    active: bool = True,
    max_in_flight: int | None = None,
    order_rate: tuple[int, int] | Literal["preset"] | None = "preset",
    box: SecretBox | None = None,
) -> CAVendor:
    """Add a CA vendor. ``eab_hmac_key`` is a literal or a reference; it is sealed here.
    ``order_rate`` is (new orders, per seconds), ``None`` (no rate limit) or the rate limit
    the vendor publishes (its preset)."""
    validate_name(name, "CA vendor")
    preset = vendor_preset(vendor)
    contacts = validate_contacts(email)
    url = _check_ca(
        preset=preset,
        directory_url=directory_url,
        eab_kid=eab_kid,
        has_eab_hmac=bool(eab_hmac_key),
        ca_bundle=ca_bundle,
    )
    days = validate_renew_days(preset.default_renew_days if renew_days is None else renew_days)
    in_flight = validate_max_in_flight(max_in_flight)
    rate = preset.order_rate if order_rate == "preset" else order_rate
    rate_orders, rate_window = rate or (None, None)
    if find_ca(s, name) is not None:
        raise ConfigError(detail=f"a CA vendor named {name!r} already exists")
    ca = CAVendor(
        name=name,
        vendor=preset.id,
        email=contacts,
        directory_url=url,
        eab_kid=eab_kid or None,
        eab_hmac_key=sealing_box(box).seal(eab_hmac_key) if eab_hmac_key else None,
        ca_bundle=ca_bundle,
        renew_days=days,
        profile=profile or None,
        preferred_chain=preferred_chain or None,
        issuer_names=list(preset.issuer_names),
        active=active,
        max_in_flight=in_flight,
        rate_orders=rate_orders,
        rate_window_seconds=rate_window,
    )
    s.add(ca)
    s.flush()
    return ca


def get_ca(s: Session, name: str | None) -> CAVendor:
    """The active CA vendor ``name``; missing, empty or inactive raises CAConfigMissing."""
    if not name or not name.strip():
        raise CAConfigMissing(detail="no CA vendor given")
    ca = find_ca(s, name)
    if ca is None:
        raise CAConfigMissing(detail=f"no CA vendor named {name!r}")
    if not ca.active:
        raise CAConfigMissing(detail=f"CA vendor {name!r} is not active")
    return ca


def list_cas(s: Session, *, include_inactive: bool = True) -> list[CAVendor]:
    """Every CA vendor, by name."""
    q = select(CAVendor).order_by(CAVendor.name)
    if not include_inactive:
        q = q.where(CAVendor.active.is_(True))
    return list(s.scalars(q))


def update_ca(
    s: Session, name: str, /, *, box: SecretBox | None = None, **changes: Any
) -> CAVendor:
    """Change fields of CA vendor ``name`` (active or not); same checks as :func:`add_ca`.

    ``eab_hmac_key`` is sealed; ``None`` for an optional field clears it; ``name=`` renames;
    ``order_rate`` is (new orders, per seconds) or ``None`` (no rate limit).
    """
    unknown = set(changes) - _CA_FIELDS
    if unknown:
        raise ConfigError(detail=f"unknown CA vendor field(s): {', '.join(sorted(unknown))}")
    ca = find_ca(s, name)
    if ca is None:
        raise CAConfigMissing(detail=f"no CA vendor named {name!r}")
    new: dict[str, Any] = {}
    if "name" in changes and changes["name"] != ca.name:
        new_name = validate_name(changes["name"], "CA vendor")
        if find_ca(s, new_name) is not None:
            raise ConfigError(detail=f"a CA vendor named {new_name!r} already exists")
        new["name"] = new_name
    preset = vendor_preset(changes.get("vendor", ca.vendor))
    if "vendor" in changes:
        new["vendor"] = preset.id
    if "email" in changes:
        new["email"] = validate_contacts(changes["email"])
    if "renew_days" in changes:
        new["renew_days"] = validate_renew_days(changes["renew_days"])
    has_hmac = bool(changes["eab_hmac_key"]) if "eab_hmac_key" in changes else bool(ca.eab_hmac_key)
    directory_url = changes.get("directory_url", ca.directory_url)
    if "vendor" in changes and "directory_url" not in changes and preset.directory_url:
        directory_url = preset.directory_url  # switching vendor moves to its directory
    new["directory_url"] = _check_ca(
        preset=preset,
        directory_url=directory_url,
        eab_kid=changes.get("eab_kid", ca.eab_kid),
        has_eab_hmac=has_hmac,
        ca_bundle=changes.get("ca_bundle", ca.ca_bundle),
    )
    for field in ("eab_kid", "ca_bundle", "profile", "preferred_chain"):
        if field in changes:
            new[field] = changes[field] or None
    if "eab_hmac_key" in changes:
        hmac = changes["eab_hmac_key"]
        new["eab_hmac_key"] = sealing_box(box).seal(hmac) if hmac else None
    if "issuer_names" in changes:
        new["issuer_names"] = _clean_issuer_names(changes["issuer_names"] or [])
    if "active" in changes:
        new["active"] = bool(changes["active"])
    if "max_in_flight" in changes:
        new["max_in_flight"] = validate_max_in_flight(changes["max_in_flight"])
    if "order_rate" in changes:
        new["rate_orders"], new["rate_window_seconds"] = changes["order_rate"] or (None, None)
    for field, value in new.items():
        setattr(ca, field, value)
    s.flush()
    return ca


def _clean_issuer_names(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for n in names:
        n = n.strip()
        if n and n.casefold() not in seen:
            seen.add(n.casefold())
            out.append(n)
    return out


def add_issuer_names(s: Session, ca: CAVendor, names: Iterable[str]) -> list[str]:
    """Teach ``ca`` more issuer CN/O values (e.g. learned from a certificate it issued)."""
    merged = _clean_issuer_names([*ca.issuer_names, *names])
    if merged != list(ca.issuer_names):
        ca.issuer_names = merged
        s.flush()
    return merged


def remove_ca(s: Session, name: str, *, force: bool = False) -> None:
    """Remove CA vendor ``name`` and its ACME account.

    Certificates enrolled for automatic renewal under it block the removal unless
    ``force``: then they move to manual renewal with no CA.
    """
    ca = find_ca(s, name)
    if ca is None:
        raise CAConfigMissing(detail=f"no CA vendor named {name!r}")
    enrolled = s.scalar(
        select(func.count())
        .select_from(Certificate)
        .where(
            Certificate.ca_vendor_id == ca.id,
            Certificate.enrollment == "auto",
            Certificate.status == "active",
        )
    )
    if enrolled and not force:
        raise ConfigError(
            detail=f"{enrolled} certificate(s) are enrolled for automatic renewal under "
            f"CA vendor {name!r}; move them to another CA or to manual renewal first"
        )
    s.execute(
        update(Certificate)
        .where(Certificate.ca_vendor_id == ca.id, Certificate.enrollment == "auto")
        .values(enrollment="manual")
    )
    s.execute(
        update(Certificate).where(Certificate.ca_vendor_id == ca.id).values(ca_vendor_id=None)
    )
    s.delete(ca)
    s.flush()
