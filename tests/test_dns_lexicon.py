"""Lexicon-backed providers (Cloudflare, DigitalOcean, deSEC) replayed from recorded HTTP.

Each ``tests/recordings/<provider>.json`` holds, per test, the exact HTTP exchanges in the
provider's documented API shapes. The tests run offline: a ``requests`` transport adapter
serves the recorded responses in order and fails the test when a request differs from the
recording (method, path, query, JSON body, Authorization header) or when a recorded request
is never made.

Re-record with ``ACMEFLOW_RECORD_LEXICON=1``: the same tests then run against the small API
models below (written from each provider's API reference) and rewrite the recordings.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from acmeflow.core.errors import ConfigError, TXTRecordError
from acmeflow.providers.dns.lexicon import LexiconProvider, guess_zone
from acmeflow.providers.dns.registry import build_provider
from tests.dns_conformance import VALUE_APEX, VALUE_WILDCARD, DNSProviderConformance

RECORDINGS = Path(__file__).parent / "recordings"
RECORD = os.environ.get("ACMEFLOW_RECORD_LEXICON") == "1"

# Tokens used in the recordings (not real credentials).
CLOUDFLARE_TOKEN = "cf-test-token-3f9a1c"
CLOUDFLARE_ZONE_ID = "023e105f4ecef8ad9ca31a8372d0c353"
DO_TOKEN = "dop_v1_test_b7e2d0"
DESEC_TOKEN = "desec-test-token-4b1d"
BROKEN_TOKEN = "revoked-token-must-not-leak-9c8d"

Handler = Callable[[str, str, dict[str, str], Any, CaseInsensitiveDict[str]], tuple[int, Any]]


# --- replay / record transport --------------------------------------------------------------


def _json_body(request: requests.PreparedRequest) -> Any:
    body = request.body
    if not body or not isinstance(body, str | bytes):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode() if isinstance(body, bytes) else body


def _response(request: requests.PreparedRequest, status: int, payload: Any) -> requests.Response:
    content = b"" if payload is None else json.dumps(payload).encode()
    response = requests.Response()
    response.status_code = status
    response.reason = {200: "OK", 201: "Created", 204: "No Content", 401: "Unauthorized"}.get(
        status, "Forbidden" if status == 403 else "Error"
    )
    response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
    response._content = content
    response.url = str(request.url)
    response.request = request
    response.encoding = "utf-8"
    return response


def _describe(request: requests.PreparedRequest) -> dict[str, Any]:
    parts = urlsplit(str(request.url))
    described: dict[str, Any] = {
        "method": request.method,
        "url": f"{parts.scheme}://{parts.netloc}{parts.path}",
        "query": dict(parse_qsl(parts.query)),
    }
    body = _json_body(request)
    if body is not None:
        described["json"] = body
    auth = request.headers.get("Authorization")
    if auth:
        described["authorization"] = auth
    return described


class ReplayAdapter(BaseAdapter):
    """Serves recorded exchanges in order; any deviation fails the test."""

    def __init__(self, interactions: list[dict[str, Any]]) -> None:
        super().__init__()
        self.pending = deque(interactions)

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:  # type: ignore[override]
        actual = _describe(request)
        if not self.pending:
            raise AssertionError(f"unexpected request (recording exhausted): {actual}")
        expected = self.pending.popleft()
        assert actual == expected["request"], (
            f"request differs from the recording:\n actual:   {actual}\n"
            f" recorded: {expected['request']}"
        )
        return _response(request, expected["response"]["status"], expected["response"]["json"])

    def close(self) -> None:
        pass


class RecordAdapter(BaseAdapter):
    """Serves from an API model and keeps every exchange (record mode)."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.interactions: list[dict[str, Any]] = []

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:  # type: ignore[override]
        described = _describe(request)
        parts = urlsplit(str(request.url))
        status, payload = self.handler(
            str(request.method),
            parts.path,
            described["query"],
            _json_body(request),
            CaseInsensitiveDict({k: str(v) for k, v in request.headers.items()}),
        )
        payload = json.loads(json.dumps(payload))  # a snapshot: the model keeps mutating
        self.interactions.append(
            {"request": described, "response": {"status": status, "json": payload}}
        )
        return _response(request, status, payload)

    def close(self) -> None:
        pass


# --- API models (record mode only), from the providers' API references ----------------------


