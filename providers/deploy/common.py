"""Helpers shared by the deploy targets: errors, serials, settings parsing, atomic writes."""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509

from acmeflow.core.errors import DeployError, mask_secrets


def deploy_error(
    type_name: str, text: str, *, secrets: Iterable[str | None] = (), retryable: bool = False
) -> DeployError:
    """A :class:`DeployError` whose detail is ``"<type>: <text>"`` with secrets masked."""
    return DeployError(
        detail=mask_secrets(f"{type_name}: {text}", list(secrets)), retryable=retryable
    )


def normalize_serial(serial: str | int) -> str:
    """A serial as lower hex without leading zeros (accepts ``0A:1B``, ``0a1b``, ints)."""
    if isinstance(serial, int):
        return format(serial, "x")
    cleaned = serial.replace(":", "").replace(" ", "").strip()
    if not cleaned:
        return ""
    return format(int(cleaned, 16), "x")


def pem_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM blob, in order (empty list for an empty blob)."""
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        return []
    return x509.load_pem_x509_certificates(pem)


def serial_of_pem(pem: bytes) -> str | None:
    """Lower-hex serial of the first certificate in ``pem``, or None if there is none."""
    try:
        certs = pem_certificates(pem)
    except ValueError:
        return None
    return format(certs[0].serial_number, "x") if certs else None


def text_tail(text: str, *, lines: int = 10, chars: int = 1500) -> str:
    """The last ``lines`` lines (at most ``chars`` characters) of ``text``, stripped."""
    tail = "\n".join(text.strip().splitlines()[-lines:])
    return tail[-chars:]
