"""A named fake of Azure Resource Manager's DNS API, plugged in at the HTTP transport.

It answers the documented REST shapes of ``Microsoft.Network/dnsZones`` (api-version
2018-05-01) for the real azure-mgmt-dns client:

- ``GET  /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Network/dnsZones``
- ``GET|PUT|DELETE .../dnsZones/{zone}/TXT/{relativeRecordSetName}``

with ETags (``If-Match`` / ``If-None-Match: *`` -> ``412 PreconditionFailed``), ``404``
``NotFound`` for a missing record set (``ParentResourceNotFound`` for a missing zone), the
mandatory ``api-version`` query parameter and bearer-token authorization
(``401 AuthenticationFailed`` / ``403 AuthorizationFailed``).

Use :meth:`FakeAzureDNS.transport` as the client's ``transport=`` and :class:`FakeCredential`
as its credential: the SDK's whole pipeline (policies, serialisation, error mapping) runs.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

ARM_HOST = "management.azure.com"
API_VERSIONS = {"2018-05-01", "2023-07-01-preview"}


class FakeCredential:
    """A TokenCredential that hands out a fixed bearer token (no Entra round trip)."""

    def __init__(self, token: str = "fake-arm-token") -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


@dataclass
class _RecordSet:
    etag: str
    ttl: int
    txt: list[list[str]]
    metadata: dict[str, str] | None = None


@dataclass
class _Zone:
    name: str
    records: dict[str, _RecordSet] = field(default_factory=dict)


class FakeAzureDNS:
    """In-memory Azure DNS for one subscription; zones live in resource groups."""

    def __init__(self, subscription_id: str, tokens: dict[str, str] | None = None) -> None:
        self.subscription_id = subscription_id
        # token -> "ok" (may write) | "reader" (403 on writes); anything else is a 401
        self.tokens = tokens if tokens is not None else {"fake-arm-token": "ok"}
        self.groups: dict[str, dict[str, _Zone]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.before_write: Callable[[str, str], None] | None = None  # hook: (zone, name)
        self._lock = threading.RLock()

    def add_zone(self, resource_group: str, zone: str) -> None:
        """Create a DNS zone in a resource group."""
        self.groups.setdefault(resource_group.lower(), {})[zone.lower()] = _Zone(zone.lower())

    def txt(self, resource_group: str, zone: str, name: str) -> list[str]:
        """The TXT values of a record set (test inspection, joined strings)."""
        rs = self.groups[resource_group.lower()][zone.lower()].records.get(name.lower())
        return ["".join(v) for v in rs.txt] if rs else []

    def put_raw(self, resource_group: str, zone: str, name: str, values: list[str]) -> None:
        """Write a record set directly (another writer), changing its ETag."""
        with self._lock:
            records = self.groups[resource_group.lower()][zone.lower()].records
            records[name.lower()] = _RecordSet(str(uuid.uuid4()), 60, [[v] for v in values])

    def transport(self) -> RequestsTransport:
        """An azure-core transport whose requests to ARM are served by this fake."""
        session = requests.Session()
        session.mount(f"https://{ARM_HOST}", _ARMAdapter(self))
        return RequestsTransport(session=session, session_owner=False)

    # -- request handling -------------------------------------------------------------------

    def handle(
        self, method: str, url: str, headers: CaseInsensitiveDict[str], body: bytes | None
    ) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.requests.append((method, parts.path, dict(headers)))
        auth = headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        role = self.tokens.get(token)
        if role is None:
            return _error(401, "AuthenticationFailed", "Authentication failed.")
        if query.get("api-version") not in API_VERSIONS:
            return _error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        lowered = [s.lower() for s in segments]
        if (
            len(segments) < 6
            or lowered[0] != "subscriptions"
            or lowered[2] != "resourcegroups"
            or lowered[4:6] != ["providers", "microsoft.network"]
            or lowered[6:7] != ["dnszones"]
        ):
            return _error(404, "InvalidResourceType", f"No route for {parts.path}")
        if segments[1] != self.subscription_id:
            return _error(
                404, "SubscriptionNotFound", f"The subscription '{segments[1]}' could not be found."
            )
        group = lowered[3]
        if group not in self.groups:
            return _error(
                404, "ResourceGroupNotFound", f"Resource group '{segments[3]}' could not be found."
            )
        with self._lock:
            if len(segments) == 7 and method == "GET":
                return (
                    200,
                    {},
                    {"value": [self._zone_json(group, z) for z in self.groups[group].values()]},
                )
            if len(segments) != 10 or lowered[8] != "txt":
                return _error(404, "InvalidResourceType", f"No route for {parts.path}")
            zone = self.groups[group].get(lowered[7])
            if zone is None:
                return _error(
                    404,
                    "ParentResourceNotFound",
                    f"Can not perform requested operation on nested resource. Parent resource "
                    f"'{segments[7]}' not found.",
                )
            name = lowered[9]
            if method == "GET":
                return self._get(group, zone, name)
            if role != "ok":
                return _error(
                    403,
                    "AuthorizationFailed",
                    "The client does not have authorization to perform action "
                    "'Microsoft.Network/dnszones/TXT/write' over scope "
                    f"'/subscriptions/{self.subscription_id}/resourceGroups/{segments[3]}'.",
                )
            if self.before_write is not None:
                hook, self.before_write = self.before_write, None
                hook(zone.name, name)
            if method == "PUT":
                return self._put(group, zone, name, headers, body)
            if method == "DELETE":
                return self._delete(zone, name, headers)
        return _error(405, "MethodNotAllowed", method)

    def _get(self, group: str, zone: _Zone, name: str) -> tuple[int, dict[str, str], Any]:
        rs = zone.records.get(name)
        if rs is None:
            return _error(
                404,
                "NotFound",
                f"The resource record '{name}' does not exist in resource group '{group}' of "
                f"subscription '{self.subscription_id}'.",
            )
        return 200, {"ETag": rs.etag}, self._record_json(group, zone, name, rs)

    def _put(
        self,
        group: str,
        zone: _Zone,
        name: str,
        headers: CaseInsensitiveDict[str],
        body: bytes | None,
    ) -> tuple[int, dict[str, str], Any]:
        current = zone.records.get(name)
        failed = self._precondition(current, headers)
        if failed is not None:
            return failed
        try:
            payload = json.loads(body or b"{}")
            props = payload["properties"]
            ttl = int(props["TTL"])
            txt = [list(r["value"]) for r in props.get("TXTRecords", [])]
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, "BadRequest", f"Invalid record set: {exc}")
        if any(len(s) > 255 for v in txt for s in v):
            return _error(400, "BadRequest", "TXT record strings are limited to 255 characters.")
        rs = _RecordSet(str(uuid.uuid4()), ttl, txt, props.get("metadata"))
        zone.records[name] = rs
        return (
            (201 if current is None else 200),
            {"ETag": rs.etag},
            self._record_json(group, zone, name, rs),
        )

    def _delete(
        self, zone: _Zone, name: str, headers: CaseInsensitiveDict[str]
    ) -> tuple[int, dict[str, str], Any]:
        current = zone.records.get(name)
        if current is None:
            return 204, {}, None
        failed = self._precondition(current, headers)
        if failed is not None:
            return failed
        del zone.records[name]
        return 200, {}, None

    @staticmethod
    def _precondition(
        current: _RecordSet | None, headers: CaseInsensitiveDict[str]
    ) -> tuple[int, dict[str, str], Any] | None:
        if_match = headers.get("If-Match")
        if_none_match = headers.get("If-None-Match")
        if if_match is not None and (
            current is None or (if_match != "*" and if_match != current.etag)
        ):
            return _error(
                412,
                "PreconditionFailed",
                f"The condition '{if_match}' in the If-Match header was not satisfied. "
                f"The current was '{current.etag if current else 'n/a'}'.",
            )
        if if_none_match == "*" and current is not None:
            return _error(
                412,
                "PreconditionFailed",
                "The condition '*' in the If-None-Match header was not satisfied. "
                f"The current was '{current.etag}'.",
            )
        return None

    def _zone_json(self, group: str, zone: _Zone) -> dict[str, Any]:
        return {
            "id": f"/subscriptions/{self.subscription_id}/resourceGroups/{group}/providers/"
            f"Microsoft.Network/dnszones/{zone.name}",
            "name": zone.name,
            "type": "Microsoft.Network/dnszones",
            "location": "global",
            "etag": "00000002-0000-0000-76c2-f7ad90b5d101",
            "properties": {
                "maxNumberOfRecordSets": 10000,
                "numberOfRecordSets": len(zone.records) + 2,
                "nameServers": ["ns1-01.azure-dns.com.", "ns2-01.azure-dns.net."],
                "zoneType": "Public",
            },
        }

    def _record_json(self, group: str, zone: _Zone, name: str, rs: _RecordSet) -> dict[str, Any]:
        fqdn = (zone.name if name == "@" else f"{name}.{zone.name}") + "."
        return {
            "id": f"/subscriptions/{self.subscription_id}/resourceGroups/{group}/providers/"
            f"Microsoft.Network/dnszones/{zone.name}/TXT/{name}",
            "name": name,
            "type": "Microsoft.Network/dnszones/TXT",
            "etag": rs.etag,
            "properties": {
                "metadata": rs.metadata or {},
                "TTL": rs.ttl,
                "fqdn": fqdn,
                "provisioningState": "Succeeded",
                "TXTRecords": [{"value": v} for v in rs.txt],
            },
        }


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], Any]:
    return status, {}, {"error": {"code": code, "message": message}}


class _ARMAdapter(BaseAdapter):
    """A requests transport adapter answering from :class:`FakeAzureDNS`."""

    def __init__(self, fake: FakeAzureDNS) -> None:
        super().__init__()
        self.fake = fake

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:  # type: ignore[override]
        raw = request.body
        body = raw.encode() if isinstance(raw, str) else raw if isinstance(raw, bytes) else None
        headers_in: CaseInsensitiveDict[str] = CaseInsensitiveDict(
            {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        )
        status, headers, payload = self.fake.handle(
            str(request.method), str(request.url), headers_in, body
        )
        content = b"" if payload is None else json.dumps(payload).encode()
        response = requests.Response()
        response.status_code = status
        response.reason = {200: "OK", 201: "Created", 204: "No Content"}.get(status, "Error")
        response.headers = CaseInsensitiveDict(
            {
                **headers,
                "Content-Type": "application/json; charset=utf-8",
                "Content-Length": str(len(content)),
                "x-ms-request-id": str(uuid.uuid4()),
            }
        )
        response._content = content
        response.raw = _RawBody(content)
        response.url = str(request.url)
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


class _RawBody:
    """The bits of urllib3's response azure-core's streaming reader touches."""

    def __init__(self, content: bytes) -> None:
        self._content = content
        self._read = False

    def stream(self, chunk_size: int, decode_content: bool = False) -> Any:
        if not self._read:
            self._read = True
            yield self._content

    def read(self, amt: int | None = None, decode_content: bool = False) -> bytes:
        if self._read:
            return b""
        self._read = True
        return self._content

    def close(self) -> None:
        pass