class CloudflareModel:
    """Cloudflare API v4: zones and DNS records (developers.cloudflare.com/api)."""

    docs = "https://developers.cloudflare.com/api/resources/dns/subresources/records/"

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.ids = itertools.count(1)

    def __call__(self, method, path, query, body, headers):  # type: ignore[no-untyped-def]
        if headers.get("Authorization") != f"Bearer {CLOUDFLARE_TOKEN}":
            return 403, {
                "success": False,
                "errors": [{"code": 10000, "message": "Authentication error"}],
                "messages": [],
                "result": None,
            }
        base = f"/client/v4/zones/{CLOUDFLARE_ZONE_ID}"
        if method == "GET" and path == base:
            return 200, self._ok(
                {"id": CLOUDFLARE_ZONE_ID, "name": "example.com", "status": "active"}
            )
        if method == "GET" and path == base + "/dns_records":
            found = [
                r
                for r in self.records.values()
                if r["type"] == query.get("type", r["type"])
                and r["name"] == query.get("name", r["name"])
                and r["content"] == query.get("content", r["content"])
            ]
            result = self._ok(found)
            result["result_info"] = {
                "page": 1,
                "per_page": int(query.get("per_page", 100)),
                "count": len(found),
                "total_count": len(found),
                "total_pages": 1,
            }
            return 200, result
        if method == "POST" and path == base + "/dns_records":
            if any(
                r["name"] == body["name"] and r["content"] == body["content"]
                for r in self.records.values()
            ):
                return 400, {
                    "success": False,
                    "errors": [{"code": 81058, "message": "An identical record already exists."}],
                    "messages": [],
                    "result": None,
                }
            rid = f"372e67954025e0ba6aaa6d586b9e0b{next(self.ids):02d}"
            record = {
                "id": rid,
                "zone_id": CLOUDFLARE_ZONE_ID,
                "zone_name": "example.com",
                "name": body["name"],
                "type": body["type"],
                "content": body["content"],
                "proxiable": False,
                "proxied": False,
                "ttl": int(body.get("ttl", 1)),
                "created_on": "2024-01-01T05:20:00.12345Z",
                "modified_on": "2024-01-01T05:20:00.12345Z",
            }
            self.records[rid] = record
            return 200, self._ok(record)
        if method == "DELETE" and path.startswith(base + "/dns_records/"):
            rid = path.rsplit("/", 1)[-1]
            if self.records.pop(rid, None) is None:
                return 404, {
                    "success": False,
                    "errors": [{"code": 81044, "message": "Record does not exist."}],
                    "messages": [],
                    "result": None,
                }
            return 200, self._ok({"id": rid})
        return 404, {"success": False, "errors": [{"code": 7003, "message": "No route"}]}

    @staticmethod
    def _ok(result: Any) -> dict[str, Any]:
        return {"success": True, "errors": [], "messages": [], "result": result}


class DigitalOceanModel:
    """DigitalOcean API v2: domains and domain records (docs.digitalocean.com/reference/api)."""

    docs = "https://docs.digitalocean.com/reference/api/digitalocean/#tag/Domain-Records"

    def __init__(self) -> None:
        self.records: dict[int, dict[str, Any]] = {
            3352892: {"id": 3352892, "type": "NS", "name": "@", "data": "ns1.digitalocean.com",
                      "priority": None, "port": None, "ttl": 1800, "weight": None,
                      "flags": None, "tag": None},
            3352896: {"id": 3352896, "type": "A", "name": "@", "data": "203.0.113.10",
                      "priority": None, "port": None, "ttl": 1800, "weight": None,
                      "flags": None, "tag": None},
        }  # fmt: skip
        self.ids = itertools.count(28448429)

    def __call__(self, method, path, query, body, headers):  # type: ignore[no-untyped-def]
        if headers.get("Authorization") != f"Bearer {DO_TOKEN}":
            return 401, {"id": "Unauthorized", "message": "Unable to authenticate you"}
        if method == "GET" and path == "/v2/domains/example.com":
            return 200, {"domain": {"name": "example.com", "ttl": 1800, "zone_file": None}}
        if method == "GET" and path == "/v2/domains/example.com/records":
            return 200, {
                "domain_records": list(self.records.values()),
                "links": {},
                "meta": {"total": len(self.records)},
            }
        if method == "POST" and path == "/v2/domains/example.com/records":
            rid = next(self.ids)
            record = {
                "id": rid,
                "type": body["type"],
                "name": body["name"],
                "data": body["data"],
                "priority": None,
                "port": None,
                "ttl": int(body["ttl"]),
                "weight": None,
                "flags": None,
                "tag": None,
            }
            self.records[rid] = record
            return 201, {"domain_record": record}
        if method == "DELETE" and path.startswith("/v2/domains/example.com/records/"):
            rid = int(path.rsplit("/", 1)[-1])
            if self.records.pop(rid, None) is None:
                return 404, {
                    "id": "not_found",
                    "message": "The resource you requested could not be found.",
                }
            return 204, None
        return 404, {"id": "not_found", "message": "The resource you requested could not be found."}


