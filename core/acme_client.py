"""ACME (RFC 8555) client on certbot's `acme` package: directory, nonces, accounts, orders.

What this adds to ``acme.client``: ``badNonce`` retried with a fresh nonce several times (the
library retries once), transient network and 5xx failures retried with backoff, ``rateLimited``
honoured through ``Retry-After`` up to a deadline, fast polling that honours ``Retry-After``
instead of the library's fixed one-second sleeps, ``replaces`` on new orders (RFC 9773), and
every failure translated into the error catalog (:mod:`core.errors`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import logging
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import josepy as jose
import requests
from acme import challenges, messages
from acme import client as acme_client
from acme import errors as acme_errors
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from acmeflow.core import errors
from acmeflow.core.deadline import Deadline

log = logging.getLogger(__name__)

USER_AGENT = "acmeflow/0.1 (+acme-python)"
MAX_BAD_NONCE_RETRIES = 10
MAX_TRANSIENT_RETRIES = 4
MAX_RATE_LIMIT_WAITS = 5  # rateLimited answers waited out per request, however short
DEFAULT_BUDGET = 300.0  # seconds a call may spend outside an order's deadline
ERROR_PREFIX = "urn:ietf:params:acme:error:"
BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


@dataclass(frozen=True)
class CAEndpoint:
    """How to reach one ACME CA (no secrets beyond what registration needs)."""

    directory_url: str
    ca_bundle: str | None = None  # path of a PEM bundle to verify the CA's TLS with
    eab_kid: str | None = None
    eab_hmac_key: str | None = field(default=None, repr=False)
    profile: str | None = None
    preferred_chain: str | None = None
    timeout: float = 30.0

    @property
    def verify(self) -> bool | str:
        """The ``verify`` argument of requests: the bundle path or the system store."""
        return self.ca_bundle or True


@dataclass(frozen=True)
class Account:
    """A registered ACME account: its URL and private key (PEM, never logged)."""

    url: str
    key_pem: bytes = field(repr=False)
    contact: str = ""


# --- error translation -----------------------------------------------------------------------


def problem_text(problem: messages.Error) -> str:
    """Render an ACME problem document (with subproblems) as one readable detail."""
    code = problem.typ.removeprefix(ERROR_PREFIX) if problem.typ else "about:blank"
    text = f"{code}: {problem.detail or problem.title or ''}".strip()
    for sub in problem.subproblems or ():
        ident = f" ({sub.identifier.value})" if sub.identifier else ""
        text += f"\n  - {sub.typ.removeprefix(ERROR_PREFIX)}{ident}: {sub.detail or ''}"
    return text


def translate_problem(problem: messages.Error, stage: str) -> errors.AcmeflowError:
    """Map an ACME problem document to the catalog error for the stage it happened in.

    ``stage`` is one of ``directory``, ``account``, ``order``, ``challenge``, ``finalize``.
    """
    code = (problem.typ or "").removeprefix(ERROR_PREFIX)
    detail = problem_text(problem)
    text = (problem.detail or "").lower()
    if code in ("badSignatureAlgorithm", "badPublicKey") or (
        code in ("malformed", "unauthorized") and ("jws" in text or "signature" in text)
    ):
        return errors.SignatureMismatch(detail=detail)
    if code == "rejectedIdentifier" or (code == "malformed" and stage == "order"):
        if "at least one dot" in text or "needs at least one dot" in text:
            name = problem.identifier.value if problem.identifier else _quoted(problem.detail)
            return errors.DomainNeedsDot(name or "?", detail=detail)
        if code == "rejectedIdentifier":
            return errors.CertificateInvalidDomain(detail=detail)
        return errors.InvalidDomainName(detail=detail)
    if code == "unauthorized" and stage == "account":
        return errors.SignatureMismatch(detail=detail)
    if code == "badNonce":
        return errors.CANonceError(detail=detail)
    if code in ("invalidContact", "unsupportedContact"):
        return errors.InvalidContact(detail=detail)
    if code == "externalAccountRequired":
        return errors.CADirectoryError(
            detail=detail + "\nThe CA requires External Account Binding: set the EAB key id "
            "and HMAC key of the CA vendor (--eab-kid, --eab-hmac-key)."
        )
    if code == "rateLimited":
        return errors.RateLimited(detail=detail)
    if code == "serverInternal":
        return errors.CAUnavailable(detail=detail)
    if stage == "finalize":
        return errors.FinalizeError(detail=detail)
    if stage == "challenge":
        return errors.ChallengeFailed(detail=detail)
    if stage == "account":
        return errors.CADirectoryError(detail=detail)
    return errors.OrderFailed(detail=detail)


def _quoted(text: str | None) -> str | None:
    if text and '"' in text:
        parts = text.split('"')
        return parts[1] if len(parts) > 2 else None
    return None


def _retry_after_seconds(response: requests.Response | None, default: float) -> float:
    """Seconds the server asked us to wait (``Retry-After``: seconds or an HTTP date)."""
    if response is None:
        return default
    value = response.headers.get("Retry-After")
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


# --- network ---------------------------------------------------------------------------------


class _Network(acme_client.ClientNetwork):
    """``ClientNetwork`` with RFC 8555 6.5 nonce handling, transient retries and rate limits.

    Not shared between threads: each :class:`AcmeSession` owns one.
    """

    def __init__(
        self,
        *args: Any,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        # requests re-reads the whole environment (proxies, CA bundle) on every request when
        # ``trust_env`` is on: a fifth of a bulk renewal's CPU. Read it once instead, the same
        # way (``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, ``*_PROXY``/``NO_PROXY`` per host).
        self.session.trust_env = False
        self._proxies: dict[str, dict[str, str]] = {}
        self.deadline: Deadline | None = None  # set by AcmeSession.within() / deadline()
        self.last_response: requests.Response | None = None
        self.bad_nonce_retries = 0
        self._sleep = sleep
        self._clock = clock

    def _current(self) -> Deadline:
        return self.deadline or Deadline.after(DEFAULT_BUDGET, clock=self._clock)

    def _proxies_for(self, url: str) -> dict[str, str]:
        parts = urllib.parse.urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._proxies:
            self._proxies[origin] = requests.utils.get_environ_proxies(url)
        return self._proxies[origin]

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("proxies", self._proxies_for(url))
        if self.deadline is not None:
            # no request outlives the deadline: a frozen CA costs the time left, not more
            left = self.deadline.remaining()
            if left <= 0:
                raise errors.CANotAnswering(
                    detail=f"{method} {url}: no time left of the {self.deadline.budget:.0f} s"
                )
            kwargs["timeout"] = min(kwargs.get("timeout", self._default_timeout), left)
        response = super()._send_request(method, url, *args, **kwargs)
        self.last_response = response
        if not response.ok and self.REPLAY_NONCE_HEADER in response.headers:
            # RFC 8555 6.5: an error response carries a fresh nonce; keep it for the retry.
            with suppress(acme_errors.BadNonce):
                self._add_nonce(response)
        return response

    def post(self, *args: Any, resend_on_timeout: bool = True, **kwargs: Any) -> requests.Response:
        """POST with retries; ``resend_on_timeout=False`` for requests that must not be sent
        twice blindly (``newOrder``, ``finalize``): a read timeout is raised to the caller."""
        bad_nonces = 0
        transient = 0
        rate_limited = 0
        while True:
            try:
                return self._post_once(*args, **kwargs)
            except messages.Error as problem:
                code = problem.code
                if code == "badNonce" and bad_nonces < MAX_BAD_NONCE_RETRIES:
                    bad_nonces += 1
                    self.bad_nonce_retries += 1
                    continue
                if code == "rateLimited":
                    rate_limited += 1
                    asked = _retry_after_seconds(self.last_response, 5.0)
                    wait = max(asked, _backoff_seconds(rate_limited))
                    left = self._current().remaining()
                    if rate_limited > MAX_RATE_LIMIT_WAITS or wait > left:
                        why = (
                            f"still rate limited after {MAX_RATE_LIMIT_WAITS} waits"
                            if rate_limited > MAX_RATE_LIMIT_WAITS
                            else f"Retry-After {asked:.0f} s does not fit in the {left:.0f} s left"
                        )
                        raise errors.RateLimited(
                            detail=f"{problem_text(problem)}\n{why}", retry_after=asked
                        ) from None
                    log.info("CA rate limit: waiting %.1f s as asked (Retry-After)", wait)
                    self._sleep(wait)
                    continue
                if code == "serverInternal" and transient < MAX_TRANSIENT_RETRIES:
                    transient += 1
                    self._backoff(transient)
                    continue
                raise
            except requests.ReadTimeout as exc:
                # the CA may have acted on the POST: only idempotent requests are resent
                sent_post = exc.request is not None and exc.request.method == "POST"
                if (sent_post and not resend_on_timeout) or transient >= MAX_TRANSIENT_RETRIES:
                    raise
                transient += 1
                self._backoff(transient, timed_out=True)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if transient >= MAX_TRANSIENT_RETRIES:
                    raise
                transient += 1
                self._backoff(transient, timed_out=isinstance(exc, requests.Timeout))
            except acme_errors.ClientError as exc:
                response = exc.args[0] if exc.args else None
                if isinstance(response, tuple):
                    response = response[0]
                status = getattr(response, "status_code", 0)
                if status >= 500 and transient < MAX_TRANSIENT_RETRIES:
                    transient += 1
                    self._backoff(transient)
                    continue
                raise

    def _backoff(self, attempt: int, *, timed_out: bool = False) -> None:
        """Wait before retrying a failed request; when that wait does not fit in the time
        left, fail for good (a CA that did not answer: ``CANotAnswering``)."""
        wait = _retry_after_seconds(self.last_response, _backoff_seconds(attempt))
        deadline = self._current()
        if wait >= deadline.remaining():
            if timed_out:
                raise errors.CANotAnswering(
                    detail=f"no answer within the {deadline.budget:.0f} s allowed"
                )
            failed = errors.CAUnavailable(detail="the CA kept failing until the deadline")
            failed.retryable = False  # no time is left for a retry
            raise failed
        self._sleep(wait)


def _backoff_seconds(attempt: int) -> float:
    """Exponential backoff: 0.4 s, 0.8 s, ... up to 5 s."""
    return min(0.2 * 2**attempt, 5.0)


def _environment_ca_bundle() -> str | bool:
    """What requests verifies with when told to verify: the environment's bundle or its own."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


