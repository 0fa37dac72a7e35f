"""The contract every deploy target fulfils: put a certificate where it is served.

A target is built from its configured settings and resolved secrets by the registry
(:mod:`providers.deploy.registry`). Failures raise :class:`core.errors.DeployError` whose
detail starts with the target type (``"netscaler: ..."``) and contains no secret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from acmeflow.core.dnsprovider import ProviderField
from acmeflow.core.errors import DeployError


@dataclass(frozen=True, repr=False)
class CertificateBundle:
    """A certificate ready to deploy: leaf, intermediates, full chain and private key."""

    name: str  # stable certificate name, e.g. "example.com" (used for file/object names)
    cert_pem: bytes  # leaf
    chain_pem: bytes  # intermediates (may be empty)
    fullchain_pem: bytes
    key_pem: bytes  # private key: never logged, never in repr
    serial: str  # lower hex, no leading zeros

    def __repr__(self) -> str:
        return f"CertificateBundle(name={self.name!r}, serial={self.serial!r})"

    @classmethod
    def from_fullchain(cls, name: str, fullchain_pem: bytes, key_pem: bytes) -> CertificateBundle:
        """Build a bundle from a full-chain PEM (leaf first) and its private key PEM."""
        try:
            certs = x509.load_pem_x509_certificates(fullchain_pem)
        except ValueError as exc:
            raise DeployError(
                detail=f"bundle {name}: cannot read the certificate chain: {exc}"
            ) from exc
        leaf, *chain = certs
        cert_pem = leaf.public_bytes(Encoding.PEM)
        chain_pem = b"".join(c.public_bytes(Encoding.PEM) for c in chain)
        return cls(
            name=name,
            cert_pem=cert_pem,
            chain_pem=chain_pem,
            fullchain_pem=cert_pem + chain_pem,
            key_pem=key_pem,
            serial=format(leaf.serial_number, "x"),
        )


@dataclass(frozen=True)
class DeployOutcome:
    """What one deployment did."""

    changed: bool  # False when the target already held this certificate (idempotent)
    detail: str  # human-readable, no secrets
    location: str = ""  # ARN / file path / certkey name


@runtime_checkable
class DeployTarget(Protocol):
    """Puts a certificate bundle on one target (ADC, files + reload, cloud store)."""

    type_name: str

    def deploy(self, bundle: CertificateBundle) -> DeployOutcome:
        """Install ``bundle``; idempotent (``changed=False`` when already in place)."""
        ...

    def current_serial(self, name: str | None = None) -> str | None:
        """Serial (lower hex) of the certificate the target holds now, or None.

        ``name`` is the bundle name, for targets whose location derives from it (a NetScaler
        certkey or an ACM ARN found by tag when none is configured); others ignore it.
        """
        ...


TargetFactory = Callable[[Mapping[str, str], Mapping[str, str]], DeployTarget]


@dataclass(frozen=True)
class TargetType:
    """A deploy target type, declared beside its adapter (as DNS providers declare
    ``PROVIDER``): its id, label, configuration fields and factory ``(settings, secrets)``."""

    name: str
    label: str
    fields: tuple[ProviderField, ...]
    factory: TargetFactory


def setting(name: str, help: str, *, required: bool = False) -> ProviderField:
    """A plain configuration field of a target type."""
    return ProviderField(name=name, kind="setting", required=required, help=help)


def secret(name: str, help: str, *, required: bool = False) -> ProviderField:
    """A secret field of a target type (sealed at rest, never shown)."""
    return ProviderField(name=name, kind="secret", required=required, help=help)
