"""The error catalog: every error acmeflow reports, in the words users search for.

Each catalogued error carries the catalog ``message`` (fixed text from PRODUCT.md), a
``detail`` (the ACME problem document, the provider's answer, ...) and whether retrying
can help. Nothing here may contain a secret: callers pass details through
:func:`mask_secrets` when a detail could echo one.
"""

from __future__ import annotations

from collections.abc import Iterable


class AcmeflowError(Exception):
    """Base of every error acmeflow raises on purpose."""

    message: str = "acmeflow failed."
    retryable: bool = False

    def __init__(self, detail: str | None = None, *, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        self.detail = detail
        super().__init__(self.message if not detail else f"{self.message}\n{detail}")

    @property
    def code(self) -> str:
        """Stable machine-readable name of the error (the class name)."""
        return type(self).__name__

    def to_dict(self) -> dict[str, str | None]:
        """The error as JSON-ready data (for `--json` output and the history)."""
        return {"error": self.code, "message": self.message, "detail": self.detail}

    def __reduce__(self) -> tuple[object, ...]:  # picklable across Prefect task boundaries
        return (_rebuild, (type(self), self.message, self.detail, self.__dict__))


def _rebuild(
    cls: type[AcmeflowError], message: str, detail: str | None, state: dict[str, object]
) -> AcmeflowError:
    err = cls.__new__(cls)
    Exception.__init__(err, message if not detail else f"{message}\n{detail}")
    err.__dict__.update(state)
    return err


# --- the catalog (PRODUCT.md, in its exact words) -------------------------------------------


class CertificateInvalidDomain(AcmeflowError):
    """A certificate's name is not valid for ACME (IP literal, bad label, ...)."""

    message = "Certificate has invalid domain"


class DomainNeedsDot(AcmeflowError):
    """A requested name has no dot."""

    def __init__(self, name: str, detail: str | None = None) -> None:
        self.name = name
        super().__init__(
            detail,
            message=(
                f'Invalid identifiers requested :: Cannot issue for "{name}": '
                "Domain name needs at least one dot"
            ),
        )


class CANonceError(AcmeflowError):
    """No nonce could be obtained from the CA."""

    message = "Could not get nonce from the CA server. Please check the CA server configuration."
    retryable = True


class CADirectoryError(AcmeflowError):
    """The ACME directory cannot be fetched or parsed."""

    message = "Cannot initialize API for the CA server. Please check the CA server configuration."


class InvalidDomainName(AcmeflowError):
    """A name is syntactically invalid."""

    message = "Invalid domain name provided. Please check the domain name and try again."


class DuplicateCertificate(AcmeflowError):
    """The request is identical to a valid existing certificate."""

    message = "Domains not changed. Certificate with same configuration already exists."


class TXTRecordError(AcmeflowError):
    """The DNS provider refused or failed the TXT change."""

    message = (
        "Error adding TXT record for domain validation. "
        "Please check the DNS configuration and try again."
    )


class SignatureMismatch(AcmeflowError):
    """The CA rejected a signature, or the clock is skewed."""

    message = "Signature does not match. Please check the server time as it may not be in sync."


class MissingDNSProvider(AcmeflowError):
    """A name of the certificate maps to no DNS provider."""

    message = "Certificate is missing a DNS provider name."


class NoActiveDNSProvider(AcmeflowError):
    """Renewal attempted while no DNS provider is active."""

    message = "Renewal skipped as no active DNS providers are configured."


class InvalidContact(AcmeflowError):
    """The contact email is invalid."""

    message = "Error validating contact(s) :: unable to parse email address"


class FinalizeError(AcmeflowError):
    """Finalizing the order failed."""

    message = "Unable to process finalize order request."


class DNSProviderUnavailable(AcmeflowError):
    """The named DNS provider is unknown or disabled."""

    def __init__(self, name: str, detail: str | None = None) -> None:
        self.name = name
        super().__init__(detail, message=f"DNS Provider - {name} does not exist or is not active.")


class CAConfigMissing(AcmeflowError):
    """The CA vendor is missing or unknown."""

    message = "Config CA ID is empty/does not exist."


# --- beyond the catalog ---------------------------------------------------------------------


class RateLimited(AcmeflowError):
    """The CA rate-limited us beyond the deadline we were given."""

    message = "The CA is rate limiting requests. Try again after the time it asked for."

    def __init__(self, detail: str | None = None, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(detail)


class CAUnavailable(AcmeflowError):
    """A transient CA failure (network error, 5xx) outlasted the retries."""

    message = "The CA server is not reachable right now. Please try again later."
    retryable = True


class ChallengeFailed(AcmeflowError):
    """The CA could not validate a DNS-01 challenge."""

    message = "DNS-01 validation failed. Please check the DNS configuration and try again."


class PropagationTimeout(AcmeflowError):
    """A TXT record was not served by every authoritative nameserver in time."""

    message = (
        "The TXT record did not reach every authoritative nameserver in time. "
        "Please check the DNS configuration and try again."
    )
    retryable = False  # its whole timeout was spent: a task retry would only wait again


class DeadlineExceeded(AcmeflowError):
    """The order's deadline was spent (the detail names the step); a retry cannot help."""

    message = "The order did not complete before its deadline."


class CANotAnswering(DeadlineExceeded):
    """The CA accepted connections but did not answer before the deadline."""

    message = "The CA server did not answer in time. Please check the CA server and try again."


class ValidationTimeout(DeadlineExceeded):
    """The CA had not validated every challenge when the deadline came."""

    message = "The CA did not validate the DNS-01 challenges in time."


class FinalizeTimeout(DeadlineExceeded):
    """The CA had not issued the certificate of a finalized order when the deadline came."""

    message = "The CA did not issue the certificate in time."


class OrderStateUnknown(AcmeflowError):
    """A ``newOrder`` request got no answer: the CA may or may not have created the order."""

    message = (
        "The CA did not answer the new order request; the state of the order is unknown. "
        "Try again later."
    )


class NameserverNotAnswering(AcmeflowError):
    """A DNS server asked during the order did not answer (down, firewalled, wrong port)."""

    def __init__(self, servers: str, detail: str | None = None) -> None:
        self.servers = servers
        super().__init__(
            detail,
            message=f"The nameserver {servers} did not answer. "
            "Please check that it is running and reachable.",
        )


class DNSLookupFailed(AcmeflowError):
    """A recursive DNS lookup failed (timeout, SERVFAIL, a zone the resolver does not know)."""

    message = (
        "A DNS lookup failed. Please check the resolvers (ACMEFLOW_DNS_RESOLVERS) or the "
        "provider's nameservers= setting."
    )


class TooManyNames(AcmeflowError):
    """A request has more names than the CA accepts in one certificate."""

    message = "Too many names for one certificate at this CA."


class OrderFailed(AcmeflowError):
    """The CA reported a problem with the order that fits no other row."""

    message = "The CA refused the certificate order."


class InvalidKey(AcmeflowError):
    """A private key could not be read, or does not match."""

    message = "Invalid private key provided. Please check the key and try again."


class InvalidCSR(AcmeflowError):
    """A CSR could not be read or its signature does not verify."""

    message = "Invalid CSR provided. Please check the CSR and try again."


class ConfigError(AcmeflowError):
    """A configuration value is missing or invalid (with the field in the detail)."""

    message = "Invalid configuration."


class SecretError(AcmeflowError):
    """A secret reference cannot be resolved or decrypted."""

    message = "A secret could not be read. Please check the secret reference and key."


class NotFound(AcmeflowError):
    """A named object (certificate, target, ...) does not exist."""

    message = "Not found."


def describe_failure(
    exc: BaseException, secrets: Iterable[str | None] = ()
) -> tuple[str, str, str]:
    """(message, detail, root cause) of any exception, for the history and summaries.

    Catalogued errors keep their message; anything else is an "Unexpected failure." whose
    detail names the exception. Details pass through :func:`mask_secrets`.
    """
    if isinstance(exc, AcmeflowError):
        return exc.message, mask_secrets(exc.detail or "", secrets), exc.code
    return (
        "Unexpected failure.",
        mask_secrets(f"{type(exc).__name__}: {exc}", secrets),
        type(exc).__name__,
    )


def mask_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each (non-trivial) secret in ``text`` with ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class DeployError(AcmeflowError):
    """Deploying a certificate to a target failed (the detail names the target and cause)."""

    message = "Deploying the certificate to its target failed."

    def __init__(self, detail: str | None = None, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(detail)


class LeaseHeld(AcmeflowError):
    """Another run holds the lease on a certificate or name set: this run skips it."""

    def __init__(self, what: str, holder: str, detail: str | None = None) -> None:
        self.what = what
        self.holder = holder
        super().__init__(detail, message=f"{what} already in progress by {holder}")


class DiskWriteFailed(AcmeflowError):
    """A file or the database could not be written (a full disk, a read-only folder)."""

    message = "Could not write to disk. Please check the free space and permissions."


class StoreUnavailable(AcmeflowError):
    """The object storage of a store answered with an error or not at all."""

    message = (
        "The certificate store could not be reached. Please check its settings and credentials."
    )


class MigrationMismatch(AcmeflowError):
    """A certificate set read back from the backend it was migrated to differs from its
    source (the move is rolled back)."""

    message = "The migrated certificate does not match its source; it was not moved."


class RunInterrupted(AcmeflowError):
    """The run stopped (an error elsewhere, a cancellation) before this order finished."""

    message = "The run stopped before this order finished."


class LimitSlotsBusy(AcmeflowError):
    """A pool-wide limit (a Prefect global concurrency limit) had no free slot in time."""

    message = (
        "A pool-wide limit had no free slot in time: other runs hold them all "
        "(a crashed worker's until their lease expires)."
    )
    retryable = True


class LeaseLost(AcmeflowError):
    """The lease this run held was taken over (it expired): nothing may be written."""

    message = "The lease on this certificate expired and was taken over by another run."
