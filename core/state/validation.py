"""Validation of what users type for CA vendors and DNS providers: presets, contacts,
URLs, names, renewal windows, and the box that seals secrets.

Functions over a :class:`~sqlalchemy.orm.Session`: they validate all their input before
changing anything, flush but never commit (the caller's ``session_scope`` does), and raise
catalog errors (:mod:`acmeflow.core.errors`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from acmeflow.config.vendors import UnknownVendor, VendorPreset, get_preset
from acmeflow.core.errors import (
    CAConfigMissing,
    ConfigError,
    InvalidContact,
)
from acmeflow.core.names import is_hostname
from acmeflow.core.secrets import SecretBox, default_box

_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_TLD = re.compile(r"^([a-z]{2,63}|xn--[a-z0-9-]{1,59})$")


def vendor_preset(vendor_id: str) -> VendorPreset:
    """The vendor preset ``vendor_id``; unknown raises :class:`CAConfigMissing`."""
    try:
        return get_preset(vendor_id)
    except UnknownVendor as exc:
        raise CAConfigMissing(detail=exc.detail) from None


def validate_email(address: str) -> str:
    """One contact address (``mailto:`` allowed), returned bare; else :class:`InvalidContact`."""
    addr = address.strip()
    if addr.lower().startswith("mailto:"):
        addr = addr[len("mailto:") :]
    local, at, domain = addr.rpartition("@")
    ok = (
        bool(at)
        and 0 < len(local) <= 64
        and len(addr) <= 254
        and _EMAIL_LOCAL.match(local) is not None
        and is_hostname(domain.lower(), need_dot=True)
        and _TLD.match(domain.lower().rsplit(".", 1)[-1]) is not None
    )
    if not ok:
        raise InvalidContact(detail=f"{address!r} is not an email address (local@domain.tld)")
    return f"{local}@{domain.lower()}"


def validate_contacts(value: str | Sequence[str] | None) -> str:
    """A comma-separated list of contact emails, validated and normalised."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    emails = [validate_email(v) for v in items if v.strip()]
    if not emails:
        raise InvalidContact(detail="a contact email address is required")
    return ", ".join(emails)


def validate_url(url: str, what: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ConfigError(detail=f"{what} must be an http(s) URL (got {url!r})")
    return url


def validate_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(detail=f"a {what} name is required")
    if name != name.strip() or len(name) > 100 or any(c in name for c in "\r\n\t"):
        raise ConfigError(detail=f"invalid {what} name {name!r} (1-100 characters, no padding)")
    return name


def validate_renew_days(days: Any) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
        raise ConfigError(detail=f"renew_days must be a whole number of days >= 1 (got {days!r})")
    return days


def sealing_box(box: SecretBox | None) -> SecretBox:
    return box or default_box()
