"""CA vendor presets: the ACME certificate authorities acmeflow knows by name.

Pure data. A preset gives the ACME directory URL, whether the CA needs External Account
Binding, the issuer names (subject CN / O of the CA's issuing certificates) that identify
certificates it issued (used by the scan to classify certificates), and the default renewal
window. ``custom`` is any other ACME directory: its URL comes from the user.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class UnknownVendor(LookupError):
    """An unknown vendor preset id (``core.state.validation.vendor_preset`` turns it into the
    catalog's ``CAConfigMissing``; config sits below core and cannot raise core errors)."""

    def __init__(self, vendor_id: str) -> None:
        self.vendor_id = vendor_id
        self.detail = f"unknown CA vendor {vendor_id!r}; valid vendors: {', '.join(PRESETS)}"
        super().__init__(self.detail)


@dataclass(frozen=True)
class VendorPreset:
    """One known ACME CA."""

    id: str
    label: str
    directory_url: str | None
    eab_required: bool
    issuer_names: tuple[str, ...]
    default_renew_days: int = 30
    notes: str = ""
    max_names: int | None = None  # names per certificate, when the CA publishes a limit
    order_rate: tuple[int, int] | None = None  # (new orders, per seconds) the CA publishes

    def matches_issuer(self, common_name: str | None, organization: str | None) -> bool:
        """Whether an issuer with this CN / O is one of this CA's issuing certificates."""
        return issuer_matches(self.issuer_names, common_name, organization)


def issuer_matches(
    issuer_names: Iterable[str], common_name: str | None, organization: str | None
) -> bool:
    """Whether the issuer CN or O equals one of ``issuer_names`` (case-insensitive)."""
    wanted = {n.strip().casefold() for n in issuer_names if n and n.strip()}
    return any(
        v is not None and v.strip().casefold() in wanted for v in (common_name, organization)
    )


# Let's Encrypt issuing intermediates: 2020 (R3/R4/E1/E2), 2024 (R10-R14, E5-E9) and the
# 2025 "Generation Y" hierarchy (YR1-YR3, YE1-YE3).
_LE_INTERMEDIATES = (
    "R3",
    "R4",
    "E1",
    "E2",
    "R10",
    "R11",
    "R12",
    "R13",
    "R14",
    "E5",
    "E6",
    "E7",
    "E8",
    "E9",
    "YR1",
    "YR2",
    "YR3",
    "YE1",
    "YE2",
    "YE3",
)

PRESETS: dict[str, VendorPreset] = {
    p.id: p
    for p in (
        VendorPreset(
            id="letsencrypt",
            label="Let's Encrypt",
            directory_url="https://acme-v02.api.letsencrypt.org/directory",
            eab_required=False,
            issuer_names=("Let's Encrypt", *_LE_INTERMEDIATES),
            default_renew_days=30,
            notes="Free DV certificates (90 days; 45-day 'tlsserver' and 160-hour "
            "'shortlived' profiles). Supports ARI.",
            max_names=100,
            order_rate=(300, 3 * 3600),  # "New Orders per Account": 300 per 3 hours
        ),
        VendorPreset(
            id="letsencrypt-staging",
            label="Let's Encrypt (staging)",
            directory_url="https://acme-staging-v02.api.letsencrypt.org/directory",
            eab_required=False,
            issuer_names=("(STAGING) Let's Encrypt",),
            default_renew_days=30,
            notes="Untrusted test certificates with generous rate limits.",
            max_names=100,
            order_rate=(1500, 3 * 3600),  # staging: 1,500 new orders per 3 hours
        ),
        VendorPreset(
            id="digicert",
            label="DigiCert",
            directory_url="https://acme.digicert.com/v2/acme/directory/",
            eab_required=True,
            issuer_names=("DigiCert Inc", "DigiCert, Inc."),
            default_renew_days=30,
            notes="EAB key id and HMAC key from CertCentral (Automation > ACME Directory URLs).",
        ),
        VendorPreset(
            id="zerossl",
            label="ZeroSSL",
            directory_url="https://acme.zerossl.com/v2/DV90",
            eab_required=True,
            issuer_names=("ZeroSSL",),
            default_renew_days=30,
            notes="EAB credentials from the ZeroSSL developer dashboard.",
        ),
        VendorPreset(
            id="google",
            label="Google Trust Services",
            directory_url="https://dv.acme-v02.api.pki.goog/directory",
            eab_required=True,
            issuer_names=("Google Trust Services", "Google Trust Services LLC"),
            default_renew_days=30,
            notes="EAB key from `gcloud publicca external-account-keys create`.",
        ),
        VendorPreset(
            id="sslcom",
            label="SSL.com",
            directory_url="https://acme.ssl.com/sslcom-dv-rsa",
            eab_required=True,
            issuer_names=("SSL Corp", "SSL.com"),
            default_renew_days=30,
            notes="EAB credentials from the SSL.com account; ECC: /sslcom-dv-ecc.",
        ),
        VendorPreset(
            id="custom",
            label="Custom ACME CA",
            directory_url=None,
            eab_required=False,
            issuer_names=(),
            default_renew_days=30,
            notes="Any RFC 8555 directory (private CA, step-ca, pebble, ...); give its URL.",
        ),
    )
}


def get_preset(preset_id: str) -> VendorPreset:
    """The preset ``preset_id`` (case-insensitive); an unknown id raises :class:`UnknownVendor`
    whose ``detail`` lists the valid ids."""
    key = (preset_id or "").strip().lower()
    try:
        return PRESETS[key]
    except KeyError:
        raise UnknownVendor(preset_id) from None


def list_presets() -> list[VendorPreset]:
    """Every preset, in display order."""
    return list(PRESETS.values())
