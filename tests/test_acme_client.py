"""The ACME client's hard paths, against a scripted fake CA behind an injected transport.

The fake (``ScriptedCA``) answers RFC 8555 shapes (directory, newNonce, newOrder, authorization,
finalize) and can be told to fail a URL a number of times first. Nothing waits for real: the
client's ``sleep`` and ``clock`` are injected and record what the client asked for.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Callable

import pytest
import requests
from acme import messages
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from acmeflow.core import errors
from acmeflow.core.acme_client import (
    MAX_RATE_LIMIT_WAITS,
    AcmeSession,
    CAEndpoint,
    OrderHandle,
    _directories,
    fetch_directory,
    generate_account_key,
    translate_problem,
)
from acmeflow.core.keys import CSRFields, build_csr, generate_private_key

BASE = "https://fake-ca.test"
Reply = tuple[int, dict[str, str], object]
READ_TIMEOUT = -1  # a scripted status: the request is sent and no answer comes back
NO_ANSWER: Reply = (READ_TIMEOUT, {}, None)


class ScriptedCA(BaseAdapter):
    """A fake ACME CA at the transport level: scripted replies per (method, path)."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: dict[tuple[str, str], deque[Reply]] = defaultdict(deque)
        self.calls: list[tuple[str, str]] = []
        self.transport_options: list[dict[str, object]] = []  # proxies, verify, ... per call
        self.nonce = 0

    def script(self, method: str, path: str, *replies: Reply) -> None:
        self.scripts[(method, path)].extend(replies)

    def send(self, request: requests.PreparedRequest, **options: object) -> requests.Response:  # type: ignore[override]
        path = str(request.url).removeprefix(BASE)
        method = str(request.method)
        self.calls.append((method, path))
        self.transport_options.append(options)
        queue = self.scripts.get((method, path))
        status, headers, body = queue.popleft() if queue else self.default(method, path)
        if status == READ_TIMEOUT:
            raise requests.ReadTimeout("scripted: no answer", request=request)
        self.nonce += 1
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict({"Replay-Nonce": f"nonce{self.nonce}", **headers})
        if body is not None:
            response._content = json.dumps(body).encode()
            response.headers.setdefault(
                "Content-Type",
                "application/problem+json" if status >= 400 else "application/json",
            )
        else:
            response._content = b""
        response.url = str(request.url)
        response.request = request
        return response

    def default(self, method: str, path: str) -> Reply:
        if path == "/dir":
            return (
                200,
                {},
                {
                    "newNonce": f"{BASE}/nonce",
                    "newAccount": f"{BASE}/acct",
                    "newOrder": f"{BASE}/order",
                },
            )
        if path == "/nonce":
            return 200, {}, None
        if path == "/acct":
            return 201, {"Location": f"{BASE}/acct/1"}, {"status": "valid"}
        if path == "/order":
            return 201, {"Location": f"{BASE}/order/1"}, order_body("pending")
        if path == "/authz/1":
            return 200, {}, authz_body("valid")
        raise AssertionError(f"unscripted {method} {path}")

    def close(self) -> None:
        pass


def order_body(status: str, certificate: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "status": status,
        "identifiers": [{"type": "dns", "value": "a.example.com"}],
        "authorizations": [f"{BASE}/authz/1"],
        "finalize": f"{BASE}/order/1/finalize",
    }
    if certificate:
        body["certificate"] = certificate
    return body


def authz_body(status: str) -> dict[str, object]:
    return {
        "status": status,
        "identifier": {"type": "dns", "value": "a.example.com"},
        "challenges": [
            {
                "type": "dns-01",
                "url": f"{BASE}/chall/1",
                "token": "tok" + "e" * 40,
                "status": "pending" if status == "pending" else "valid",
            }
        ],
    }


def problem(code: str, detail: str = "scripted", status: int = 400) -> Reply:
    return status, {}, {"type": f"urn:ietf:params:acme:error:{code}", "detail": detail}


