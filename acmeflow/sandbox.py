"""Local ACME sandbox: Debian's ``pebble`` validating DNS-01 against Debian's ``bind9``.

``sandbox_up(home)`` starts both on free loopback ports:

* BIND (``named -g``) serves ``example.com``, ``example.org`` and ``challenges.example.net``
  authoritatively, each zone with its own TSIG key (hmac-sha256) allowed to update TXT
  records under it (RFC 2136). ``_acme-challenge.delegated.example.com`` is a CNAME into
  ``challenges.example.net`` so CNAME delegation of challenges can be tested: a query with
  RD set gets the CNAME and the target's TXT in one answer (pebble reads that). BIND also
  serves the root zone, so any other name is an immediate NXDOMAIN and nothing leaves
  loopback.
* pebble (Let's Encrypt's ACME test CA) with a listener certificate signed by a small CA
  generated here (``ca_bundle``), checking DNS-01 at the BIND above.

Everything lives in ``home``: configuration, logs, zone files and ``state.json`` (pids,
ports and the generated secrets; mode 0600). ``sandbox_down(home)`` stops exactly the
processes that ``sandbox_up`` started. This module does not use Prefect.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmeflow.processes import alive, free_tcp_port, spawn, start_time_of, terminate

__all__ = [
    "ZONES",
    "SandboxError",
    "SandboxInfo",
    "SandboxZone",
    "StoppedProcess",
    "ensure_packages",
    "pebble_root_pem",
    "sandbox_answers",
    "sandbox_down",
    "sandbox_status",
    "sandbox_stop",
    "sandbox_up",
]

#: The zones BIND serves in the sandbox.
ZONES: tuple[str, ...] = ("example.com", "example.org", "challenges.example.net")
TSIG_ALGORITHM = "hmac-sha256"
STATE_FILE = "state.json"
_STATE_VERSION = 1
_PEBBLE_CANDIDATES = ("pebble", "/usr/bin/pebble")
_NAMED_CANDIDATES = ("named", "/usr/sbin/named")
_LOG_TAIL_LINES = 30


class SandboxError(Exception):
    """The sandbox could not be started, inspected or stopped."""


@dataclass(frozen=True)
class SandboxZone:
    """A zone served by the sandbox BIND and the TSIG key allowed to update its TXT records."""

    name: str
    tsig_name: str
    tsig_algorithm: str
    tsig_secret: str  # base64

    def env_prefix(self) -> str:
        """``ACMEFLOW_SANDBOX_TSIG_<ZONE>_`` for this zone (dots and dashes as underscores)."""
        return (
            "ACMEFLOW_SANDBOX_TSIG_" + self.name.upper().replace(".", "_").replace("-", "_") + "_"
        )


@dataclass(frozen=True)
class SandboxInfo:
    """Everything a client needs to use a running sandbox."""

    home: Path
    directory_url: str
    ca_bundle: Path
    management_url: str
    dns_host: str
    dns_port: int
    zones: tuple[SandboxZone, ...]
    eab_required: bool
    eab_kid: str | None
    eab_hmac_key: str | None
    pebble_pid: int
    named_pid: int
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def dns_server(self) -> str:
        """``host:port`` of the sandbox BIND."""
        return f"{self.dns_host}:{self.dns_port}"

    def zone(self, name: str) -> SandboxZone:
        """The zone called ``name`` (trailing dot and case ignored)."""
        wanted = name.rstrip(".").lower()
        for zone in self.zones:
            if zone.name == wanted:
                return zone
        raise KeyError(f"the sandbox serves no zone {name!r} (it serves {', '.join(ZONES)})")

    def env(self) -> dict[str, str]:
        """Environment variables that point a client (and acmeflow's DNS checks) at the sandbox."""
        env = {
            "ACMEFLOW_SANDBOX_DIRECTORY_URL": self.directory_url,
            "ACMEFLOW_SANDBOX_CA_BUNDLE": str(self.ca_bundle),
            "ACMEFLOW_SANDBOX_MANAGEMENT_URL": self.management_url,
            "ACMEFLOW_SANDBOX_DNS_SERVER": self.dns_server,
            "ACMEFLOW_DNS_RESOLVERS": self.dns_server,
            "ACMEFLOW_DNS_QUERY_PORT": str(self.dns_port),
        }
        for zone in self.zones:
            prefix = zone.env_prefix()
            env[prefix + "NAME"] = zone.tsig_name
            env[prefix + "ALGORITHM"] = zone.tsig_algorithm
            env[prefix + "SECRET"] = zone.tsig_secret
        if self.eab_required and self.eab_kid and self.eab_hmac_key:
            env["ACMEFLOW_SANDBOX_EAB_KID"] = self.eab_kid
            env["ACMEFLOW_SANDBOX_EAB_HMAC_KEY"] = self.eab_hmac_key
        return env

    def to_json(self, *, include_secrets: bool = True) -> dict[str, Any]:
        """The info as JSON-ready data; ``include_secrets=False`` masks TSIG and EAB keys."""

        def secret(value: str | None) -> str | None:
            return value if include_secrets or value is None else "***"

        return {
            "home": str(self.home),
            "directory_url": self.directory_url,
            "ca_bundle": str(self.ca_bundle),
            "management_url": self.management_url,
            "dns_host": self.dns_host,
            "dns_port": self.dns_port,
            "zones": [
                {
                    "name": z.name,
                    "tsig_name": z.tsig_name,
                    "tsig_algorithm": z.tsig_algorithm,
                    "tsig_secret": secret(z.tsig_secret),
                }
                for z in self.zones
            ],
            "eab_required": self.eab_required,
            "eab_kid": self.eab_kid,
            "eab_hmac_key": secret(self.eab_hmac_key),
            "pebble_pid": self.pebble_pid,
            "named_pid": self.named_pid,
            "options": dict(self.options),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SandboxInfo:
        """Rebuild the info written by :meth:`to_json` (with secrets)."""
        return cls(
            home=Path(data["home"]),
            directory_url=data["directory_url"],
            ca_bundle=Path(data["ca_bundle"]),
            management_url=data["management_url"],
            dns_host=data["dns_host"],
            dns_port=int(data["dns_port"]),
            zones=tuple(SandboxZone(**z) for z in data["zones"]),
            eab_required=bool(data["eab_required"]),
            eab_kid=data.get("eab_kid"),
            eab_hmac_key=data.get("eab_hmac_key"),
            pebble_pid=int(data["pebble_pid"]),
            named_pid=int(data["named_pid"]),
            options=dict(data.get("options") or {}),
        )


@dataclass(frozen=True)
class StoppedProcess:
    """A sandbox process that :func:`sandbox_stop` ended."""

    name: str
    pid: int


# --- packages ---------------------------------------------------------------------------------


def _which(candidates: tuple[str, ...]) -> str | None:
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
        if os.path.isabs(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_packages() -> None:
    """Make sure ``pebble`` and ``named`` exist; install them with apt-get when root."""
    if _which(_PEBBLE_CANDIDATES) and _which(_NAMED_CANDIDATES):
        return
    hint = (
        "The acmeflow sandbox needs Debian's pebble and bind9 packages. Install them with:\n"
        "  sudo apt-get install -y pebble bind9 bind9-utils"
    )
    apt = shutil.which("apt-get")
    if os.geteuid() != 0 or apt is None:
        raise SandboxError(hint)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "--no-install-recommends", "pebble", "bind9", "bind9-utils"]
    result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:  # stale package lists: refresh once and retry
        subprocess.run([apt, "update"], env=env, capture_output=True, check=False)
        result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not (_which(_PEBBLE_CANDIDATES) and _which(_NAMED_CANDIDATES)):
        tail = "\n".join((result.stderr or result.stdout).splitlines()[-5:])
        raise SandboxError(f"{hint}\napt-get failed:\n{tail}")


# --- processes --------------------------------------------------------------------------------

# Homes started by this interpreter without detach: stopped at exit.
_ATTACHED_HOMES: set[Path] = set()
_LOCK = threading.Lock()


def _free_dns_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise SandboxError("no free UDP+TCP port on 127.0.0.1 for the sandbox DNS server")


def _write_private(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _make_tls_material(tls_dir: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf for ``127.0.0.1``/``localhost`` signed by it: (ca, cert, key) paths."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"acmeflow sandbox CA {secrets.token_hex(4)}")]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = tls_dir / "ca.pem"
    cert_path = tls_dir / "listener.pem"
    key_path = tls_dir / "listener.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(ca_path, 0o644)
    cert_path.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        key_path,
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return ca_path, cert_path, key_path


# --- BIND -------------------------------------------------------------------------------------


def _tsig_key_name(zone: str) -> str:
    return "acmeflow-" + zone.replace(".", "-") + "-key"


def _zone_file(zone: str) -> str:
    lines = [
        f"$ORIGIN {zone}.",
        "$TTL 60",
        f"@ IN SOA ns1.{zone}. hostmaster.{zone}. ( 1 60 60 3600 1 )",
        f"@ IN NS ns1.{zone}.",
        "ns1 IN A 127.0.0.1",
    ]
    if zone == "example.com":
        lines += [
            "@ IN A 127.0.0.1",
            "www IN A 127.0.0.1",
            "_acme-challenge.delegated IN CNAME "
            "_acme-challenge.delegated.example.com.challenges.example.net.",
        ]
    return "\n".join(lines) + "\n"


# Served locally so that recursion (needed for cross-zone CNAME answers) never leaves the box.
_ROOT_ZONE = """$TTL 60
@ IN SOA ns1.sandbox. hostmaster.sandbox. ( 1 60 60 3600 1 )
@ IN NS ns1.sandbox.
ns1.sandbox. IN A 127.0.0.1
"""


def _named_conf(named_dir: Path, port: int, zones: tuple[SandboxZone, ...]) -> str:
    def q(path: Path | str) -> str:
        return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'

    parts = [
        "options {",
        f"    directory {q(named_dir)};",
        f"    pid-file {q(named_dir / 'named.pid')};",
        f"    session-keyfile {q(named_dir / 'session.key')};",
        f"    managed-keys-directory {q(named_dir)};",
        f"    listen-on port {port} {{ 127.0.0.1; }};",
        "    listen-on-v6 { none; };",
        # BIND 9.18 only chases a CNAME into another zone it serves when the query may
        # recurse, and pebble's DNS-01 check reads the TXT from that one answer. Recursion is
        # therefore on for loopback, but hermetic: the root zone below is served locally, so
        # a name outside the sandbox zones gets an immediate NXDOMAIN and nothing leaves
        # the machine.
        "    recursion yes;",
        "    allow-recursion { 127.0.0.1; };",
        "    allow-query-cache { 127.0.0.1; };",
        "    servfail-ttl 0;",  # no cached SERVFAIL for queries that raced the zone load
        "    max-cache-size 8m;",
        "    allow-query { any; };",
        "    allow-transfer { none; };",
        "    notify no;",
        "    dnssec-validation no;",
        "    automatic-interface-scan no;",
        "};",
        "controls { };",
    ]
    parts += ['zone "." {', "    type primary;", f"    file {q(named_dir / 'root.zone')};", "};"]
    for zone in zones:
        parts += [
            f'key "{zone.tsig_name}" {{',
            f"    algorithm {zone.tsig_algorithm};",
            f'    secret "{zone.tsig_secret}";',
            "};",
            f'zone "{zone.name}" {{',
            "    type primary;",
            f"    file {q(named_dir / (zone.name + '.zone'))};",
            f'    update-policy {{ grant "{zone.tsig_name}" zonesub TXT; }};',
            "};",
        ]
    return "\n".join(parts) + "\n"


def _dns_ready(port: int, zones: tuple[SandboxZone, ...], timeout: float = 0.2) -> bool:
    for zone in zones:
        query = dns.message.make_query(zone.name + ".", dns.rdatatype.SOA)
        try:
            answer = dns.query.udp(query, "127.0.0.1", timeout=timeout, port=port)
        except (dns.exception.DNSException, OSError):
            return False
        if answer.rcode() != dns.rcode.NOERROR or not answer.answer:
            return False
    return True


# --- pebble -----------------------------------------------------------------------------------


def _directory_ready(url: str, ca_bundle: Path, timeout: float = 1.0) -> bool:
    try:
        response = requests.get(url, verify=str(ca_bundle), timeout=timeout)
        return response.status_code == 200 and "newNonce" in response.json()
    except (requests.RequestException, ValueError):
        return False


# --- state ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _home_lock(home: Path) -> Iterator[None]:
    """Serialise up/down/status on one home across threads and processes."""
    home.mkdir(parents=True, exist_ok=True)
    with _LOCK:
        fd = os.open(home / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _read_state(home: Path) -> dict[str, Any] | None:
    path = home / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SandboxError(f"unreadable sandbox state {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict) or data.get("version") != _STATE_VERSION:
        raise SandboxError(f"sandbox state {path} is from another version; remove it")
    return data


def _processes(state: Mapping[str, Any]) -> list[tuple[str, int, int | None]]:
    procs = state.get("processes", {})
    return [(name, int(p["pid"]), p.get("start_time")) for name, p in sorted(procs.items())]


def _stop_state(home: Path, state: Mapping[str, Any] | None) -> list[StoppedProcess]:
    stopped: list[StoppedProcess] = []
    if state is not None:
        for name, pid, start in _processes(state):
            if terminate(pid, start):
                stopped.append(StoppedProcess(name, pid))
    with contextlib.suppress(FileNotFoundError):
        (home / STATE_FILE).unlink()
    _ATTACHED_HOMES.discard(home)
    return stopped


def _running_state(home: Path) -> dict[str, Any] | None:
    """The state when every sandbox process runs; otherwise stop survivors and forget it."""
    state = _read_state(home)
    if state is None:
        return None
    if all(alive(pid, start) for _, pid, start in _processes(state)):
        return state
    _stop_state(home, state)
    return None


def _tail(path: Path, masks: list[str]) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    except FileNotFoundError:
        return "(no log)"
    text = "\n".join(lines)
    for mask in masks:
        if mask:
            text = text.replace(mask, "***")
    return text


# --- public API -------------------------------------------------------------------------------


def _options(
    eab: bool,
    nonce_reject: int,
    authz_reuse: int | None,
    extra_pebble_env: Mapping[str, str] | None,
) -> dict[str, Any]:
    return {
        "eab": bool(eab),
        "nonce_reject": int(nonce_reject),
        "authz_reuse": authz_reuse,
        "extra_pebble_env": dict(sorted((extra_pebble_env or {}).items())),
    }


def sandbox_up(
    home: Path,
    *,
    eab: bool = False,
    nonce_reject: int = 0,
    authz_reuse: int | None = None,
    extra_pebble_env: Mapping[str, str] | None = None,
    timeout: float = 30,
    detach: bool = False,
) -> SandboxInfo:
    """Start pebble and BIND in ``home`` (or return the running sandbox with the same options).

    ``eab`` makes pebble require External Account Binding, ``nonce_reject`` is the percentage
    of good nonces pebble rejects as bad, ``authz_reuse`` the percentage of authorizations it
    reuses. ``detach=True`` (the CLI) lets the processes outlive this interpreter; otherwise
    they are stopped when it exits. Raises :class:`SandboxError` when they do not come up
    within ``timeout`` seconds, or when a sandbox with other options already runs there.
    """
    home = Path(home).expanduser().resolve()
    if not 0 <= nonce_reject <= 100:
        raise SandboxError("nonce_reject is a percentage (0-100)")
    if authz_reuse is not None and not 0 <= authz_reuse <= 100:
        raise SandboxError("authz_reuse is a percentage (0-100)")
    options = _options(eab, nonce_reject, authz_reuse, extra_pebble_env)
    with _home_lock(home):
        state = _running_state(home)
        if state is not None:
            if state["options"] != options:
                raise SandboxError(
                    f"a sandbox with other options already runs in {home} "
                    f"(running: {json.dumps(state['options'], sort_keys=True)}); "
                    "run `acmeflow sandbox down` (or sandbox_down) first"
                )
            return SandboxInfo.from_json(state["info"])
        ensure_packages()
        last_error: SandboxError | None = None
        for _attempt in range(3):  # a free port can be taken between probing and binding
            try:
                return _start(home, options, timeout=timeout, detach=detach)
            except _PortTaken as exc:
                last_error = exc
        assert last_error is not None
        raise last_error


class _PortTaken(SandboxError):
    pass


def _start(home: Path, options: Mapping[str, Any], *, timeout: float, detach: bool) -> SandboxInfo:
    deadline = time.monotonic() + timeout
    os.chmod(home, 0o700)
    named_dir = home / "named"
    tls_dir = home / "tls"
    for folder in (named_dir, tls_dir):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(mode=0o700)
    for log_name in ("named.log", "pebble.log"):
        with contextlib.suppress(FileNotFoundError):
            (home / log_name).unlink()

    zones = tuple(
        SandboxZone(
            name=name,
            tsig_name=_tsig_key_name(name),
            tsig_algorithm=TSIG_ALGORITHM,
            tsig_secret=base64.b64encode(secrets.token_bytes(32)).decode(),
        )
        for name in ZONES
    )
    eab_kid = f"kid-{secrets.token_hex(6)}" if options["eab"] else None
    eab_hmac = (
        base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("=")
        if options["eab"]
        else None
    )
    masks = [z.tsig_secret for z in zones] + ([eab_hmac] if eab_hmac else [])

    # BIND
    dns_port = _free_dns_port()
    for zone in zones:
        (named_dir / f"{zone.name}.zone").write_text(_zone_file(zone.name))
    (named_dir / "root.zone").write_text(_ROOT_ZONE)
    named_conf = home / "named.conf"
    _write_private(named_conf, _named_conf(named_dir, dns_port, zones))
    named_bin = _which(_NAMED_CANDIDATES)
    pebble_bin = _which(_PEBBLE_CANDIDATES)
    assert named_bin and pebble_bin
    base_env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
    }
    # Running as root, named stays root (no -u): the home may sit below folders the bind
    # user cannot enter (pytest's 0700 tmp dirs), and it only listens on loopback.
    named_argv = [named_bin, "-g", "-4", "-c", str(named_conf)]
    named = spawn(named_argv, log=home / "named.log", env=base_env, cwd=named_dir, detach=detach)

    # pebble
    ca_path, cert_path, key_path = _make_tls_material(tls_dir)
    listen_port, mgmt_port, http_port, tls_port = (free_tcp_port() for _ in range(4))
    pebble_cfg: dict[str, Any] = {
        "listenAddress": f"127.0.0.1:{listen_port}",
        "managementListenAddress": f"127.0.0.1:{mgmt_port}",
        "certificate": str(cert_path),
        "privateKey": str(key_path),
        "httpPort": http_port,
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": bool(options["eab"]),
    }
    if eab_kid and eab_hmac:
        pebble_cfg["externalAccountMACKeys"] = {eab_kid: eab_hmac}
    pebble_conf = home / "pebble-config.json"
    _write_private(pebble_conf, json.dumps({"pebble": pebble_cfg}, indent=2))
    pebble_env = dict(base_env)
    if "PEBBLE_VA_SLEEPTIME" not in options["extra_pebble_env"]:  # a bench may want the delay
        pebble_env["PEBBLE_VA_NOSLEEP"] = "1"
    # always said: unset, pebble rejects 5 % of good nonces (a test-only behaviour no real CA
    # has), which made one-shot ACME calls of the tests fail now and then
    pebble_env["PEBBLE_WFE_NONCEREJECT"] = str(options["nonce_reject"])
    if options["authz_reuse"] is not None:
        pebble_env["PEBBLE_AUTHZREUSE"] = str(options["authz_reuse"])
    pebble_env.update(options["extra_pebble_env"])
    pebble_argv = [pebble_bin, "-config", str(pebble_conf), "-dnsserver", f"127.0.0.1:{dns_port}"]
    pebble = spawn(pebble_argv, log=home / "pebble.log", env=pebble_env, cwd=home, detach=detach)

    info = SandboxInfo(
        home=home,
        directory_url=f"https://127.0.0.1:{listen_port}/dir",
        ca_bundle=ca_path,
        management_url=f"https://127.0.0.1:{mgmt_port}",
        dns_host="127.0.0.1",
        dns_port=dns_port,
        zones=zones,
        eab_required=bool(options["eab"]),
        eab_kid=eab_kid,
        eab_hmac_key=eab_hmac,
        pebble_pid=pebble.pid,
        named_pid=named.pid,
        options=dict(options),
    )
    state: dict[str, Any] = {
        "version": _STATE_VERSION,
        "options": dict(options),
        "detached": detach,
        "processes": {
            "named": {"pid": named.pid, "start_time": start_time_of(named.pid)},
            "pebble": {"pid": pebble.pid, "start_time": start_time_of(pebble.pid)},
        },
        "info": info.to_json(include_secrets=True),
    }
    # Written before waiting so that a crash of this interpreter still leaves `down` able to
    # stop exactly these processes.
    _write_private(home / STATE_FILE, json.dumps(state, indent=2))

    dns_ok = web_ok = False
    try:
        while True:
            for proc, log in ((named, "named.log"), (pebble, "pebble.log")):
                if proc.poll() is not None:
                    raise _failure(home, log, f"exited with status {proc.returncode}", masks)
            dns_ok = dns_ok or _dns_ready(dns_port, zones)
            web_ok = web_ok or _directory_ready(info.directory_url, ca_path)
            if dns_ok and web_ok:
                break
            if time.monotonic() > deadline:
                which = "named.log" if not dns_ok else "pebble.log"
                raise _failure(home, which, f"not ready after {timeout:g} s", masks)
            time.sleep(0.05)
    except BaseException:
        _stop_state(home, state)
        raise
    if not detach:
        if not _ATTACHED_HOMES:
            atexit.register(_stop_attached)
        _ATTACHED_HOMES.add(home)
    return info


def _failure(home: Path, log: str, what: str, masks: list[str]) -> SandboxError:
    tail = _tail(home / log, masks)
    name = log.removesuffix(".log")
    message = f"sandbox {name} {what}; last lines of {home / log}:\n{tail}"
    lowered = tail.lower()
    port_markers = ("address in use", "address already in use", "unable to listen on any")
    if any(marker in lowered for marker in port_markers):
        return _PortTaken(message)
    return SandboxError(message)


def _stop_attached() -> None:
    for home in list(_ATTACHED_HOMES):
        with contextlib.suppress(Exception):
            sandbox_down(home)


def sandbox_stop(home: Path) -> list[StoppedProcess]:
    """Stop the processes the sandbox in ``home`` started; return those that were running."""
    home = Path(home).expanduser().resolve()
    if not (home / STATE_FILE).exists():
        return []
    with _home_lock(home):
        try:
            state = _read_state(home)
        except SandboxError:
            state = None
        return _stop_state(home, state)


def sandbox_down(home: Path) -> bool:
    """Stop exactly the processes the sandbox in ``home`` started; True if any was running."""
    return bool(sandbox_stop(home))


def sandbox_status(home: Path) -> SandboxInfo | None:
    """The running sandbox in ``home``, or None (a half-dead sandbox is stopped and forgotten)."""
    home = Path(home).expanduser().resolve()
    if not (home / STATE_FILE).exists():
        return None
    with _home_lock(home):
        state = _running_state(home)
        return SandboxInfo.from_json(state["info"]) if state is not None else None


def sandbox_answers(info: SandboxInfo, timeout: float = 5.0) -> bool:
    """Whether the running sandbox's CA serves its directory and BIND its zones within
    ``timeout`` seconds each (a process can run and still hang: pebble under heavy load)."""
    return _directory_ready(info.directory_url, info.ca_bundle, timeout) and _dns_ready(
        info.dns_port, info.zones, timeout
    )


def pebble_root_pem(info: SandboxInfo, index: int = 0) -> bytes:
    """PEM of a root pebble signs under (management ``/roots/N``; N > 0: alternate roots)."""
    url = info.management_url.rstrip("/") + f"/roots/{index}"
    try:
        response = requests.get(url, verify=str(info.ca_bundle), timeout=10)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise SandboxError(f"cannot fetch pebble's root from {url}: {exc}") from None
    return response.content
