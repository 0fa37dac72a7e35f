"""Deploy target ``netscaler``: install a certificate on a NetScaler ADC over NITRO (REST).

One deployment is one NITRO session:

1. ``POST /nitro/v1/config/login`` (session token, sent back as the ``NITRO_AUTH_TOKEN``
   cookie);
2. ``GET sslcertkey/<certkey>``: when it already holds this serial and the right
   intermediate link, nothing else happens (``changed=False``);
3. each intermediate becomes its own certkey ``<certkey>-ica-<hash8>`` (file uploaded with
   ``POST systemfile`` to ``/nsconfig/ssl``) unless present, linked up the chain;
4. the leaf certificate and key are uploaded as ``<certkey>-<serial12>.crt/.key`` and the
   certkey is created (``POST sslcertkey``) or updated in place (``POST
   sslcertkey?action=update`` with ``nodomaincheck``), so bound vservers serve it at once;
5. the certkey is linked to its intermediate (``action=link``), files of the previous
   certificate are removed, the configuration is saved (``nsconfig?action=save``);
6. ``POST logout`` always.

NITRO errors (``errorcode``, ``message``, ``severity``) become
:class:`core.errors.DeployError` details; network failures, timeouts and 5xx without a
NITRO error are retryable, authentication and request errors are not.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from acmeflow.core.errors import ConfigError, DeployError
from acmeflow.providers.deploy.base import (
    CertificateBundle,
    DeployOutcome,
    TargetType,
    secret,
    setting,
)
from acmeflow.providers.deploy.common import deploy_error, normalize_serial, pem_certificates
from acmeflow.providers.settings import setting_bool, setting_float

log = logging.getLogger(__name__)

_T = TypeVar("_T")

TYPE_NAME = "netscaler"
SSL_DIR = "/nsconfig/ssl"
DEFAULT_TIMEOUT = 30.0
JSON = "application/json"

# NITRO error codes the adapter reacts to.
ERR_NO_SUCH_RESOURCE = 258
ERR_RESOURCE_EXISTS = 273
ERR_BAD_LOGIN = 354
ERR_SESSION_EXPIRED = 444
ERR_ALREADY_LINKED = 1540
_ALREADY_LINKED = {ERR_RESOURCE_EXISTS, ERR_ALREADY_LINKED}

_MAX_BASE = 46  # "<base>-<serial12>.crt" stays within systemfile's 63-character filename
_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9_#.:@=-]")


def derive_certkey(name: str) -> str:
    """Default certkey name for a certificate name: ``acmeflow-<name>`` (``*`` spelled out)."""
    cleaned = _NAME_BAD_CHARS.sub("_", name.replace("*", "wildcard"))
    return f"acmeflow-{cleaned}"[:_MAX_BASE]


class NitroError(Exception):
    """A NITRO request failed (HTTP status plus the NITRO error body when there is one)."""

    def __init__(
        self, status: int, errorcode: int | None, message: str, severity: str = ""
    ) -> None:
        self.status = status
        self.errorcode = errorcode
        self.nitro_message = message
        self.severity = severity
        code = f" errorcode {errorcode}" if errorcode is not None else ""
        super().__init__(f"HTTP {status}{code}: {message}")

    @property
    def retryable(self) -> bool:
        """Transient: an HTTP 5xx gateway/unavailable answer, a 5xx with no NITRO body, or a
        session that expired mid-deployment (444)."""
        if self.errorcode == ERR_SESSION_EXPIRED:
            return True
        if self.status in (500, 502, 503, 504):
            return True
        return self.status >= 500 and self.errorcode is None


@dataclass(frozen=True)
class _CertKey:
    name: str
    cert: str
    key: str
    serial: str
    link: str


class _Nitro:
    """One authenticated NITRO session (``requests.Session`` plus the auth token)."""

    def __init__(self, base_url: str, *, verify: bool | str, timeout: float) -> None:
        self.base = base_url.rstrip("/") + "/nitro/v1/config"
        self.http = requests.Session()
        # Passed on every request: a session-level verify loses to REQUESTS_CA_BUNDLE.
        self.verify = verify
        self.http.headers.update({"Accept": JSON})
        self.timeout = timeout
        self.token: str | None = None

    def call(
        self,
        method: str,
        resource: str,
        *,
        name: str | None = None,
        query: str = "",
        payload: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One NITRO request; returns the JSON body or raises :class:`NitroError`."""
        url = f"{self.base}/{resource}"
        if name is not None:
            url += "/" + quote(name, safe="")
        if query:
            url += "?" + query
        headers = {"Content-Type": JSON} if payload is not None else {}
        response = self.http.request(
            method, url, json=payload, headers=headers, timeout=self.timeout, verify=self.verify
        )
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if response.status_code >= 400:
                raise NitroError(response.status_code, None, response.reason or "no NITRO body")
            body = {}
        code = body.get("errorcode")
        if response.status_code >= 400 or (isinstance(code, int) and code != 0):
            raise NitroError(
                response.status_code,
                code if isinstance(code, int) else None,
                str(body.get("message") or response.reason or "error"),
                str(body.get("severity") or ""),
            )
        return body

    def login(self, username: str, password: str) -> None:
        body = self.call(
            "POST", "login", payload={"login": {"username": username, "password": password}}
        )
        token = self.http.cookies.get("NITRO_AUTH_TOKEN") or body.get("sessionid")
        if not token:
            raise NitroError(200, None, "login answered without a session token")
        self.token = str(token)
        # Send the token explicitly: the cookie's path/secure flags must not decide it.
        self.http.cookies.clear()
        self.http.headers["Cookie"] = f"NITRO_AUTH_TOKEN={self.token}"

    def logout(self) -> None:
        try:
            self.call("POST", "logout", payload={"logout": {}})
        except (NitroError, requests.RequestException) as exc:
            log.info("%s: logout failed (ignored): %s", TYPE_NAME, exc)
        finally:
            self.token = None
            self.http.close()

    # --- resources -----------------------------------------------------------------------

    def get_certkey(self, name: str) -> _CertKey | None:
        try:
            body = self.call("GET", "sslcertkey", name=name)
        except NitroError as exc:
            if exc.status == 404 or exc.errorcode == ERR_NO_SUCH_RESOURCE:
                return None
            raise
        items = body.get("sslcertkey") or []
        if not items:
            return None
        item = items[0]
        return _CertKey(
            name=str(item.get("certkey", name)),
            cert=str(item.get("cert", "")),
            key=str(item.get("key", "")),
            serial=normalize_serial(str(item.get("serial", "") or "")),
            link=str(item.get("linkcertkeyname", "") or ""),
        )

    def upload_file(self, filename: str, content: bytes) -> None:
        payload = {
            "systemfile": {
                "filename": filename,
                "filecontent": base64.b64encode(content).decode("ascii"),
                "filelocation": SSL_DIR,
                "fileencoding": "BASE64",
            }
        }
        try:
            self.call("POST", "systemfile", payload=payload)
        except NitroError as exc:
            if exc.status != 409 and exc.errorcode != ERR_RESOURCE_EXISTS:
                raise
            # Left over from an interrupted run: replace it (its content may differ).
            self.delete_file(filename)
            self.call("POST", "systemfile", payload=payload)

    def delete_file(self, filename: str) -> None:
        self.call(
            "DELETE",
            "systemfile",
            name=filename,
            query="args=filelocation:" + quote(SSL_DIR, safe=""),
        )

    def link(self, certkey: str, issuer: str) -> None:
        try:
            self.call(
                "POST",
                "sslcertkey",
                query="action=link",
                payload={"sslcertkey": {"certkey": certkey, "linkcertkeyname": issuer}},
            )
        except NitroError as exc:
            if exc.errorcode in _ALREADY_LINKED or "already linked" in exc.nitro_message.lower():
                return
            raise

    def unlink(self, certkey: str) -> None:
        self.call(
            "POST",
            "sslcertkey",
            query="action=unlink",
            payload={"sslcertkey": {"certkey": certkey}},
        )

    def vserver_count(self, certkey: str) -> int | None:
        try:
            body = self.call("GET", "sslcertkey_sslvserver_binding", name=certkey)
        except NitroError:
            return None
        return len(body.get("sslcertkey_sslvserver_binding") or [])


