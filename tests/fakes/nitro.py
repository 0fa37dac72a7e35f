"""FakeNitroServer: a fake NetScaler ADC NITRO REST API (``/nitro/v1/config``) for tests.

A real HTTP(S) server on 127.0.0.1 (``http.server`` in a thread) keeping appliance-like
state: files under ``/nsconfig/ssl``, sslcertkeys (cert file, key file, serial parsed from
the uploaded certificate, link to the issuer certkey), vserver bindings, sessions and the
"saved" flag. Each request is checked against the documented NITRO request shapes
(resource wrapper object, required and known fields, JSON content type, session token in
the ``NITRO_AUTH_TOKEN`` cookie or ``X-NITRO-USER``/``X-NITRO-PASS`` headers) and errors
come back as NITRO error bodies ``{"errorcode", "message", "severity"}`` with the HTTP
status the API uses: 401 for login (354) and session (444) failures, 404 for "No such
resource" (258), 409 for "Resource already exists" (273), 400 for malformed requests and
599 for appliance-side refusals (bad certificate, key mismatch, issuer mismatch).

It is a fake: no SSL engine, no vserver traffic; ``served_serial(vserver)`` stands in for
what a client would see from a vserver bound to a certkey.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import secrets
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.fakes import TestPKI

SSL_DIR = "/nsconfig/ssl"

# NITRO error codes (documented: 258, 273, 354, 444; the others as appliances answer).
ERR_NO_SUCH_RESOURCE = 258
ERR_RESOURCE_EXISTS = 273
ERR_INVALID_ARGUMENT = 278
ERR_BAD_LOGIN = 354
ERR_SESSION_EXPIRED = 444
ERR_REQUIRED_ARGUMENT = 1095
ERR_ALREADY_LINKED = 1540
# Appliance-side refusals (HTTP 599); codes chosen by this fake.
ERR_INVALID_CERT = 1541
ERR_KEY_MISMATCH = 1542
ERR_ISSUER_MISMATCH = 1543
ERR_NOT_LINKED = 1544
ERR_DOMAIN_MISMATCH = 1545
ERR_NO_SUCH_FILE = 1546


@dataclass(frozen=True)
class Shape:
    """The documented payload of one NITRO operation."""

    allowed: frozenset[str]
    required: frozenset[str]
    bools: frozenset[str] = frozenset()


def _shape(allowed: str, required: str = "", bools: str = "") -> Shape:
    return Shape(frozenset(allowed.split()), frozenset(required.split()), frozenset(bools.split()))


# (resource, action) -> request shape, from the NITRO reference of each resource.
SHAPES: dict[tuple[str, str | None], Shape] = {
    ("login", None): _shape("username password timeout", "username password"),
    ("logout", None): _shape(""),
    ("systemfile", None): _shape(
        "filename filecontent filelocation fileencoding", "filename filecontent filelocation"
    ),
    ("sslcertkey", None): _shape(
        "certkey cert key password fipskey hsmkey inform passplain expirymonitor "
        "notificationperiod bundle",
        "certkey cert",
        "password",
    ),
    ("sslcertkey", "update"): _shape(
        "certkey cert key password fipskey inform passplain nodomaincheck",
        "certkey",
        "password nodomaincheck",
    ),
    ("sslcertkey", "link"): _shape("certkey linkcertkeyname", "certkey linkcertkeyname"),
    ("sslcertkey", "unlink"): _shape("certkey", "certkey"),
    ("nsconfig", "save"): _shape("all"),
}


class NitroFault(Exception):
    """An error the fake answers with (HTTP status + NITRO error body)."""

    def __init__(self, status: int, errorcode: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.errorcode = errorcode
        self.message = message


@dataclass
class CertKey:
    name: str
    cert_path: str
    key_path: str
    cert: x509.Certificate
    link: str = ""

    def nitro(self) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        after = self.cert.not_valid_after_utc
        item: dict[str, Any] = {
            "certkey": self.name,
            "cert": self.cert_path,
            "inform": "PEM",
            "signaturealg": self.cert.signature_algorithm_oid._name,
            "serial": format(self.cert.serial_number, "X").zfill(2),
            "issuer": self.cert.issuer.rfc4514_string(),
            "subject": self.cert.subject.rfc4514_string(),
            "clientcertnotbefore": self.cert.not_valid_before_utc.strftime("%b %d %H:%M:%S %Y GMT"),
            "clientcertnotafter": after.strftime("%b %d %H:%M:%S %Y GMT"),
            "daystoexpiration": max(0, (after - now).days),
            "status": "Valid" if after > now else "Expired",
            "expirymonitor": "DISABLED",
        }
        if self.key_path:
            item["key"] = self.key_path
        if self.link:
            item["linkcertkeyname"] = self.link
        return item


@dataclass
class Request:
    """One request the fake received (for assertions on what a client did)."""

    method: str
    resource: str
    name: str | None
    action: str | None


@dataclass
class _State:
    files: dict[str, bytes] = field(default_factory=dict)  # absolute path -> content
    certkeys: dict[str, CertKey] = field(default_factory=dict)
    bindings: dict[str, str] = field(default_factory=dict)  # vserver -> certkey
    sessions: set[str] = field(default_factory=set)
    saved: bool = True
    requests: list[Request] = field(default_factory=list)


class FakeNitroServer:
    """A fake NetScaler ADC speaking NITRO over HTTPS (or HTTP) on 127.0.0.1."""

    def __init__(
        self,
        *,
        tls: bool = True,
        username: str = "nsroot",
        password: str = "nitro-Secret-42",
        workdir: Path | None = None,
    ) -> None:
        self.tls = tls
        self.username = username
        self.password = password
        self.state = _State()
        self.down: str | None = None  # None, "503" or "refuse"
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._ssl: ssl.SSLContext | None = None
        self.ca_bundle_path: Path | None = None
        if tls:
            self._make_tls(workdir)

    # --- lifecycle -------------------------------------------------------------------------

    def _make_tls(self, workdir: Path | None) -> None:
        import tempfile

        directory = workdir or Path(tempfile.mkdtemp(prefix="fake-nitro-"))
        pki = TestPKI("fake ADC")
        leaf = pki.issue(["adc.test"], ips=["127.0.0.1"], days=2)
        (directory / "server.pem").write_bytes(leaf.cert_pem + leaf.chain_pem)
        (directory / "server.key").write_bytes(leaf.key_pem)
        self.ca_bundle_path = directory / "ca.pem"
        self.ca_bundle_path.write_bytes(pki.root_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(directory / "server.pem", directory / "server.key")
        self._ssl = ctx

    def start(self) -> FakeNitroServer:
        """Listen (on a free port the first time, the same port after a restart)."""
        server = _QuietServer(("127.0.0.1", self._port), _handler_for(self))
        if self._ssl is not None:
            server.socket = self._ssl.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are then refused)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeNitroServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    def set_down(self, mode: str | None) -> None:
        """``"503"``: answer every request 503; ``"refuse"``: stop listening; None: back up."""
        if mode not in (None, "503", "refuse"):
            raise ValueError(mode)
        if self.down == "refuse" and mode != "refuse":
            self.start()
        if mode == "refuse" and self.down != "refuse":
            self.stop()
        self.down = mode

    # --- inspection helpers for tests ------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self.state.requests)

    def clear_requests(self) -> None:
        with self._lock:
            self.state.requests.clear()

    def ssl_files(self) -> dict[str, bytes]:
        """Files in /nsconfig/ssl by file name."""
        with self._lock:
            prefix = SSL_DIR + "/"
            return {
                p[len(prefix) :]: c for p, c in self.state.files.items() if p.startswith(prefix)
            }

    def certkey(self, name: str) -> CertKey | None:
        with self._lock:
            return self.state.certkeys.get(name)

    @property
    def saved(self) -> bool:
        with self._lock:
            return self.state.saved

    @property
    def active_sessions(self) -> int:
        with self._lock:
            return len(self.state.sessions)

    def bind_vserver(self, vserver: str, certkey: str) -> None:
        """Model ``bind ssl vserver <vserver> -certkeyName <certkey>``."""
        with self._lock:
            if certkey not in self.state.certkeys:
                raise KeyError(certkey)
            self.state.bindings[vserver] = certkey

    def served_serial(self, vserver: str) -> str:
        """Lower-hex serial a client of ``vserver`` would be served now."""
        with self._lock:
            ck = self.state.certkeys[self.state.bindings[vserver]]
            return format(ck.cert.serial_number, "x")

    def served_chain(self, vserver: str) -> list[str]:
        """Subjects of the chain the vserver sends: leaf, then the linked issuers."""
        with self._lock:
            ck: CertKey | None = self.state.certkeys[self.state.bindings[vserver]]
            chain: list[str] = []
            while ck is not None:
                chain.append(ck.cert.subject.rfc4514_string())
                ck = self.state.certkeys.get(ck.link) if ck.link else None
            return chain

    # --- request handling (called from handler threads) ------------------------------------

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Answer one request: (status, JSON body, extra headers)."""
        parts = urlsplit(path)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        query = parse_qs(parts.query, keep_blank_values=True)
        if segments[:3] != ["nitro", "v1", "config"] or len(segments) not in (4, 5):
            raise NitroFault(404, ERR_NO_SUCH_RESOURCE, "No such resource")
        resource = segments[3]
        name = segments[4] if len(segments) == 5 else None
        action = query.get("action", [None])[0]
        with self._lock:
            self.state.requests.append(Request(method, resource, name, action))
            if resource == "login" and method == "POST":
                return self._login(self._payload(method, resource, action, headers, body))
            token = self._authenticate(headers)
            if method == "GET":
                return 200, self._get(resource, name, query), {}
            if method == "DELETE":
                return 200, self._delete(resource, name, query), {}
            if method in ("POST", "PUT"):
                payload = self._payload(method, resource, action, headers, body)
                return self._post(resource, action, payload, token)
            raise NitroFault(405, ERR_INVALID_ARGUMENT, "Method not allowed")

    def _payload(
        self,
        method: str,
        resource: str,
        action: str | None,
        headers: dict[str, str],
        body: bytes,
    ) -> dict[str, Any]:
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in (
            "application/json",
            f"application/vnd.com.citrix.netscaler.{resource}+json",
        ):
            raise NitroFault(400, ERR_INVALID_ARGUMENT, f"Invalid content type [{ctype or 'none'}]")
        shape = SHAPES.get((resource, action))
        if shape is None:
            raise NitroFault(400, ERR_INVALID_ARGUMENT, f"Invalid action [{action}] for {resource}")
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            raise NitroFault(400, ERR_INVALID_ARGUMENT, "Invalid JSON payload") from None
        if not isinstance(doc, dict) or not isinstance(doc.get(resource), dict):
            raise NitroFault(400, ERR_REQUIRED_ARGUMENT, f"Required argument missing [{resource}]")
        extra = set(doc) - {resource, "params", "sessionid"}
        if extra:
            raise NitroFault(
                400, ERR_INVALID_ARGUMENT, f"Invalid argument name [{sorted(extra)[0]}]"
            )
        obj: dict[str, Any] = doc[resource]
        unknown = set(obj) - shape.allowed
        if unknown:
            raise NitroFault(
                400, ERR_INVALID_ARGUMENT, f"Invalid argument name [{sorted(unknown)[0]}]"
            )
        missing = shape.required - {k for k, v in obj.items() if v not in (None, "")}
        if missing:
            raise NitroFault(
                400, ERR_REQUIRED_ARGUMENT, f"Required argument missing [{sorted(missing)[0]}]"
            )
        for key, value in obj.items():
            expected = bool if key in shape.bools else (int if key == "timeout" else str)
            if not isinstance(value, expected):
                raise NitroFault(400, ERR_INVALID_ARGUMENT, f"Invalid value type for [{key}]")
        return obj

    def _authenticate(self, headers: dict[str, str]) -> str | None:
        cookie = SimpleCookie()
        cookie.load(headers.get("cookie", ""))
        token = cookie["NITRO_AUTH_TOKEN"].value if "NITRO_AUTH_TOKEN" in cookie else None
        if token and token in self.state.sessions:
            return token
        user, pw = headers.get("x-nitro-user"), headers.get("x-nitro-pass")
        if user is not None and not token:
            if (user, pw) == (self.username, self.password):
                return None
            raise NitroFault(401, ERR_BAD_LOGIN, "Invalid username or password")
        raise NitroFault(401, ERR_SESSION_EXPIRED, "Session expired or killed. Please login again")

    def _login(self, obj: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if (obj["username"], obj["password"]) != (self.username, self.password):
            raise NitroFault(401, ERR_BAD_LOGIN, "Invalid username or password")
        token = "##" + secrets.token_hex(16).upper()
        self.state.sessions.add(token)
        cookie = f"NITRO_AUTH_TOKEN={token}; path=/nitro/v1; HttpOnly"
        if self.tls:
            cookie += "; Secure"
        body = {"errorcode": 0, "message": "Done", "severity": "NONE", "sessionid": token}
        return 201, body, {"Set-Cookie": cookie}

    # --- GET / DELETE ----------------------------------------------------------------------

    def _get(self, resource: str, name: str | None, query: dict[str, list[str]]) -> dict[str, Any]:
        done: dict[str, Any] = {"errorcode": 0, "message": "Done", "severity": "NONE"}
        if resource == "sslcertkey":
            if name is None:
                done["sslcertkey"] = [ck.nitro() for ck in self.state.certkeys.values()]
                return done
            ck = self.state.certkeys.get(name)
            if ck is None:
                raise NitroFault(404, ERR_NO_SUCH_RESOURCE, f"No such resource [certkey, {name}]")
            done["sslcertkey"] = [ck.nitro()]
            return done
        if resource == "sslcertkey_sslvserver_binding":
            if name is None or name not in self.state.certkeys:
                raise NitroFault(404, ERR_NO_SUCH_RESOURCE, f"No such resource [certkey, {name}]")
            bound = [
                {"certkey": name, "servername": vs, "data": 1, "version": 2}
                for vs, ck_name in sorted(self.state.bindings.items())
                if ck_name == name
            ]
            if bound:  # NITRO leaves the key out when there is no binding
                done["sslcertkey_sslvserver_binding"] = bound
            return done
        if resource == "systemfile":
            location = _args(query).get("filelocation")
            if not location:
                raise NitroFault(
                    400, ERR_REQUIRED_ARGUMENT, "Required argument missing [filelocation]"
                )
            entries = []
            for path, content in sorted(self.state.files.items()):
                directory, _, filename = path.rpartition("/")
                if directory == location and (name is None or filename == name):
                    entries.append(
                        {
                            "filename": filename,
                            "filelocation": directory,
                            "filecontent": base64.b64encode(content).decode(),
                            "fileencoding": "BASE64",
                            "filesize": len(content),
                        }
                    )
            if name is not None and not entries:
                raise NitroFault(404, ERR_NO_SUCH_RESOURCE, f"No such resource [filename, {name}]")
            done["systemfile"] = entries
            return done
        raise NitroFault(404, ERR_NO_SUCH_RESOURCE, f"No such resource [{resource}]")

    def _delete(
        self, resource: str, name: str | None, query: dict[str, list[str]]
    ) -> dict[str, Any]:
        if resource == "systemfile" and name is not None:
            location = _args(query).get("filelocation")
            if not location:
                raise NitroFault(
                    400, ERR_REQUIRED_ARGUMENT, "Required argument missing [filelocation]"
                )
            path = f"{location.rstrip('/')}/{name}"
            if path not in self.state.files:
                raise NitroFault(404, ERR_NO_SUCH_RESOURCE, f"No such resource [filename, {name}]")
            del self.state.files[path]
            return {"errorcode": 0, "message": "Done", "severity": "NONE"}
        if resource == "sslcertkey" and name is not None:
            if name not in self.state.certkeys:
                raise NitroFault(404, ERR_NO_SUCH_RESOURCE, f"No such resource [certkey, {name}]")
            del self.state.certkeys[name]
            self.state.saved = False
            return {"errorcode": 0, "message": "Done", "severity": "NONE"}
        raise NitroFault(400, ERR_INVALID_ARGUMENT, f"Cannot delete [{resource}]")

    # --- POST ------------------------------------------------------------------------------

    def _post(
        self, resource: str, action: str | None, obj: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        done: dict[str, Any] = {"errorcode": 0, "message": "Done", "severity": "NONE"}
        if resource == "logout":
            if token is not None:
                self.state.sessions.discard(token)
            return 201, done, {}
        if resource == "systemfile":
            self._add_file(obj)
            return 201, done, {}
        if resource == "nsconfig":
            self.state.saved = True
            return 200, done, {}
        if resource == "sslcertkey" and action is None:
            self._add_certkey(obj)
            return 201, done, {}
        if resource == "sslcertkey" and action == "update":
            self._update_certkey(obj)
            return 200, done, {}
        if resource == "sslcertkey" and action == "link":
            self._link(obj["certkey"], obj["linkcertkeyname"])
            return 200, done, {}
        if resource == "sslcertkey" and action == "unlink":
            ck = self._certkey(obj["certkey"])
            if not ck.link:
                raise NitroFault(599, ERR_NOT_LINKED, "Certificate is not linked")
            ck.link = ""
            self.state.saved = False
            return 200, done, {}
        raise NitroFault(400, ERR_INVALID_ARGUMENT, f"Invalid action [{action}]")

    def _add_file(self, obj: dict[str, Any]) -> None:
        filename, location = obj["filename"], obj["filelocation"].rstrip("/")
        if "/" in filename or len(filename) > 63:
            raise NitroFault(400, ERR_INVALID_ARGUMENT, "Invalid argument [filename]")
        if location != SSL_DIR and not location.startswith(SSL_DIR + "/"):
            raise NitroFault(599, ERR_NO_SUCH_FILE, f"No such directory [{location}]")
        if obj.get("fileencoding", "BASE64") != "BASE64":
            raise NitroFault(400, ERR_INVALID_ARGUMENT, "Invalid argument [fileencoding]")
        try:
            content = base64.b64decode(obj["filecontent"], validate=True)
        except (binascii.Error, ValueError):
            raise NitroFault(400, ERR_INVALID_ARGUMENT, "Invalid argument [filecontent]") from None
        path = f"{location}/{filename}"
        if path in self.state.files:
            raise NitroFault(409, ERR_RESOURCE_EXISTS, "Resource already exists")
        self.state.files[path] = content

    def _file(self, name: str) -> bytes:
        path = name if name.startswith("/") else f"{SSL_DIR}/{name}"
        if path not in self.state.files:
            raise NitroFault(599, ERR_NO_SUCH_FILE, f"No such file [{name}]")
        return self.state.files[path]

    def _load_pair(self, cert_name: str, key_name: str) -> x509.Certificate:
        try:
            cert = x509.load_pem_x509_certificate(self._file(cert_name))
        except ValueError:
            raise NitroFault(599, ERR_INVALID_CERT, f"Invalid certificate [{cert_name}]") from None
        if key_name:
            try:
                key = serialization.load_pem_private_key(self._file(key_name), password=None)
            except (ValueError, TypeError):
                raise NitroFault(599, ERR_INVALID_CERT, f"Invalid key [{key_name}]") from None
            raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            if key.public_key().public_bytes(*raw) != cert.public_key().public_bytes(*raw):
                raise NitroFault(599, ERR_KEY_MISMATCH, "Certificate and private key do not match")
        return cert

    def _certkey(self, name: str) -> CertKey:
        ck = self.state.certkeys.get(name)
        if ck is None:
            raise NitroFault(404, ERR_NO_SUCH_RESOURCE, f"No such resource [certkey, {name}]")
        return ck

    def _add_certkey(self, obj: dict[str, Any]) -> None:
        name = obj["certkey"]
        if name in self.state.certkeys:
            raise NitroFault(409, ERR_RESOURCE_EXISTS, "Resource already exists")
        cert = self._load_pair(obj["cert"], obj.get("key", ""))
        self.state.certkeys[name] = CertKey(name, obj["cert"], obj.get("key", ""), cert)
        self.state.saved = False

    def _update_certkey(self, obj: dict[str, Any]) -> None:
        ck = self._certkey(obj["certkey"])
        if not obj.get("cert"):
            raise NitroFault(400, ERR_REQUIRED_ARGUMENT, "Required argument missing [cert]")
        key_name = obj.get("key", "") or ck.key_path
        cert = self._load_pair(obj["cert"], key_name)
        if not obj.get("nodomaincheck") and _domains(cert) != _domains(ck.cert):
            raise NitroFault(
                599, ERR_DOMAIN_MISMATCH, "Domain name mismatch; use nodomaincheck to override"
            )
        if ck.link:
            issuer = self.state.certkeys[ck.link].cert
            if not _issued_by(cert, issuer):
                raise NitroFault(
                    599, ERR_ISSUER_MISMATCH, f"Certificate is not issued by linked [{ck.link}]"
                )
        ck.cert, ck.cert_path, ck.key_path = cert, obj["cert"], key_name
        self.state.saved = False

    def _link(self, name: str, issuer_name: str) -> None:
        ck, issuer = self._certkey(name), self._certkey(issuer_name)
        if ck.link:
            raise NitroFault(599, ERR_ALREADY_LINKED, "Certificate is already linked")
        if not _issued_by(ck.cert, issuer.cert):
            raise NitroFault(
                599, ERR_ISSUER_MISMATCH, f"Certificate is not issued by [{issuer_name}]"
            )
        ck.link = issuer_name
        self.state.saved = False


def _args(query: dict[str, list[str]]) -> dict[str, str]:
    """NITRO ``args=k1:v1,k2:v2`` (values URL-encoded) as a dict."""
    out: dict[str, str] = {}
    for raw in query.get("args", []):
        for pair in raw.split(","):
            key, _, value = pair.partition(":")
            out[key] = unquote(value)
    return out


def _domains(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return set(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        return {a.value for a in cert.subject if isinstance(a.value, str)}


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # InvalidSignature, ValueError, TypeError
        return False
    return True


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # e.g. a client that rejected our certificate during the TLS handshake


def _handler_for(fake: FakeNitroServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in separate writes: without this, Nagle's algorithm
            # and delayed ACKs add ~40 ms to every answer.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if fake.down == "503":
                self._send(503, b"<html><body>Service Unavailable</body></html>", "text/html")
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, doc, extra = fake.handle(self.command, self.path, headers, body)
            except NitroFault as fault:
                status, extra = fault.status, {}
                doc = {"errorcode": fault.errorcode, "message": fault.message, "severity": "ERROR"}
            self._send(status, json.dumps(doc).encode(), "application/json", extra)

        def _send(
            self, status: int, payload: bytes, ctype: str, extra: dict[str, str] | None = None
        ) -> None:
            reason = "Netscaler specific error" if status == 599 else None
            self.send_response(status, reason)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

    return Handler