class DesecModel:
    """deSEC API v1: domains and RRsets (desec.readthedocs.io/en/latest/dns/rrsets.html)."""

    docs = "https://desec.readthedocs.io/en/latest/dns/rrsets.html"

    def __init__(self) -> None:
        self.rrsets: dict[tuple[str, str], dict[str, Any]] = {}

    def __call__(self, method, path, query, body, headers):  # type: ignore[no-untyped-def]
        if headers.get("Authorization") != f"Token {DESEC_TOKEN}":
            return 401, {"detail": "Invalid token."}
        domain = "/api/v1/domains/example.com"
        if method == "GET" and path == domain + "/":
            return 200, {
                "created": "2024-01-01T12:00:00.000000Z",
                "published": "2024-01-01T12:00:00.000000Z",
                "name": "example.com",
                "minimum_ttl": 3600,
                "touched": "2024-01-01T12:00:00.000000Z",
            }
        if method == "GET" and path == domain + "/rrsets//":
            found = [
                r
                for (sub, rtype), r in sorted(self.rrsets.items())
                if sub == query.get("subname", sub) and rtype == query.get("type", rtype)
            ]
            return 200, found
        if method == "POST" and path == domain + "/rrsets//":
            key = (body["subname"], body["type"])
            if key in self.rrsets:
                return 400, {
                    "non_field_errors": [
                        "Another RRset with the same subdomain and type exists for this domain."
                    ]
                }
            ttl = int(body.get("ttl", 3600))
            if ttl < 3600:
                return 400, {"ttl": ["Ensure this value is greater than or equal to 3600."]}
            self.rrsets[key] = self._rrset(body["subname"], body["type"], body["records"], ttl)
            return 201, self.rrsets[key]
        if method == "PATCH" and path.startswith(domain + "/rrsets/"):
            sub, rtype = path[len(domain + "/rrsets/") :].strip("/").split("/")
            key = (sub, rtype)
            if key not in self.rrsets:
                return 404, {"detail": "Not found."}
            if not body.get("records"):
                del self.rrsets[key]
                return 204, None
            self.rrsets[key]["records"] = list(body["records"])
            return 200, self.rrsets[key]
        return 404, {"detail": "Not found."}

    @staticmethod
    def _rrset(sub: str, rtype: str, records: list[str], ttl: int) -> dict[str, Any]:
        return {
            "created": "2024-01-01T12:00:00.000000Z",
            "domain": "example.com",
            "subname": sub,
            "name": f"{sub}.example.com." if sub else "example.com.",
            "type": rtype,
            "records": list(records),
            "ttl": ttl,
            "touched": "2024-01-01T12:00:00.000000Z",
        }


# --- fixtures --------------------------------------------------------------------------------


_RECORDED: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module", autouse=True)
def _write_recordings() -> Iterator[None]:
    yield
    if RECORD:
        for provider, data in _RECORDED.items():
            path = RECORDINGS / f"{provider}.json"
            path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")


@pytest.fixture
def http(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, Any], None]]:
    """``http(provider, model)``: route every ``requests`` call to the recording (or model)."""
    adapters: list[Any] = []

    def use(provider: str, model: Any) -> None:
        test = request.node.originalname
        if RECORD:
            adapter: Any = RecordAdapter(model)
            _RECORDED.setdefault(provider, {"provider": provider, "docs": model.docs, "tests": {}})[
                "tests"
            ][test] = adapter.interactions
        else:
            data = json.loads((RECORDINGS / f"{provider}.json").read_text())
            adapter = ReplayAdapter(data["tests"][test])
        adapters.append(adapter)
        monkeypatch.setattr(requests.Session, "get_adapter", lambda self, url: adapter)

    yield use
    for adapter in adapters:
        if isinstance(adapter, ReplayAdapter):
            assert not adapter.pending, f"recorded requests never made: {list(adapter.pending)}"


