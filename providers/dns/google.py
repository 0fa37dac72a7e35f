"""Google Cloud DNS via google-cloud-dns.

A change replaces the TXT set atomically: it deletes the set exactly as it was read and adds
the merged set. Cloud DNS rejects a change whose deletions do not match the current set
(412/409), which is how a concurrent writer is detected; we re-read and retry. Changes are
polled (bounded) until ``status == "done"``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import google.auth.exceptions
from google.api_core import exceptions as gexc
from google.api_core import page_iterator
from google.cloud import dns
from google.cloud.dns.resource_record_set import ResourceRecordSet

from acmeflow.core.dnsprovider import ProviderField, ProviderType
from acmeflow.core.errors import ConfigError
from acmeflow.core.names import canonical_name
from acmeflow.providers.dns._base import (
    DEFAULT_TTL,
    NAMESERVERS_FIELD,
    TTL_FIELD,
    ProviderBase,
    longest_zone_match,
    quote_txt,
    unquote_txt,
)
from acmeflow.providers.settings import require, setting_float

TYPE = "googleclouddns"
_ATTEMPTS = 6
_SCOPES = ("https://www.googleapis.com/auth/ndev.clouddns.readwrite",)

FIELDS: tuple[ProviderField, ...] = (
    ProviderField("project", help="Google Cloud project id"),
    ProviderField("zone", required=False, help="managed zone name (default: by DNS name)"),
    ProviderField(
        "service_account_json",
        kind="secret",
        required=False,
        help="service account key (JSON contents); default: application default credentials",
    ),
    ProviderField("api_endpoint", required=False, help="API endpoint override (tests)"),
    ProviderField("max_wait", required=False, help="seconds to wait for a change (default 120)"),
    TTL_FIELD,
    NAMESERVERS_FIELD,
)


class GoogleCloudDNSProvider(ProviderBase):
    """TXT record sets in a Cloud DNS managed zone. ``credentials`` may be injected (tests)."""

    type_name = TYPE

    def __init__(
        self,
        settings: Mapping[str, str],
        secrets: Mapping[str, str],
        *,
        credentials: Any = None,
    ) -> None:
        super().__init__(settings, secrets)
        self._project = require(settings, "project", TYPE)
        self._zone_name = (settings.get("zone") or "").strip() or None
        self._ttl = int(setting_float(settings, "ttl", DEFAULT_TTL, TYPE))
        self._max_wait = setting_float(settings, "max_wait", 120.0, TYPE)
        endpoint = (settings.get("api_endpoint") or "").strip().rstrip("/")
        self._auth = "injected"
        if credentials is None:
            credentials = self._make_credentials(secrets)
        options = {"api_endpoint": endpoint} if endpoint else None
        try:
            self._client = dns.Client(
                project=self._project, credentials=credentials, client_options=options
            )
        except google.auth.exceptions.GoogleAuthError as exc:
            raise ConfigError(detail=self._mask(f"{TYPE}: credentials: {exc}")) from None
        self._zones: dict[str, Any] | None = None  # dns name -> Zone
        self._zone_obj: Any = None

    def _make_credentials(self, secrets: Mapping[str, str]) -> Any:
        raw = (secrets.get("service_account_json") or "").strip()
        if not raw:
            self._auth = "application-default"
            return None  # the client falls back to application default credentials
        from google.oauth2 import service_account

        try:
            info = json.loads(raw)
            creds = service_account.Credentials.from_service_account_info(info, scopes=_SCOPES)
        except (ValueError, KeyError, TypeError) as exc:
            # never echo the JSON (it holds the private key)
            raise ConfigError(
                detail=f"{TYPE}: field 'service_account_json' is not a service account key "
                f"({type(exc).__name__})"
            ) from None
        info_secret = info.get("private_key") if isinstance(info, dict) else None
        if info_secret:
            self._secret_values = (*self._secret_values, str(info_secret))
        self._auth = f"service-account {info.get('client_email', '')}".strip()
        return creds

    # -- DNSProvider ------------------------------------------------------------------------

    def present(self, fqdn: str, value: str) -> None:
        """Add ``value`` to the TXT set of ``fqdn`` and wait for the change to be done."""
        fqdn = canonical_name(fqdn)
        zone = self._zone_for(fqdn)
        for _ in range(_ATTEMPTS):
            current = self._read(zone, fqdn)
            values = [unquote_txt(r) for r in current.rrdatas] if current else []
            if value in values:
                return
            ttl = current.ttl if current is not None else self._ttl
            rrdatas = [*(current.rrdatas if current else []), quote_txt(value)]
            if self._apply(
                zone, fqdn, current, zone.resource_record_set(fqdn + ".", "TXT", ttl, rrdatas)
            ):
                return
        self._fail(f"adding TXT {fqdn}: record set kept changing ({_ATTEMPTS} conflicts)")

    def cleanup(self, fqdn: str, value: str) -> None:
        """Remove only ``value`` (the whole set when it was the last value)."""
        fqdn = canonical_name(fqdn)
        zone = self._zone_for(fqdn)
        for _ in range(_ATTEMPTS):
            current = self._read(zone, fqdn)
            if current is None:
                return
            rest = [r for r in current.rrdatas if unquote_txt(r) != value]
            if len(rest) == len(current.rrdatas):
                return
            new = zone.resource_record_set(fqdn + ".", "TXT", current.ttl, rest) if rest else None
            if self._apply(zone, fqdn, current, new):
                return
        self._fail(f"deleting TXT {fqdn}: record set kept changing ({_ATTEMPTS} conflicts)")

    def txt_values(self, fqdn: str) -> list[str]:
        """The values of the TXT set Cloud DNS holds for ``fqdn``."""
        fqdn = canonical_name(fqdn)
        current = self._read(self._zone_for(fqdn), fqdn)
        return [unquote_txt(r) for r in current.rrdatas] if current else []

    # -- internals --------------------------------------------------------------------------

    def _zone_for(self, fqdn: str) -> Any:
        if self._zone_name:
            if self._zone_obj is None:
                zone = self._client.zone(self._zone_name)
                try:
                    zone.reload()
                except (gexc.GoogleAPICallError, google.auth.exceptions.GoogleAuthError) as exc:
                    self._fail(f"managed zone {self._zone_name}: {_error_text(exc)}")
                self._zone_obj = zone
            dns_name = canonical_name(str(self._zone_obj.dns_name))
            if fqdn != dns_name and not fqdn.endswith("." + dns_name):
                self._fail(f"{fqdn} is not inside managed zone {self._zone_name} ({dns_name})")
            return self._zone_obj
        if self._zones is None:
            try:
                self._zones = {
                    canonical_name(str(z.dns_name)): z for z in self._client.list_zones()
                }
            except (gexc.GoogleAPICallError, google.auth.exceptions.GoogleAuthError) as exc:
                self._fail(f"listing managed zones of {self._project}: {_error_text(exc)}")
        best = longest_zone_match(fqdn, self._zones)
        if best is None:
            self._fail(f"no managed zone for {fqdn} in project {self._project}")
        return self._zones[best]

    def _read(self, zone: Any, fqdn: str) -> ResourceRecordSet | None:
        iterator = page_iterator.HTTPIterator(
            client=self._client,
            api_request=self._client._connection.api_request,
            path=f"/projects/{self._project}/managedZones/{zone.name}/rrsets",
            item_to_value=lambda _it, resource: ResourceRecordSet.from_api_repr(resource, zone),
            items_key="rrsets",
            extra_params={"name": fqdn + ".", "type": "TXT"},
        )
        try:
            for rrset in iterator:
                if canonical_name(rrset.name) == fqdn and rrset.record_type == "TXT":
                    return rrset  # type: ignore[no-any-return]
        except (gexc.GoogleAPICallError, google.auth.exceptions.GoogleAuthError) as exc:
            self._fail(f"reading TXT {fqdn}: {_error_text(exc)}")
        return None

    def _apply(
        self,
        zone: Any,
        fqdn: str,
        old: ResourceRecordSet | None,
        new: ResourceRecordSet | None,
    ) -> bool:
        """Submit one change; ``False`` when Cloud DNS reports a conflicting concurrent change."""
        changes = zone.changes()
        if old is not None:
            changes.delete_record_set(old)
        if new is not None:
            changes.add_record_set(new)
        try:
            changes.create()
        except (gexc.Conflict, gexc.PreconditionFailed):
            return False
        except (gexc.GoogleAPICallError, google.auth.exceptions.GoogleAuthError) as exc:
            self._fail(f"changing TXT {fqdn}: {_error_text(exc)}")
        deadline = time.monotonic() + self._max_wait
        delay = 0.0  # read back once at once: Cloud DNS often finishes within milliseconds
        while changes.status != "done":
            if time.monotonic() + delay > deadline:
                self._fail(f"change {changes.name} for {fqdn} not done after {self._max_wait:g}s")
            time.sleep(delay)
            delay = min(max(delay * 2, 0.1), 5.0)
            try:
                changes.reload()
            except (gexc.GoogleAPICallError, google.auth.exceptions.GoogleAuthError) as exc:
                self._fail(f"waiting for change {changes.name}: {_error_text(exc)}")
        return True

    def __repr__(self) -> str:
        return f"<GoogleCloudDNSProvider project={self._project!r} auth={self._auth}>"


def _error_text(exc: Exception) -> str:
    if isinstance(exc, gexc.GoogleAPICallError):
        return f"{exc.code} {exc.message}"
    return f"{type(exc).__name__}: {exc}"


PROVIDER = ProviderType(
    name=TYPE,
    label="Google Cloud DNS",
    backing="native",
    fields=FIELDS,
    factory=GoogleCloudDNSProvider,
    reason="google-cloud-dns (service account key or application default credentials)",
    aliases=("google", "gcp", "clouddns", "cloud dns", "gcloud"),
)