# --- directory cache -------------------------------------------------------------------------

_directories: dict[str, messages.Directory] = {}
_directories_lock = threading.Lock()


def fetch_directory(
    endpoint: CAEndpoint, *, refresh: bool = False, http: requests.Session | None = None
) -> messages.Directory:
    """The CA's directory (cached per URL). Failure → ``CADirectoryError``.

    ``http`` is the transport (a ``requests.Session``); tests inject one with a fake adapter.
    """
    with _directories_lock:
        cached = _directories.get(endpoint.directory_url)
    if cached is not None and not refresh:
        return cached
    try:
        response = (http or requests.Session()).get(
            endpoint.directory_url,
            verify=endpoint.verify,
            timeout=endpoint.timeout,
            headers={"User-Agent": USER_AGENT},
        )
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError(f"the directory is a JSON {type(document).__name__}, not an object")
        directory = messages.Directory.from_json(document)
        for required in ("newNonce", "newAccount", "newOrder"):
            directory[required]
    except (requests.RequestException, ValueError, KeyError, jose.DeserializationError) as exc:
        raise errors.CADirectoryError(
            detail=f"{endpoint.directory_url}: {type(exc).__name__}: {exc}"
        ) from None
    with _directories_lock:
        _directories[endpoint.directory_url] = directory
    return directory


