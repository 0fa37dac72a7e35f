"""Azure DNS via azure-mgmt-dns and azure-identity.

Writes are optimistic-concurrency safe: every change of a TXT record set is conditional on
the ETag read just before (``If-Match``), or on the set not existing (``If-None-Match: *``);
a 412 re-reads and retries, so concurrent ``present`` calls for the apex and the wildcard of
one name both land.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.mgmt.dns import DnsManagementClient
from azure.mgmt.dns.models import RecordSet, TxtRecord

from acmeflow.core.dnsprovider import ProviderField, ProviderType
from acmeflow.core.errors import ConfigError
from acmeflow.core.names import canonical_name
from acmeflow.providers.dns._base import (
    DEFAULT_TTL,
    NAMESERVERS_FIELD,
    TTL_FIELD,
    ProviderBase,
    longest_zone_match,
    relative_name,
)
from acmeflow.providers.settings import require, setting_bool, setting_float

TYPE = "azure"
_ATTEMPTS = 6

FIELDS: tuple[ProviderField, ...] = (
    ProviderField("subscription_id", help="subscription holding the DNS zone"),
    ProviderField("resource_group", help="resource group holding the DNS zone"),
    ProviderField("zone", required=False, help="DNS zone name (default: by name suffix)"),
    ProviderField("tenant_id", required=False, help="tenant of the app registration"),
    ProviderField("client_id", required=False, help="app (or user-assigned identity) id"),
    ProviderField("client_secret", kind="secret", required=False, help="app client secret"),
    ProviderField("managed_identity", required=False, help="true to use a managed identity"),
    ProviderField("base_url", required=False, help="ARM endpoint (other clouds, tests)"),
    ProviderField("authority_host", required=False, help="Entra authority host (other clouds)"),
    TTL_FIELD,
    NAMESERVERS_FIELD,
)


class AzureDNSProvider(ProviderBase):
    """TXT record sets in an Azure DNS zone.

    ``credential`` and ``transport`` (an azure-core ``HttpTransport``) may be injected; the
    registry's factory builds the credential from the settings.
    """

    type_name = TYPE

    def __init__(
        self,
        settings: Mapping[str, str],
        secrets: Mapping[str, str],
        *,
        credential: Any = None,
        transport: Any = None,
    ) -> None:
        super().__init__(settings, secrets)
        self._subscription_id = require(settings, "subscription_id", TYPE)
        self._resource_group = require(settings, "resource_group", TYPE)
        zone = (settings.get("zone") or "").strip()
        self._zone: str | None = canonical_name(zone) if zone else None
        self._ttl = int(setting_float(settings, "ttl", DEFAULT_TTL, TYPE))
        self._base_url = (settings.get("base_url") or "").strip() or None
        self._auth = "injected" if credential is not None else ""
        self._credential: Any = (
            credential if credential is not None else self._make_credential(settings, secrets)
        )
        kwargs: dict[str, Any] = {}
        if transport is not None:
            kwargs["transport"] = transport
        if self._base_url:
            kwargs["base_url"] = self._base_url
        self._client = DnsManagementClient(self._credential, self._subscription_id, **kwargs)
        self._zones: list[str] | None = None

    def _make_credential(self, settings: Mapping[str, str], secrets: Mapping[str, str]) -> Any:
        from azure.identity import (
            ClientSecretCredential,
            DefaultAzureCredential,
            ManagedIdentityCredential,
        )

        tenant = (settings.get("tenant_id") or "").strip()
        client_id = (settings.get("client_id") or "").strip()
        secret = (secrets.get("client_secret") or "").strip()
        authority = (settings.get("authority_host") or "").strip()
        extra: dict[str, Any] = {"authority": authority} if authority else {}
        if setting_bool(settings, "managed_identity", TYPE):
            if secret:
                raise ConfigError(
                    detail=f"{TYPE}: 'client_secret' cannot be used with managed_identity"
                )
            self._auth = "managed-identity"
            return ManagedIdentityCredential(client_id=client_id or None)
        if secret or tenant:
            for name, value in (
                ("tenant_id", tenant),
                ("client_id", client_id),
                ("client_secret", secret),
            ):
                if not value:
                    raise ConfigError(detail=f"{TYPE}: missing field '{name}'")
            self._auth = "client-secret"
            return ClientSecretCredential(tenant, client_id, secret, **extra)
        self._auth = "default"
        return DefaultAzureCredential(**extra)

    # -- DNSProvider ------------------------------------------------------------------------

    def present(self, fqdn: str, value: str) -> None:
        """Add ``value`` to the TXT record set of ``fqdn`` (conditional on its ETag)."""
        fqdn = canonical_name(fqdn)
        zone = self._zone_for(fqdn)
        name = relative_name(fqdn, zone)
        for _ in range(_ATTEMPTS):
            current = self._get(zone, name)
            values = _values(current)
            if value in values:
                return
            record = RecordSet(
                ttl=(current.ttl if current is not None and current.ttl else self._ttl),
                metadata=current.metadata if current is not None else None,
                txt_records=[_txt(v) for v in [*values, value]],
            )
            if self._put(zone, name, record, current):
                return
        self._fail(f"adding TXT {fqdn}: record set kept changing (412 after {_ATTEMPTS} tries)")

    def cleanup(self, fqdn: str, value: str) -> None:
        """Remove only ``value``; delete the record set (If-Match) when it was the last."""
        fqdn = canonical_name(fqdn)
        zone = self._zone_for(fqdn)
        name = relative_name(fqdn, zone)
        for _ in range(_ATTEMPTS):
            current = self._get(zone, name)
            values = _values(current)
            if current is None or value not in values:
                return
            remaining = [v for v in values if v != value]
            if remaining:
                record = RecordSet(
                    ttl=current.ttl or self._ttl,
                    metadata=current.metadata,
                    txt_records=[_txt(v) for v in remaining],
                )
                if self._put(zone, name, record, current):
                    return
            elif self._delete(zone, name, current):
                return
        self._fail(f"deleting TXT {fqdn}: record set kept changing (412 after {_ATTEMPTS} tries)")

    def txt_values(self, fqdn: str) -> list[str]:
        """The values of the TXT record set Azure DNS holds for ``fqdn``."""
        fqdn = canonical_name(fqdn)
        zone = self._zone_for(fqdn)
        return _values(self._get(zone, relative_name(fqdn, zone)))

    # -- internals --------------------------------------------------------------------------

    def _zone_for(self, fqdn: str) -> str:
        if self._zone is not None:
            if fqdn != self._zone and not fqdn.endswith("." + self._zone):
                self._fail(f"{fqdn} is not inside the configured zone {self._zone}")
            return self._zone
        if self._zones is None:
            try:
                self._zones = [
                    canonical_name(str(z.name))
                    for z in self._client.zones.list_by_resource_group(self._resource_group)
                ]
            except AzureError as exc:
                self._fail(f"listing zones of {self._resource_group}: {_error_text(exc)}")
        best = longest_zone_match(fqdn, self._zones)
        if best is None:
            self._fail(f"no DNS zone for {fqdn} in resource group {self._resource_group}")
        return best

    def _get(self, zone: str, name: str) -> RecordSet | None:
        try:
            result: RecordSet = self._client.record_sets.get(
                self._resource_group, zone, name, "TXT"
            )
            return result
        except ResourceNotFoundError as exc:
            if _is_parent_missing(exc):
                self._fail(f"zone {zone}: {_error_text(exc)}")
            return None
        except AzureError as exc:
            self._fail(f"reading TXT {name} in {zone}: {_error_text(exc)}")

    def _put(self, zone: str, name: str, record: RecordSet, current: RecordSet | None) -> bool:
        """Conditional write; ``False`` when the precondition failed (someone else wrote)."""
        condition: dict[str, str] = (
            {"if_match": str(current.etag)}
            if current is not None and current.etag
            else {"if_none_match": "*"}
        )
        try:
            self._client.record_sets.create_or_update(
                self._resource_group, zone, name, "TXT", record, **condition
            )
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return False
            self._fail(f"writing TXT {name} in {zone}: {_error_text(exc)}")
        except AzureError as exc:
            self._fail(f"writing TXT {name} in {zone}: {_error_text(exc)}")
        return True

    def _delete(self, zone: str, name: str, current: RecordSet) -> bool:
        try:
            self._client.record_sets.delete(
                self._resource_group, zone, name, "TXT", if_match=current.etag
            )
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return False
            self._fail(f"deleting TXT {name} in {zone}: {_error_text(exc)}")
        except AzureError as exc:
            self._fail(f"deleting TXT {name} in {zone}: {_error_text(exc)}")
        return True

    def __repr__(self) -> str:
        return (
            f"<AzureDNSProvider subscription={self._subscription_id!r} "
            f"resource_group={self._resource_group!r} auth={self._auth}>"
        )


def _txt(value: str) -> TxtRecord:
    """One TXT record; values longer than 255 characters are split into strings."""
    return TxtRecord(value=[value[i : i + 255] for i in range(0, len(value), 255)] or [""])


def _values(record: RecordSet | None) -> list[str]:
    if record is None or not record.txt_records:
        return []
    return ["".join(r.value or []) for r in record.txt_records]


def _is_parent_missing(exc: HttpResponseError) -> bool:
    code = getattr(getattr(exc, "error", None), "code", None) or ""
    return str(code) in ("ParentResourceNotFound", "ResourceGroupNotFound")


def _error_text(exc: AzureError) -> str:
    if isinstance(exc, ClientAuthenticationError) and exc.response is None:
        return f"authentication failed: {exc.message}"
    if isinstance(exc, HttpResponseError):
        error = getattr(exc, "error", None)
        code = getattr(error, "code", None)
        message = getattr(error, "message", None) or exc.reason or str(exc.message)
        return f"{exc.status_code} {code}: {message}" if code else f"{exc.status_code}: {message}"
    return f"{type(exc).__name__}: {exc.message}"


PROVIDER = ProviderType(
    name=TYPE,
    label="Azure DNS",
    backing="native",
    fields=FIELDS,
    factory=AzureDNSProvider,
    reason="azure-mgmt-dns (client secret, managed identity or DefaultAzureCredential)",
    aliases=("azuredns", "azure dns", "microsoft azure dns"),
)