class TestCloudflare(DNSProviderConformance):
    @pytest.fixture
    def zone(self) -> str:
        return "example.com"

    @pytest.fixture
    def provider(self, http: Callable[[str, Any], None]) -> LexiconProvider:
        http("cloudflare", CloudflareModel())
        provider = build_provider(
            "CloudFlare", {"zone_id": CLOUDFLARE_ZONE_ID}, {"auth_token": CLOUDFLARE_TOKEN}
        )
        assert isinstance(provider, LexiconProvider)
        return provider

    @pytest.fixture
    def broken_secret(self) -> str:
        return BROKEN_TOKEN

    @pytest.fixture
    def broken_provider(self, http: Callable[[str, Any], None]) -> LexiconProvider:
        http("cloudflare", CloudflareModel())
        provider = build_provider(
            "cloudflare", {"zone_id": CLOUDFLARE_ZONE_ID}, {"auth_token": BROKEN_TOKEN}
        )
        assert isinstance(provider, LexiconProvider)
        return provider


class TestDigitalOcean(DNSProviderConformance):
    @pytest.fixture
    def zone(self) -> str:
        return "example.com"

    @pytest.fixture
    def provider(self, http: Callable[[str, Any], None]) -> LexiconProvider:
        http("digitalocean", DigitalOceanModel())
        provider = build_provider("DigitalOcean", {}, {"auth_token": DO_TOKEN})
        assert isinstance(provider, LexiconProvider)
        return provider

    @pytest.fixture
    def broken_secret(self) -> str:
        return BROKEN_TOKEN

    @pytest.fixture
    def broken_provider(self, http: Callable[[str, Any], None]) -> LexiconProvider:
        http("digitalocean", DigitalOceanModel())
        provider = build_provider("digitalocean", {}, {"auth_token": BROKEN_TOKEN})
        assert isinstance(provider, LexiconProvider)
        return provider


class TestDesec(DNSProviderConformance):
    @pytest.fixture
    def zone(self) -> str:
        return "example.com"

    @pytest.fixture
    def provider(self, http: Callable[[str, Any], None]) -> LexiconProvider:
        http("desec", DesecModel())
        provider = build_provider("deSEC.io", {}, {"auth_token": DESEC_TOKEN})
        assert isinstance(provider, LexiconProvider)
        return provider

    @pytest.fixture
    def broken_secret(self) -> str:
        return BROKEN_TOKEN

    @pytest.fixture
    def broken_provider(self, http: Callable[[str, Any], None]) -> LexiconProvider:
        http("desec", DesecModel())
        provider = build_provider("desec", {}, {"auth_token": BROKEN_TOKEN})
        assert isinstance(provider, LexiconProvider)
        return provider


def test_records_are_created_with_our_ttl_and_full_name(http: Callable[[str, Any], None]) -> None:
    http("cloudflare", CloudflareModel())
    provider = build_provider(
        "cloudflare",
        {"zone_id": CLOUDFLARE_ZONE_ID, "ttl": "300"},
        {"auth_token": CLOUDFLARE_TOKEN},
    )
    provider.present("_acme-challenge.www.example.com", VALUE_WILDCARD)
    data = json.loads((RECORDINGS / "cloudflare.json").read_text())
    if not RECORD:
        posts = [
            i["request"]
            for i in data["tests"]["test_records_are_created_with_our_ttl_and_full_name"]
            if i["request"]["method"] == "POST"
        ]
        assert posts[0]["json"]["name"] == "_acme-challenge.www.example.com"
        assert posts[0]["json"]["ttl"] == 300


def test_http_error_detail_names_the_status_and_masks_the_token(
    http: Callable[[str, Any], None],
) -> None:
    http("digitalocean", DigitalOceanModel())
    provider = build_provider("digitalocean", {}, {"auth_token": BROKEN_TOKEN})
    with pytest.raises(TXTRecordError) as info:
        provider.present("_acme-challenge.example.com", VALUE_APEX)
    detail = info.value.detail or ""
    assert detail.startswith("digitalocean: adding TXT _acme-challenge.example.com: ")
    assert "HTTP 401" in detail and "Unable to authenticate you" in detail
    assert BROKEN_TOKEN not in detail


def test_zone_is_guessed_offline_from_the_public_suffix_list() -> None:
    assert guess_zone("_acme-challenge.www.example.co.uk") == "example.co.uk"
    assert guess_zone("_acme-challenge.example.com") == "example.com"


def test_configured_zone_must_contain_the_name() -> None:
    provider = build_provider("digitalocean", {"zone": "example.org"}, {"auth_token": DO_TOKEN})
    with pytest.raises(TXTRecordError) as info:
        provider.present("_acme-challenge.example.com", VALUE_APEX)
    assert info.value.detail == (
        "digitalocean: _acme-challenge.example.com is not inside the configured zone example.org"
    )


def test_one_of_alternative_credentials_is_required() -> None:
    with pytest.raises(ConfigError) as info:
        build_provider("deSEC.io", {}, {})
    assert info.value.detail == "desec: missing field: set one of 'auth_token', 'auth_username'"
