"""ACME DNS adapter: the acme-dns ``/update`` call, its errors, and its documented no-op cleanup."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from acmeflow.core.errors import TXTRecordError
from acmeflow.providers.dns.registry import build_provider, get_provider_type
from tests.dns_conformance import VALUE_APEX

PASSWORD = "htB9mR9DYgcu9bX_afHF62erXaH2TS7bg9KW3F7Z"
SETTINGS = {
    "server": "https://auth.example.org",
    "username": "eabcdb41-d89f-4580-826f-3e62e9755ef2",
    "subdomain": "d420c923-bbd7-4056-ab64-c3ca54c9b3cf",
}


class AcmeDNSModel(BaseAdapter):
    """acme-dns's documented ``POST /update`` (github.com/joohoi/acme-dns#update-txt-record)."""

    def __init__(self) -> None:
        super().__init__()
        self.txt: list[str] = []
        self.calls: list[tuple[str, str, dict[str, str], Any]] = []

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:  # type: ignore[override]
        raw = request.body
        body = json.loads(raw) if isinstance(raw, str | bytes) and raw else {}
        headers = {k: str(v) for k, v in request.headers.items()}
        self.calls.append((str(request.method), str(request.url), headers, body))
        if (
            headers.get("X-Api-User") != SETTINGS["username"]
            or headers.get("X-Api-Key") != PASSWORD
        ) or body.get("subdomain") != SETTINGS["subdomain"]:
            status, payload = 401, {"error": "forbidden"}
        elif len(body.get("txt", "")) != 43:
            status, payload = 400, {"error": "bad_txt"}
        else:
            self.txt = [*self.txt, body["txt"]][-2:]  # acme-dns keeps the two latest values
            status, payload = 200, {"txt": body["txt"]}
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        response._content = json.dumps(payload).encode()
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        pass


@pytest.fixture
def acmedns(monkeypatch: pytest.MonkeyPatch) -> AcmeDNSModel:
    model = AcmeDNSModel()
    monkeypatch.setattr(requests.Session, "get_adapter", lambda self, url: model)
    return model


def test_present_posts_the_value_with_the_registration(acmedns: AcmeDNSModel) -> None:
    provider = build_provider("ACME DNS", SETTINGS, {"password": PASSWORD})
    provider.present("_acme-challenge.example.com", VALUE_APEX)
    method, url, headers, body = acmedns.calls[-1]
    assert (method, url) == ("POST", "https://auth.example.org/update")
    assert headers["X-Api-User"] == SETTINGS["username"]
    assert body == {"subdomain": SETTINGS["subdomain"], "txt": VALUE_APEX}
    assert acmedns.txt == [VALUE_APEX]


def test_cleanup_is_a_documented_no_op(acmedns: AcmeDNSModel) -> None:
    provider = build_provider("acme-dns", SETTINGS, {"password": PASSWORD})
    provider.present("_acme-challenge.example.com", VALUE_APEX)
    provider.cleanup("_acme-challenge.example.com", VALUE_APEX)
    assert len(acmedns.calls) == 1
    assert "no-op" in get_provider_type("ACME DNS").reason


def test_refusal_is_masked(acmedns: AcmeDNSModel) -> None:
    provider = build_provider("acmedns", SETTINGS, {"password": "wrong-password-123456"})
    with pytest.raises(TXTRecordError) as info:
        provider.present("_acme-challenge.example.com", VALUE_APEX)
    assert info.value.detail is not None
    assert info.value.detail.startswith("acmedns: adding TXT _acme-challenge.example.com: HTTP 401")
    assert "wrong-password-123456" not in str(info.value)
    assert "wrong-password-123456" not in repr(provider)
