"""Amazon Route 53 via boto3.

Route 53 has no conditional writes, so ``present``/``cleanup`` read the current TXT set,
merge, and UPSERT it (or DELETE the exact current set when our value was the last one),
serialised per record in this process, retrying ``PriorRequestNotFound``/throttling and a
lost race (``InvalidChangeBatch``), then wait (bounded) for the change to be ``INSYNC``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import boto3
import botocore.exceptions
from botocore.config import Config

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
from acmeflow.providers.settings import setting_bool, setting_float

TYPE = "route53"
_RETRY_CODES = {"PriorRequestNotFound", "Throttling", "ThrottlingException", "RequestExpired"}
_RACE_CODES = {"InvalidChangeBatch"}
_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
T = TypeVar("T")

FIELDS: tuple[ProviderField, ...] = (
    ProviderField("access_key_id", required=False, help="IAM access key id"),
    ProviderField("secret_access_key", kind="secret", required=False, help="IAM secret key"),
    ProviderField("session_token", kind="secret", required=False, help="STS session token"),
    ProviderField("profile", required=False, help="named profile of ~/.aws/config"),
    ProviderField("role_arn", required=False, help="role to assume for Route 53 changes"),
    ProviderField("external_id", required=False, help="external id for the assumed role"),
    ProviderField("region", required=False, help="AWS region (default us-east-1)"),
    ProviderField("hosted_zone_id", required=False, help="hosted zone (default: by name)"),
    ProviderField("private_zone", required=False, help="true to use private hosted zones"),
    ProviderField("endpoint_url", required=False, help="API endpoint override (tests)"),
    ProviderField("max_wait", required=False, help="seconds to wait for INSYNC (default 120)"),
    TTL_FIELD,
    NAMESERVERS_FIELD,
)


def _record_lock(zone_id: str, name: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault((zone_id, name), threading.Lock())


def _decode_name(name: str) -> str:
    """Route 53 returns special characters as ``\\ddd`` octal escapes (``\\052`` is ``*``)."""
    return canonical_name(re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), name))


class Route53Provider(ProviderBase):
    """TXT records in Route 53 hosted zones."""

    type_name = TYPE

    def __init__(self, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        super().__init__(settings, secrets)
        self._access_key_id = (settings.get("access_key_id") or "").strip() or None
        self._secret_access_key = (secrets.get("secret_access_key") or "").strip() or None
        self._session_token = (secrets.get("session_token") or "").strip() or None
        if bool(self._access_key_id) != bool(self._secret_access_key):
            missing = "secret_access_key" if self._access_key_id else "access_key_id"
            raise ConfigError(detail=f"{TYPE}: missing field '{missing}'")
        self._profile = (settings.get("profile") or "").strip() or None
        if self._profile and self._access_key_id:
            raise ConfigError(detail=f"{TYPE}: set either 'profile' or 'access_key_id', not both")
        self._role_arn = (settings.get("role_arn") or "").strip() or None
        self._external_id = (settings.get("external_id") or "").strip() or None
        self._region = (settings.get("region") or "").strip() or "us-east-1"
        self._hosted_zone_id = _strip_zone_id((settings.get("hosted_zone_id") or "").strip())
        self._private = setting_bool(settings, "private_zone", TYPE)
        self._endpoint_url = (settings.get("endpoint_url") or "").strip() or None
        self._max_wait = setting_float(settings, "max_wait", 120.0, TYPE)
        self._ttl = int(setting_float(settings, "ttl", DEFAULT_TTL, TYPE))
        self._client_obj: Any = None
        self._client_expiry: datetime | None = None
        self._client_lock = threading.Lock()
        self._zones: dict[str, str] = {}

    # -- DNSProvider ------------------------------------------------------------------------

    def present(self, fqdn: str, value: str) -> None:
        """Add ``value`` to the TXT set of ``fqdn`` and wait until Route 53 reports INSYNC."""
        fqdn = canonical_name(fqdn)
        zone_id = self._zone_id(fqdn)
        with _record_lock(zone_id, fqdn):

            def attempt() -> str | None:
                ttl, values = self._read(zone_id, fqdn)
                if value in values:
                    return None
                rrset = self._rrset(fqdn, ttl or self._ttl, [*values, value])
                return self._change(zone_id, "UPSERT", rrset)

            change_id = self._retrying(attempt, f"adding TXT {fqdn}")
        if change_id:
            self._wait(change_id, fqdn)

    def cleanup(self, fqdn: str, value: str) -> None:
        """Remove only ``value``: UPSERT the rest, or DELETE the set when it was the last."""
        fqdn = canonical_name(fqdn)
        zone_id = self._zone_id(fqdn)
        with _record_lock(zone_id, fqdn):

            def attempt() -> str | None:
                ttl, values = self._read(zone_id, fqdn)
                if value not in values:
                    return None
                remaining = [v for v in values if v != value]
                if remaining:
                    return self._change(zone_id, "UPSERT", self._rrset(fqdn, ttl, remaining))
                return self._change(zone_id, "DELETE", self._rrset(fqdn, ttl, values))

            change_id = self._retrying(attempt, f"deleting TXT {fqdn}")
        if change_id:
            self._wait(change_id, fqdn)

    def txt_values(self, fqdn: str) -> list[str]:
        """The values of the TXT set Route 53 holds for ``fqdn``."""
        fqdn = canonical_name(fqdn)
        zone_id = self._zone_id(fqdn)
        return self._retrying(lambda: self._read(zone_id, fqdn)[1], f"reading TXT {fqdn}")

    # -- internals --------------------------------------------------------------------------

    def _client(self) -> Any:
        with self._client_lock:
            now = datetime.now(UTC)
            if self._client_obj is not None and (
                self._client_expiry is None or (self._client_expiry - now).total_seconds() > 300
            ):
                return self._client_obj
            try:
                session = boto3.session.Session(
                    aws_access_key_id=self._access_key_id,
                    aws_secret_access_key=self._secret_access_key,
                    aws_session_token=self._session_token,
                    profile_name=self._profile,
                    region_name=self._region,
                )
                config = Config(retries={"mode": "standard", "max_attempts": 5})
                expiry: datetime | None = None
                if self._role_arn:
                    sts = session.client("sts", endpoint_url=self._endpoint_url, config=config)
                    kwargs: dict[str, Any] = {
                        "RoleArn": self._role_arn,
                        "RoleSessionName": "acmeflow-dns01",
                    }
                    if self._external_id:
                        kwargs["ExternalId"] = self._external_id
                    creds = sts.assume_role(**kwargs)["Credentials"]
                    expiry = creds.get("Expiration")
                    session = boto3.session.Session(
                        aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"],
                        region_name=self._region,
                    )
                    self._secret_values = (
                        *self._secret_values,
                        creds["SecretAccessKey"],
                        creds["SessionToken"],
                    )
                self._client_obj = session.client(
                    "route53", endpoint_url=self._endpoint_url, config=config
                )
                self._client_expiry = expiry
            except botocore.exceptions.ProfileNotFound:
                self._fail(f"profile {self._profile!r} not found")
            except botocore.exceptions.ClientError as exc:
                self._fail(f"assuming role {self._role_arn}: {_client_error_text(exc)}")
            except botocore.exceptions.BotoCoreError as exc:
                self._fail(f"{type(exc).__name__}: {exc}")
            return self._client_obj

    def _zone_id(self, fqdn: str) -> str:
        if self._hosted_zone_id:
            return self._hosted_zone_id
        best = longest_zone_match(fqdn, self._zones)
        if best is not None:
            return self._zones[best]

        def lookup() -> dict[str, str]:
            found: dict[str, str] = {}
            paginator = self._client().get_paginator("list_hosted_zones")
            for page in paginator.paginate():
                for zone in page.get("HostedZones", []):
                    private = bool(zone.get("Config", {}).get("PrivateZone", False))
                    if private == self._private:
                        found.setdefault(_decode_name(zone["Name"]), _strip_zone_id(zone["Id"]))
            return found

        self._zones = self._retrying(lookup, "listing hosted zones")
        best = longest_zone_match(fqdn, self._zones)
        if best is None:
            kind = "private" if self._private else "public"
            self._fail(f"no {kind} hosted zone found for {fqdn}")
        return self._zones[best]

    def _read(self, zone_id: str, fqdn: str) -> tuple[int, list[str]]:
        response = self._client().list_resource_record_sets(
            HostedZoneId=zone_id, StartRecordName=fqdn, StartRecordType="TXT", MaxItems="1"
        )
        for rrset in response.get("ResourceRecordSets", []):
            if _decode_name(rrset["Name"]) == fqdn and rrset["Type"] == "TXT":
                values = [unquote_txt(r["Value"]) for r in rrset.get("ResourceRecords", [])]
                return int(rrset.get("TTL", self._ttl)), values
        return 0, []

    @staticmethod
    def _rrset(fqdn: str, ttl: int, values: list[str]) -> dict[str, Any]:
        return {
            "Name": fqdn + ".",
            "Type": "TXT",
            "TTL": ttl,
            "ResourceRecords": [{"Value": quote_txt(v)} for v in values],
        }

    def _change(self, zone_id: str, action: str, rrset: dict[str, Any]) -> str:
        response = self._client().change_resource_record_sets(
            HostedZoneId=zone_id,
            ChangeBatch={
                "Comment": "acmeflow DNS-01",
                "Changes": [{"Action": action, "ResourceRecordSet": rrset}],
            },
        )
        info = response["ChangeInfo"]
        return "" if info.get("Status") == "INSYNC" else str(info["Id"])

    def _wait(self, change_id: str, fqdn: str) -> None:
        deadline = time.monotonic() + self._max_wait
        delay = 0.2
        while True:
            status = self._retrying(
                lambda: self._client().get_change(Id=change_id)["ChangeInfo"]["Status"],
                f"waiting for change {change_id}",
            )
            if status == "INSYNC":
                return
            if time.monotonic() + delay > deadline:
                self._fail(f"change {change_id} for {fqdn} not INSYNC after {self._max_wait:g}s")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _retrying(self, func: Callable[[], T], what: str) -> T:
        delay = 0.2
        for attempt in range(6):
            try:
                return func()
            except botocore.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if attempt < 5 and (code in _RETRY_CODES or code in _RACE_CODES):
                    time.sleep(delay)
                    delay *= 2
                    continue
                self._fail(f"{what}: {_client_error_text(exc)}")
            except botocore.exceptions.BotoCoreError as exc:
                self._fail(f"{what}: {type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")  # pragma: no cover

    def __repr__(self) -> str:
        auth = (
            "keys"
            if self._access_key_id
            else f"profile={self._profile}"
            if self._profile
            else "default-chain"
        )
        role = f" role={self._role_arn}" if self._role_arn else ""
        return f"<Route53Provider auth={auth}{role} zone={self._hosted_zone_id or 'auto'}>"


def _strip_zone_id(zone_id: str) -> str:
    return zone_id.rsplit("/", 1)[-1] if zone_id else ""


def _client_error_text(exc: botocore.exceptions.ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', 'Error')}: {error.get('Message', str(exc))}"


PROVIDER = ProviderType(
    name=TYPE,
    label="Amazon Route53",
    backing="native",
    fields=FIELDS,
    factory=Route53Provider,
    reason="boto3 (keys, profile, assumed role or the default credential chain)",
    aliases=("aws", "amazon route 53", "route 53", "aws route53"),
)