class NetScalerTarget:
    """A NetScaler ADC reached over NITRO; certificates become (updated) sslcertkeys."""

    type_name = TYPE_NAME

    def __init__(
        self,
        *,
        url: str,
        username: str,
        password: str,
        ca_bundle: str = "",
        insecure: bool = False,
        certkey: str = "",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ConfigError(detail=f"{TYPE_NAME}: url must look like https://adc.example:443")
        if certkey and _NAME_BAD_CHARS.search(certkey):
            raise ConfigError(
                detail=f"{TYPE_NAME}: certkey {certkey!r} has characters NITRO refuses"
            )
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.username = username
        self._password = password
        self.ca_bundle = ca_bundle
        self.insecure = insecure
        self.certkey = certkey
        self.timeout = timeout
        self._last_certkey: str | None = None

    def __repr__(self) -> str:
        return f"NetScalerTarget(url={self.url!r}, username={self.username!r})"

    # --- public API ----------------------------------------------------------------------

    def deploy(self, bundle: CertificateBundle) -> DeployOutcome:
        """Create or update the bundle's sslcertkey (idempotent) and save the config."""
        certkey = self.certkey or derive_certkey(bundle.name)
        self._last_certkey = certkey
        with self._session() as nitro:
            return self._deploy(nitro, certkey, bundle)

    def current_serial(self, name: str | None = None) -> str | None:
        """Serial the certkey holds now (configured certkey, else the one for ``name``)."""
        certkey = self.certkey or (derive_certkey(name) if name else self._last_certkey)
        if not certkey:
            return None
        with self._session() as nitro:
            found = self._guard(nitro, lambda: nitro.get_certkey(certkey))
        return found.serial if found and found.serial else None

    # --- internals -----------------------------------------------------------------------

    def _deploy(self, nitro: _Nitro, certkey: str, bundle: CertificateBundle) -> DeployOutcome:
        try:
            chain = pem_certificates(bundle.chain_pem)
        except ValueError as exc:
            raise deploy_error(TYPE_NAME, f"bundle {bundle.name}: bad chain PEM: {exc}") from None
        base = certkey[:_MAX_BASE]
        ica_names = [f"{base}-ica-{_fingerprint8(c)}" for c in chain]
        wanted_link = ica_names[0] if ica_names else ""
        serial = normalize_serial(bundle.serial)

        existing = self._guard(nitro, lambda: nitro.get_certkey(certkey))
        if existing is not None and existing.serial == serial and existing.link == wanted_link:
            return DeployOutcome(
                changed=False,
                detail=f"sslcertkey {certkey} already holds serial {serial}",
                location=certkey,
            )

        def install() -> tuple[str, int | None]:
            # Intermediates first (top of the chain last), each linked to its issuer.
            for index in range(len(chain) - 1, -1, -1):
                issuer = ica_names[index + 1] if index + 1 < len(chain) else ""
                self._ensure_intermediate(nitro, ica_names[index], chain[index], issuer)
            stem = f"{base}-{serial[:12]}"
            cert_file, key_file = f"{stem}.crt", f"{stem}.key"
            nitro.upload_file(cert_file, bundle.cert_pem)
            nitro.upload_file(key_file, bundle.key_pem)
            if existing is None:
                nitro.call(
                    "POST",
                    "sslcertkey",
                    payload={
                        "sslcertkey": {"certkey": certkey, "cert": cert_file, "key": key_file}
                    },
                )
                action = "created"
            else:
                if existing.link and existing.link != wanted_link:
                    nitro.unlink(certkey)  # the chain changed (new intermediate)
                nitro.call(
                    "POST",
                    "sslcertkey",
                    query="action=update",
                    payload={
                        "sslcertkey": {
                            "certkey": certkey,
                            "cert": cert_file,
                            "key": key_file,
                            "nodomaincheck": True,
                        }
                    },
                )
                action = "updated"
                self._remove_old_files(nitro, existing, base, {cert_file, key_file})
            if wanted_link:
                nitro.link(certkey, wanted_link)
            vservers = nitro.vserver_count(certkey)
            nitro.call("POST", "nsconfig", query="action=save", payload={"nsconfig": {}})
            return action, vservers

        action, vservers = self._guard(nitro, install)
        bound = (
            f", {vservers} vserver{'s' if vservers != 1 else ''}" if vservers is not None else ""
        )
        return DeployOutcome(
            changed=True,
            detail=f"sslcertkey {certkey} {action} with serial {serial}{bound}; config saved",
            location=certkey,
        )

    def _ensure_intermediate(
        self, nitro: _Nitro, name: str, cert: x509.Certificate, issuer: str
    ) -> None:
        found = nitro.get_certkey(name)
        if found is None:
            filename = f"{name}.crt"
            nitro.upload_file(filename, cert.public_bytes(Encoding.PEM))
            try:
                nitro.call(
                    "POST",
                    "sslcertkey",
                    payload={"sslcertkey": {"certkey": name, "cert": filename}},
                )
            except NitroError as exc:  # created concurrently by another deployment
                if exc.status != 409 and exc.errorcode != ERR_RESOURCE_EXISTS:
                    raise
        if issuer and (found is None or found.link != issuer):
            nitro.link(name, issuer)

    @staticmethod
    def _remove_old_files(nitro: _Nitro, old: _CertKey, base: str, keep: set[str]) -> None:
        """Delete the previous certificate's files when acmeflow named them (best effort)."""
        for path in (old.cert, old.key):
            filename = path.rsplit("/", 1)[-1]
            if not filename.startswith(f"{base}-") or filename in keep:
                continue
            try:
                nitro.delete_file(filename)
            except NitroError as exc:
                log.info("%s: could not remove old file %s: %s", TYPE_NAME, filename, exc)

    @contextmanager
    def _session(self) -> Iterator[_Nitro]:
        verify: bool | str = True
        if self.insecure:
            log.warning(
                "%s: TLS verification of %s is disabled (insecure=true); the ADC's identity "
                "is not checked",
                TYPE_NAME,
                self.url,
            )
            verify = False
        elif self.ca_bundle:
            verify = self.ca_bundle
        nitro = _Nitro(self.url, verify=verify, timeout=self.timeout)
        self._guard(nitro, lambda: nitro.login(self.username, self._password), login=True)
        try:
            yield nitro
        finally:
            nitro.logout()

    def _guard(self, nitro: _Nitro, func: Callable[[], _T], *, login: bool = False) -> _T:
        """Run ``func``; turn NITRO and transport failures into :class:`DeployError`."""
        secrets = [self._password, nitro.token]
        try:
            return func()
        except DeployError:
            raise
        except NitroError as exc:
            if exc.errorcode == ERR_BAD_LOGIN or (login and exc.status in (401, 403)):
                text = f"login as {self.username!r} refused: {exc}"
            else:
                text = f"{self.url}: {exc}"
            raise deploy_error(TYPE_NAME, text, secrets=secrets, retryable=exc.retryable) from None
        except requests.exceptions.SSLError as exc:
            raise deploy_error(
                TYPE_NAME,
                f"TLS verification of {self.url} failed ({_reason(exc)}); set ca_bundle to the "
                "CA that signed the ADC's certificate (or insecure=true to skip the check)",
                secrets=secrets,
                retryable=False,
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise deploy_error(
                TYPE_NAME,
                f"cannot reach {self.url}: {_reason(exc)}",
                secrets=secrets,
                retryable=True,
            ) from None
        except requests.RequestException as exc:
            raise deploy_error(
                TYPE_NAME, f"request to {self.url} failed: {_reason(exc)}", secrets=secrets
            ) from None
        except OSError as exc:  # e.g. an unreadable ca_bundle
            raise deploy_error(
                TYPE_NAME, f"{self.url}: {exc}", secrets=secrets, retryable=False
            ) from None


def _fingerprint8(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()[:8]


def _reason(exc: BaseException) -> str:
    """The innermost readable reason of a requests/urllib3 exception chain."""
    text = str(exc)
    inner: BaseException | None = exc
    while inner is not None:
        if inner.args and isinstance(inner.args[0], BaseException):
            inner = inner.args[0]
            continue
        reason = getattr(inner, "reason", None)
        if isinstance(reason, BaseException):
            inner = reason
            text = str(reason)
            continue
        break
    return text


def build_netscaler_target(
    settings: Mapping[str, str], secrets: Mapping[str, str]
) -> NetScalerTarget:
    """Factory for the registry: a :class:`NetScalerTarget` from settings and secrets."""
    try:
        return NetScalerTarget(
            url=settings["url"],
            username=settings["username"],
            password=secrets["password"],
            ca_bundle=settings.get("ca_bundle", ""),
            insecure=setting_bool(settings, "insecure", TYPE_NAME),
            certkey=settings.get("certkey", ""),
            timeout=setting_float(settings, "timeout", DEFAULT_TIMEOUT, type_name=TYPE_NAME),
        )
    except KeyError as exc:
        raise ConfigError(detail=f"{TYPE_NAME}: missing required field {exc.args[0]}") from None


TARGET = TargetType(
    name=TYPE_NAME,
    label="NetScaler ADC (NITRO API)",
    fields=(
        setting("url", "NITRO base URL, e.g. https://adc.example:443", required=True),
        setting("username", "NITRO user", required=True),
        secret("password", "NITRO password", required=True),
        setting("ca_bundle", "PEM file of the CA that signed the ADC's management certificate"),
        setting("insecure", '"true" to skip TLS verification (logged as a warning)'),
        setting("certkey", "sslcertkey name (default acmeflow-<certificate name>)"),
        setting("timeout", "seconds per NITRO request (default 30)"),
    ),
    factory=build_netscaler_target,
)
