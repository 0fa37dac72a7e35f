"""A real nginx (Debian's /usr/sbin/nginx) serving TLS on a loopback port, and helpers to see
which certificate a client is served (a fresh TLS handshake)."""

from __future__ import annotations

import shlex
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from tests.support import free_port

NGINX = "/usr/sbin/nginx"


class NginxStartError(RuntimeError):
    """nginx did not come up (its stderr and error log are in the message)."""


def served_serial(port: int, server_name: str = "www.example.com") -> str | None:
    """Serial (lower hex) of the certificate a fresh TLS handshake with 127.0.0.1:port gets."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
            ctx.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError:
        return None
    return format(x509.load_der_x509_certificate(der).serial_number, "x") if der else None


def _children_cmdlines(pid: int) -> list[str]:
    """Command lines of the live child processes of ``pid`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat_fields[1]) == pid and stat_fields[0] != "Z":
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue  # the process exited while being read
    return found


@dataclass
class Nginx:
    """A running nginx: its prefix, config, TLS port and the certificate files it serves."""

    prefix: Path
    conf: Path
    port: int
    fullchain: Path
    key: Path
    proc: subprocess.Popen[bytes]

    def argv(self, *extra: str) -> list[str]:
        return [
            NGINX,
            "-p",
            str(self.prefix),
            "-c",
            str(self.conf),
            "-e",
            str(self.prefix / "error.log"),
            *extra,
        ]

    @property
    def reload_command(self) -> str:
        """``nginx -s reload`` for this instance (a files target's reload_command)."""
        return shlex.join(self.argv("-s", "reload"))

    @property
    def test_then_reload_command(self) -> str:
        """``nginx -t`` then reload, through ``sh -c``."""
        script = f"{shlex.join(self.argv('-t', '-q'))} && {shlex.join(self.argv('-s', 'reload'))}"
        return shlex.join(["sh", "-c", script])

    def settled_serial(self, deadline_s: float = 15.0) -> str | None:
        """Serial served once only one, current, worker is left.

        After a reload the old worker finishes its graceful shutdown asynchronously and can
        still accept a handshake with the previous certificate, so a single handshake right
        after a reload may see either generation."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            workers = _children_cmdlines(self.proc.pid)
            if len(workers) == 1 and "shutting down" not in workers[0]:
                break
            time.sleep(0.05)
        return served_serial(self.port)

    def wait_for_serial(self, serial: str, deadline_s: float = 15.0) -> str | None:
        """Poll (nginx reloads asynchronously) until only ``serial`` is served or the
        deadline; the serial then served."""
        deadline = time.monotonic() + deadline_s
        seen = self.settled_serial(deadline_s)
        while seen != serial and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = self.settled_serial(max(deadline - time.monotonic(), 0.0))
        return seen


def _config(prefix: Path, port: int, fullchain: Path, key: Path) -> str:
    return f"""
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {fullchain};
        ssl_certificate_key {key};
        return 200 "ok\\n";
    }}
}}
"""


@contextmanager
def run_nginx(
    workdir: Path, *, boot_fullchain: bytes, boot_key: bytes, boot_serial: str
) -> Iterator[Nginx]:
    """Start nginx under ``workdir`` serving a bootstrap certificate (nginx needs one to
    start; deployments replace ``fullchain.pem`` / ``privkey.pem`` in ``workdir/certs``).
    Stopped gracefully (SIGQUIT) on exit."""
    prefix = workdir / "nginx"
    certs = workdir / "certs"
    for d in (prefix / "tmp", prefix / "logs", certs):
        d.mkdir(parents=True, exist_ok=True)
    fullchain, key = certs / "fullchain.pem", certs / "privkey.pem"
    fullchain.write_bytes(boot_fullchain)
    key.write_bytes(boot_key)
    key.chmod(0o600)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(_config(prefix, port, fullchain, key))
    argv = [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    n = Nginx(prefix, conf, port, fullchain, key, proc)
    try:
        if n.wait_for_serial(boot_serial, deadline_s=10) != boot_serial:
            n.proc.kill()
            err = n.proc.communicate()[1].decode(errors="replace")
            log = (prefix / "error.log").read_text(errors="replace")
            raise NginxStartError(f"nginx did not start: {err}\n{log}")
        yield n
    finally:
        if n.proc.poll() is None:
            n.proc.send_signal(signal.SIGQUIT)
            try:
                n.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                n.proc.kill()
                n.proc.wait()
