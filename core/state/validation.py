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


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, what: str) -> float:
    """``90s``, ``30m``, ``1h``, ``2d`` or plain seconds, in seconds (``what`` names the
    option in the error)."""
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(detail=f"{what} expects a duration such as 30m, 1h or 2d (got {text!r})")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]


def validate_max_in_flight(value: Any) -> int | None:
    """Orders of one CA in flight at once across all workers: a whole number >= 1, or
    ``None`` / 0 (no pool-wide cap)."""
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
        raise ConfigError(
            detail=f"max_in_flight must be a whole number from 0 (no cap) to 10000 (got {value!r})"
        )
    return value


def parse_order_rate(text: str | None) -> tuple[int, int] | None:
    """A CA's new-order rate limit, ``ORDERS/WINDOW`` (``300/3h``), as (orders, seconds);
    ``none`` or empty: no rate limit."""
    if text is None or text.strip().lower() in ("", "none"):
        return None
    orders, _, window = text.partition("/")
    seconds = parse_duration(window, "the order rate's window") if window else 0.0
    if not orders.strip().isdigit() or int(orders) < 1 or seconds < 1:
        raise ConfigError(
            detail=f"the order rate is ORDERS/WINDOW, e.g. 300/3h, or none (got {text!r})"
        )
    return int(orders), int(seconds)


def format_order_rate(orders: int | None, seconds: int | None) -> str | None:
    """``300/3h`` (the form :func:`parse_order_rate` reads), ``None`` without a limit."""
    if not orders or not seconds:
        return None
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{orders}/{seconds // size}{unit}"
    return f"{orders}/{seconds}s"


def sealing_box(box: SecretBox | None) -> SecretBox:
    return box or default_box()