class FakeTime:
    """An injected clock: ``sleep`` advances it and records each wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def ca() -> ScriptedCA:
    _directories.clear()
    return ScriptedCA()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def session_factory(ca: ScriptedCA, fake_time: FakeTime) -> Callable[[], AcmeSession]:
    def make() -> AcmeSession:
        http = requests.Session()
        http.mount(BASE, ca)
        return AcmeSession(
            CAEndpoint(f"{BASE}/dir"),
            generate_account_key(),
            account_url=f"{BASE}/acct/1",
            sleep=fake_time.sleep,
            clock=fake_time.clock,
            http=http,
        )

    return make


NAMES = ["a.example.com"]
CSR = build_csr(generate_private_key("ec256"), CSRFields(names=NAMES))


def test_proxy_and_ca_bundle_come_from_the_environment_as_requests_reads_them(
    ca, session_factory, monkeypatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "elsewhere.test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate-bundle.pem")
    session = session_factory()
    session.place_order(NAMES)
    session.place_order(NAMES)
    posts = [o for (m, _p), o in zip(ca.calls, ca.transport_options, strict=True) if m == "POST"]
    assert len(posts) == 2
    for options in posts:
        assert options["proxies"]["https"] == "http://proxy.internal:3128"
        assert options["verify"] == "/etc/ssl/corporate-bundle.pem"


def test_no_proxy_hosts_are_reached_directly(ca, session_factory, monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,fake-ca.test")
    session_factory().place_order(NAMES)
    assert ca.transport_options[-1]["proxies"] == {}


def test_bad_nonce_is_retried_with_a_fresh_nonce(ca, session_factory) -> None:
    ca.script("POST", "/order", *[problem("badNonce")] * 5)
    session = session_factory()
    order = session.place_order(NAMES)
    assert order.url == f"{BASE}/order/1"
    assert session.net.bad_nonce_retries == 5
    assert ca.calls.count(("POST", "/order")) == 6


def test_endless_bad_nonces_give_the_catalog_nonce_error(ca, session_factory) -> None:
    ca.script("POST", "/order", *[problem("badNonce")] * 20)
    with pytest.raises(errors.CANonceError) as raised:
        session_factory().place_order(NAMES)
    assert raised.value.message.startswith("Could not get nonce from the CA server.")
    assert "badNonce" in str(raised.value.detail)


def test_rate_limit_waits_as_asked_inside_the_deadline(ca, session_factory, fake_time) -> None:
    ca.script("POST", "/order", (429, {"Retry-After": "7"}, problem("rateLimited")[2]))
    session = session_factory()
    with session.deadline(60):
        session.place_order(NAMES)
    assert fake_time.sleeps == [7.0]


def test_rate_limit_beyond_the_deadline_fails_clearly(ca, session_factory, fake_time) -> None:
    ca.script("POST", "/order", (429, {"Retry-After": "3600"}, problem("rateLimited")[2]))
    session = session_factory()
    with pytest.raises(errors.RateLimited) as raised, session.deadline(60):
        session.place_order(NAMES)
    assert raised.value.retry_after == 3600
    assert fake_time.sleeps == []


def test_transient_server_errors_are_retried(ca, session_factory, fake_time) -> None:
    ca.script("POST", "/order", (503, {}, None), problem("serverInternal", status=500))
    session_factory().place_order(NAMES)
    assert len(fake_time.sleeps) == 2


def test_permanent_problems_fail_at_once(ca, session_factory, fake_time) -> None:
    ca.script("POST", "/order", problem("rejectedIdentifier", 'Cannot issue for "a"'))
    with pytest.raises(errors.CertificateInvalidDomain):
        session_factory().place_order(NAMES)
    assert ca.calls.count(("POST", "/order")) == 1
    assert fake_time.sleeps == []


def test_polling_honours_retry_after(ca, session_factory, fake_time) -> None:
    ca.script(
        "POST",
        "/authz/1",
        (200, {}, authz_body("pending")),  # dns_challenges
        (200, {"Retry-After": "3"}, authz_body("pending")),
        (200, {}, authz_body("valid")),
    )
    ca.script(
        "POST",
        "/chall/1",
        (
            200,
            {"Link": f'<{BASE}/authz/1>;rel="up"'},
            {
                "type": "dns-01",
                "url": f"{BASE}/chall/1",
                "status": "processing",
                "token": "tok" + "e" * 40,
            },
        ),
    )
    session = session_factory()
    order = OrderHandle(
        f"{BASE}/order/1",
        f"{BASE}/order/1/finalize",
        (f"{BASE}/authz/1",),
        ("a.example.com",),
        "pending",
    )
    challenges = session.dns_challenges(order)
    assert [c.record_name for c in challenges] == ["_acme-challenge.a.example.com"]
    session.answer_challenges(challenges, timeout=30)
    assert fake_time.sleeps == [3.0]


def test_polling_gives_up_at_the_deadline(ca, session_factory, fake_time) -> None:
    ca.script("POST", "/authz/1", *[(200, {"Retry-After": "10"}, authz_body("pending"))] * 50)
    ca.script("POST", "/chall/1", (200, {"Link": f'<{BASE}/authz/1>;rel="up"'}, {}))
    session = session_factory()
    challenge = session.dns_challenges(
        OrderHandle(f"{BASE}/order/1", "", (f"{BASE}/authz/1",), ("a.example.com",), "")
    )
    with pytest.raises(errors.ValidationTimeout) as raised:
        session.answer_challenges(challenge, timeout=25)
    assert sum(fake_time.sleeps) <= 25
    assert "a.example.com: pending" in str(raised.value.detail)
    assert not raised.value.retryable


@pytest.mark.parametrize(
    ("code", "detail", "stage", "expected"),
    [
        (
            "rejectedIdentifier",
            'Cannot issue for "x": Domain name needs at least one dot',
            "order",
            errors.DomainNeedsDot,
        ),
        ("rejectedIdentifier", "forbidden by policy", "order", errors.CertificateInvalidDomain),
        ("malformed", "bad name", "order", errors.InvalidDomainName),
        ("badSignatureAlgorithm", "RS1 not allowed", "account", errors.SignatureMismatch),
        ("malformed", "JWS verification error", "order", errors.SignatureMismatch),
        ("unauthorized", "EAB binding invalid", "account", errors.SignatureMismatch),
        ("badNonce", "stale", "order", errors.CANonceError),
        ("invalidContact", "bad mail", "account", errors.InvalidContact),
        ("externalAccountRequired", "EAB needed", "account", errors.CADirectoryError),
        ("rateLimited", "too many", "order", errors.RateLimited),
        ("badCSR", "weak key", "finalize", errors.FinalizeError),
        ("unauthorized", "no TXT", "challenge", errors.ChallengeFailed),
    ],
)
def test_problem_translation(code: str, detail: str, stage: str, expected: type) -> None:
    err = translate_problem(
        messages.Error(typ=f"urn:ietf:params:acme:error:{code}", detail=detail), stage
    )
    assert type(err) is expected
    assert code in str(err.detail)


def test_domain_needs_dot_names_the_name() -> None:
    err = translate_problem(
        messages.Error(
            typ="urn:ietf:params:acme:error:rejectedIdentifier",
            detail='Cannot issue for "testdomain": Domain name needs at least one dot',
        ),
        "order",
    )
    assert err.message == (
        'Invalid identifiers requested :: Cannot issue for "testdomain": '
        "Domain name needs at least one dot"
    )


def test_rate_limit_with_retry_after_zero_stops_after_a_few_waits(
    ca, session_factory, fake_time
) -> None:
    ca.script("POST", "/order", *[(429, {"Retry-After": "0"}, problem("rateLimited")[2])] * 50)
    with pytest.raises(errors.RateLimited) as raised:
        session_factory().place_order(NAMES)
    assert ca.calls.count(("POST", "/order")) == MAX_RATE_LIMIT_WAITS + 1
    assert all(wait > 0 for wait in fake_time.sleeps)  # backoff, not back-to-back POSTs
    assert "still rate limited" in str(raised.value.detail)
    assert not raised.value.retryable


def test_rate_limit_wait_that_does_not_fit_the_order_deadline_fails_at_once(
    ca, session_factory, fake_time
) -> None:
    ca.script("POST", "/order", *[(429, {"Retry-After": "299"}, problem("rateLimited")[2])] * 100)
    session = session_factory()
    with pytest.raises(errors.RateLimited) as raised, session.deadline(120):
        session.place_order(NAMES)
    assert fake_time.sleeps == []
    assert raised.value.retry_after == 299
    assert "does not fit" in str(raised.value.detail)


def test_new_order_without_an_answer_is_not_resent(ca, session_factory) -> None:
    ca.script("POST", "/order", NO_ANSWER)
    with pytest.raises(errors.OrderStateUnknown) as raised:
        session_factory().place_order(NAMES)
    assert ca.calls.count(("POST", "/order")) == 1
    assert not raised.value.retryable


def test_finalize_without_an_answer_follows_the_order_state(ca, session_factory) -> None:
    cert_url = f"{BASE}/cert/1"
    ca.script("POST", "/order/1/finalize", NO_ANSWER)
    ca.script(
        "POST",
        "/order/1",
        (200, {}, order_body("processing")),
        (200, {}, order_body("valid", certificate=cert_url)),
    )
    ca.script("POST", "/cert/1", (200, {}, None))
    session = session_factory()
    order = OrderHandle(
        f"{BASE}/order/1", f"{BASE}/order/1/finalize", (), ("a.example.com",), "ready"
    )
    with pytest.raises(errors.FinalizeError, match="Unable to process finalize"):
        session.finalize(order, CSR, timeout=30)  # the empty chain: only the path matters here
    assert ca.calls.count(("POST", "/order/1/finalize")) == 1
    assert ca.calls.count(("POST", "/order/1")) == 2
    assert ("POST", "/cert/1") in ca.calls


def test_finalize_still_processing_at_the_deadline_says_so(ca, session_factory, fake_time) -> None:
    ca.script("POST", "/order/1/finalize", (200, {}, order_body("processing")))
    ca.script("POST", "/order/1", *[(200, {"Retry-After": "5"}, order_body("processing"))] * 20)
    order = OrderHandle(
        f"{BASE}/order/1", f"{BASE}/order/1/finalize", (), ("a.example.com",), "ready"
    )
    with pytest.raises(errors.FinalizeTimeout) as raised:
        session_factory().finalize(order, CSR, timeout=20)
    assert "is processing" in str(raised.value.detail)
    assert sum(fake_time.sleeps) <= 20


def test_a_directory_that_is_not_a_json_object_is_the_catalog_error(ca) -> None:
    ca.script("GET", "/dir", (200, {}, True))
    http = requests.Session()
    http.mount(BASE, ca)
    with pytest.raises(errors.CADirectoryError) as raised:
        fetch_directory(CAEndpoint(f"{BASE}/dir"), http=http)
    assert "JSON bool" in str(raised.value.detail)


@pytest.mark.parametrize(
    ("hmac_key", "cause"),
    [
        ("not base64url!", "not valid base64url"),
        ("   ", "is empty"),
    ],
)
def test_each_eab_key_problem_is_reported_as_what_it_is(ca, hmac_key, cause) -> None:
    http = requests.Session()
    http.mount(BASE, ca)
    session = AcmeSession(
        CAEndpoint(f"{BASE}/dir", eab_kid="kid-1", eab_hmac_key=hmac_key),
        generate_account_key(),
        http=http,
    )
    with pytest.raises(errors.SignatureMismatch) as raised:
        session.register("admin@example.com")
    assert cause in str(raised.value.detail)


def test_server_errors_until_the_deadline_are_final(ca, session_factory, fake_time) -> None:
    ca.script("POST", "/order", *[(503, {"Retry-After": "2"}, None)] * 10)
    session = session_factory()
    with pytest.raises(errors.CAUnavailable) as raised, session.deadline(3):
        session.place_order(NAMES)
    assert fake_time.sleeps == [2.0]
    assert not raised.value.retryable  # no time is left for a Prefect retry either