def check_ca(endpoint: CAEndpoint, *, http: requests.Session | None = None) -> messages.Directory:
    """Check the CA answers: its directory parses and ``newNonce`` hands out a nonce."""
    directory = fetch_directory(endpoint, refresh=True, http=http)
    try:
        response = (http or requests.Session()).head(
            directory["newNonce"],
            verify=endpoint.verify,
            timeout=endpoint.timeout,
            headers={"User-Agent": USER_AGENT},
        )
    except requests.RequestException as exc:
        raise errors.CANonceError(detail=f"{directory['newNonce']}: {exc}") from None
    if "Replay-Nonce" not in response.headers:
        raise errors.CANonceError(
            detail=f"{directory['newNonce']} answered HTTP {response.status_code} without "
            "a Replay-Nonce header"
        )
    return directory


# --- keys --------------------------------------------------------------------------------------


def generate_account_key() -> bytes:
    """A new EC P-256 account key (PEM, PKCS#8)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _jwk_and_alg(key_pem: bytes) -> tuple[jose.JWK, jose.JWASignature]:
    key = serialization.load_pem_private_key(key_pem, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = {256: jose.ES256, 384: jose.ES384, 521: jose.ES512}[key.curve.key_size]
        return jose.JWKEC(key=key), alg
    if isinstance(key, rsa.RSAPrivateKey):
        return jose.JWKRSA(key=key), jose.RS256
    raise errors.InvalidKey(detail="ACME account keys must be EC or RSA")


def external_account_binding(
    jwk: jose.JWK, kid: str, hmac_key: str, directory: messages.Directory
) -> dict[str, Any]:
    """The EAB JWS of a ``newAccount`` request; each way the key can be wrong says so (the
    key itself never appears in a message)."""
    hmac_key = hmac_key.strip()
    if not hmac_key:
        raise errors.SignatureMismatch(detail="the EAB HMAC key is empty")
    if not BASE64URL.fullmatch(hmac_key):
        raise errors.SignatureMismatch(
            detail="the EAB HMAC key is not valid base64url (the CA gives it base64url-encoded)"
        )
    try:
        return messages.ExternalAccountBinding.from_data(
            account_public_key=jwk.public_key(),
            kid=kid,
            hmac_key=hmac_key,
            directory=directory,
        )
    except Exception as exc:  # the exception text could echo the key: only its type
        raise errors.SignatureMismatch(
            detail=f"the EAB binding for key id {kid!r} could not be signed ({type(exc).__name__})"
        ) from None


# --- orders with `replaces` (RFC 9773) -------------------------------------------------------


class NewOrderWithReplaces(messages.NewOrder):
    """``newOrder`` payload with the ARI ``replaces`` field (RFC 9773 section 5)."""

    replaces: str | None = jose.field("replaces", omitempty=True)


@dataclass(frozen=True)
class OrderHandle:
    """A placed order, as plain data that is safe to pass between Prefect tasks."""

    url: str
    finalize_url: str
    authorization_urls: tuple[str, ...]
    identifiers: tuple[str, ...]
    status: str


@dataclass(frozen=True)
class DNSChallenge:
    """One DNS-01 challenge still to be solved: the TXT value is public data."""

    identifier: str  # e.g. "*.example.com"
    authorization_url: str
    challenge_url: str
    record_name: str  # _acme-challenge.example.com
    value: str  # the TXT value


@dataclass(frozen=True)
class IssuedCertificate:
    """What the CA returned: the leaf, its chain and the full chain (PEM text)."""

    cert_pem: str
    chain_pem: str
    fullchain_pem: str
    alternative_fullchains: tuple[str, ...] = ()


# --- the session -----------------------------------------------------------------------------


class AcmeSession:
    """One ACME account at one CA, for one thread of work.

    ``sleep``, ``clock`` and the ``http`` transport (a ``requests.Session``) are injectable so
    that tests run without real waiting or a real CA.
    """

    def __init__(
        self,
        endpoint: CAEndpoint,
        account_key_pem: bytes,
        *,
        account_url: str | None = None,
        poll_interval: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        http: requests.Session | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._clock = clock
        jwk, alg = _jwk_and_alg(account_key_pem)
        self._jwk = jwk
        # a bundle path (requests accepts one), else the environment's bundle as requests takes it
        verify: Any = endpoint.verify if endpoint.verify is not True else _environment_ca_bundle()
        self.net = _Network(
            key=jwk,
            alg=alg,
            verify_ssl=verify,
            user_agent=USER_AGENT,
            timeout=int(endpoint.timeout),
            sleep=sleep,
            clock=clock,
        )
        if http is not None:
            http.trust_env = False  # the environment is read once per origin (see _Network)
            self.net.session = http
        self.directory = fetch_directory(endpoint, http=http)
        self.client = acme_client.ClientV2(self.directory, self.net)
        if account_url:
            self.net.account = messages.RegistrationResource(
                uri=account_url, body=messages.Registration()
            )

    # -- plumbing --

    @contextmanager
    def within(self, deadline: Deadline) -> Iterator[Deadline]:
        """Bound everything inside (requests, retries, rate-limit waits, polls) by
        ``deadline``, or by the one already in force when that comes first."""
        previous = self.net.deadline
        if previous is not None and previous.remaining() < deadline.remaining():
            deadline = previous
        self.net.deadline = deadline
        try:
            yield deadline
        finally:
            self.net.deadline = previous

    def deadline(self, seconds: float) -> contextlib.AbstractContextManager[Deadline]:
        """:meth:`within` a deadline ``seconds`` from now (on the session's clock)."""
        return self.within(Deadline.after(seconds, clock=self._clock))

    def _call(self, stage: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (errors.AcmeflowError, acme_errors.ConflictError):
            raise
        except messages.Error as problem:
            raise translate_problem(problem, stage) from None
        except acme_errors.BadNonce as exc:
            raise errors.CANonceError(detail=str(exc)) from None
        except acme_errors.MissingNonce as exc:
            raise errors.CANonceError(detail=f"no Replay-Nonce in the CA's answer: {exc}") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            deadline = self.net.deadline
            if isinstance(exc, requests.Timeout) and deadline is not None and deadline.expired():
                raise errors.CANotAnswering(
                    detail=f"{stage}: no answer within the {deadline.budget:.0f} s "
                    f"of the order ({type(exc).__name__})"
                ) from None
            network_error: type[errors.AcmeflowError] = (
                errors.FinalizeError if stage == "finalize" else errors.CAUnavailable
            )
            raise network_error(detail=f"{type(exc).__name__}: {exc}") from None
        except acme_errors.Error as exc:
            acme_error: type[errors.AcmeflowError] = (
                errors.FinalizeError if stage == "finalize" else errors.OrderFailed
            )
            raise acme_error(detail=f"{type(exc).__name__}: {exc}") from None

    def _post(self, url: str, payload: Any) -> requests.Response:
        return self.net.post(url, payload, new_nonce_url=self.directory["newNonce"])

    def _get(self, url: str) -> requests.Response:
        """POST-as-GET (RFC 8555 6.3)."""
        return self._post(url, None)

    def _pause(self, response: requests.Response | None, deadline: Deadline) -> bool:
        """Sleep until the next poll (``Retry-After`` honoured); ``False`` when the next poll
        would come after the deadline."""
        wait = max(self.poll_interval, _retry_after_seconds(response, self.poll_interval))
        if wait >= deadline.remaining():
            return False
        self._sleep(wait)
        return True

    # -- account --

    def register(self, email: str | None, *, agree_tos: bool = True) -> Account:
        """Register this key (or find its existing account) with EAB when configured."""
        directory = self.directory
        eab = None
        if self.endpoint.eab_kid and self.endpoint.eab_hmac_key:
            eab = external_account_binding(
                self._jwk, self.endpoint.eab_kid, self.endpoint.eab_hmac_key, directory
            )
        elif self.client.external_account_required():
            raise errors.CADirectoryError(
                detail=f"{self.endpoint.directory_url} requires External Account Binding: set "
                "the EAB key id and HMAC key of the CA vendor (--eab-kid, --eab-hmac-key)."
            )
        registration = messages.NewRegistration.from_data(
            email=email or None,
            terms_of_service_agreed=agree_tos,
            external_account_binding=eab,
        )
        key_pem = self._jwk.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            with self.deadline(self.endpoint.timeout * 3):
                regr = self._call("account", lambda: self.client.new_account(registration))
            return Account(url=regr.uri, key_pem=key_pem, contact=email or "")
        except acme_errors.ConflictError as conflict:
            url = conflict.location
            self.net.account = messages.RegistrationResource(uri=url, body=messages.Registration())
            return Account(url=url, key_pem=key_pem, contact=email or "")

    # -- orders --

    def place_order(
        self, names: Sequence[str], *, replaces: str | None = None, profile: str | None = None
    ) -> OrderHandle:
        """Create a new order for ``names`` (``replaces``: ARI cert id). The CSR comes only at
        :meth:`finalize`, so no key needs to exist before the CA validated the names."""
        payload = NewOrderWithReplaces(
            identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in names],
            profile=profile or self.endpoint.profile or None,
            replaces=replaces,
        )

        def post() -> requests.Response:
            url = self.directory["newOrder"]
            try:
                return self.net.post(
                    url,
                    payload,
                    new_nonce_url=self.directory["newNonce"],
                    resend_on_timeout=False,
                )
            except requests.ReadTimeout:
                # Resending could create a second order; RFC 8555's orders list cannot tell
                # (pebble has none, other CAs list only pending orders): say so instead.
                raise errors.OrderStateUnknown(
                    detail=f"POST {url}: no answer before the read timeout"
                ) from None

        try:
            response = self._call("order", post)
        except errors.OrderFailed as exc:
            if replaces and "replaces" in (exc.detail or "").lower():
                # The CA refused `replaces` (already replaced, unknown): order without it.
                return self.place_order(names, profile=profile)
            raise
        body = messages.Order.from_json(response.json())
        return OrderHandle(
            url=response.headers.get("Location", ""),
            finalize_url=body.finalize,
            authorization_urls=tuple(body.authorizations),
            identifiers=tuple(i.value for i in body.identifiers),
            status=str(body.status),
        )

    def dns_challenges(self, order: OrderHandle) -> list[DNSChallenge]:
        """The DNS-01 challenges of every authorization that is not yet valid."""
        result: list[DNSChallenge] = []
        for url in order.authorization_urls:
            authz = messages.Authorization.from_json(
                self._call("challenge", partial(self._get, url)).json()
            )
            if authz.status == messages.STATUS_VALID:
                continue  # reused authorization
            challb = next(
                (c for c in authz.challenges if isinstance(c.chall, challenges.DNS01)), None
            )
            if challb is None:
                raise errors.ChallengeFailed(
                    detail=f"the CA offered no dns-01 challenge for {authz.identifier.value}"
                )
            base = authz.identifier.value
            identifier = f"*.{base}" if authz.wildcard else base
            result.append(
                DNSChallenge(
                    identifier=identifier,
                    authorization_url=url,
                    challenge_url=challb.uri,
                    record_name=challb.chall.validation_domain_name(base),
                    value=challb.chall.validation(self._jwk),
                )
            )
        return result

    def answer_challenges(self, items: list[DNSChallenge], *, timeout: float | None = None) -> None:
        """Tell the CA every challenge is ready, then poll until all are valid (within the
        order's deadline, and ``timeout`` seconds when given)."""
        response = challenges.DNS01Response()
        with self._step(timeout) as deadline:
            for item in items:
                self._call("challenge", partial(self._post, item.challenge_url, response))
            pending = {item.authorization_url: item for item in items}
            states: dict[str, str] = {}
            last: requests.Response | None = None
            while pending:
                for url in list(pending):
                    http = self._call("challenge", partial(self._get, url))
                    authz = messages.Authorization.from_json(http.json())
                    states[pending[url].identifier] = authz.status.name
                    if authz.status == messages.STATUS_VALID:
                        del pending[url]
                    elif authz.status in (messages.STATUS_INVALID, messages.STATUS_DEACTIVATED):
                        problems = [c.error for c in authz.challenges if c.error is not None]
                        if problems:
                            raise translate_problem(problems[0], "challenge")
                        raise errors.ChallengeFailed(
                            detail=f"{pending[url].identifier}: authorization {authz.status}"
                        )
                    else:
                        last = http
                if pending and not self._pause(last, deadline):
                    raise errors.ValidationTimeout(
                        detail=f"after {deadline.budget:.0f} s: "
                        + ", ".join(f"{name}: {states[name]}" for name in sorted(states))
                    )

    def finalize(
        self, order: OrderHandle, csr_pem: bytes, *, timeout: float | None = None
    ) -> IssuedCertificate:
        """Finalize with ``csr_pem``, poll until valid, download the chain(s).

        A ``finalize`` POST without an answer is not resent blindly: the order is looked up and
        followed from its state (``processing``: polled, ``valid``: downloaded, ``ready``: the
        CA never saw the request, so it is sent once more).
        """
        csr = messages.CertificateRequest(csr=x509.load_pem_x509_csr(csr_pem))

        def send_finalize() -> requests.Response:
            try:
                return self.net.post(
                    order.finalize_url,
                    csr,
                    new_nonce_url=self.directory["newNonce"],
                    resend_on_timeout=False,
                )
            except requests.ReadTimeout:
                log.warning("no answer to finalize %s: looking the order up", order.url)
                return self._get(order.url)

        with self._step(timeout) as deadline:
            for _attempt in range(2):
                http = self._call("finalize", send_finalize)
                body = messages.Order.from_json(http.json())
                if body.status != messages.STATUS_READY:
                    break
            while body.status != messages.STATUS_VALID or body.certificate is None:
                if body.status == messages.STATUS_INVALID:
                    raise errors.FinalizeError(
                        detail=problem_text(body.error) if body.error else "order is invalid"
                    )
                if not self._pause(http, deadline):
                    raise errors.FinalizeTimeout(
                        detail=f"after {deadline.budget:.0f} s the order {order.url} is "
                        f"{body.status.name}"
                    )
                http = self._call("finalize", lambda: self._get(order.url))
                body = messages.Order.from_json(http.json())
            return self._download(str(body.certificate))

    def _download(self, certificate_url: str) -> IssuedCertificate:
        cert_http = self._call("finalize", lambda: self._get(certificate_url))
        alternates = tuple(
            self._call("finalize", partial(self._get, url)).text
            for url in self.client._get_links(cert_http, "alternate")
        )
        return choose_chain(cert_http.text, alternates, self.endpoint.preferred_chain)

    def issued_by_order(self, order_url: str) -> IssuedCertificate | None:
        """The certificate of the order at ``order_url`` when the CA issued it (``valid``),
        else ``None`` (pending, ready, processing, invalid or gone): crash recovery downloads
        what a finalize already paid for instead of ordering again."""
        try:
            http = self._call("order", lambda: self._get(order_url))
        except errors.OrderFailed:
            return None
        body = messages.Order.from_json(http.json())
        if body.status != messages.STATUS_VALID or body.certificate is None:
            return None
        return self._download(str(body.certificate))

    def _step(self, timeout: float | None) -> contextlib.AbstractContextManager[Deadline]:
        """A step's bound: its own ``timeout`` inside the order's deadline (or the default)."""
        return self.deadline(DEFAULT_BUDGET if timeout is None else timeout)


# --- chains ----------------------------------------------------------------------------------


def split_fullchain(fullchain_pem: str) -> tuple[str, str]:
    """Split a PEM full chain into (leaf, intermediates)."""
    marker = "-----END CERTIFICATE-----"
    blocks = [b.strip() + "\n" + marker + "\n" for b in fullchain_pem.split(marker) if b.strip()]
    if not blocks:
        raise errors.FinalizeError(detail="the CA returned no certificate")
    return blocks[0], "".join(blocks[1:])


def _chain_top_issuer(fullchain_pem: str) -> str:
    leaf, chain = split_fullchain(fullchain_pem)
    last = chain or leaf
    certs = x509.load_pem_x509_certificates(last.encode())
    names = certs[-1].issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def choose_chain(
    default_pem: str, alternates: tuple[str, ...], preferred: str | None
) -> IssuedCertificate:
    """Pick the chain whose topmost issuer CN is ``preferred`` (certbot's rule), else default."""
    chosen = default_pem
    if preferred:
        for candidate in (default_pem, *alternates):
            if _chain_top_issuer(candidate) == preferred:
                chosen = candidate
                break
    leaf, chain = split_fullchain(chosen)
    return IssuedCertificate(
        cert_pem=leaf,
        chain_pem=chain,
        fullchain_pem=leaf + chain,
        alternative_fullchains=tuple(a for a in (default_pem, *alternates) if a != chosen),
    )
