"""A separate virtualenv with certbot and certbot-dns-rfc2136, the peer the benchmarks compare to.

``ensure_certbot()`` creates ``.bench/certbot-venv`` with ``python3 -m venv`` and installs
``certbot==5.8.*`` and ``certbot-dns-rfc2136==5.8.*`` from PyPI with pip (idempotent: an
existing venv with a working ``certbot`` is reused). When 5.8 is not available the newest
release is taken instead and its version is reported. Run it alone with
``python -m bench.certbot_env`` to prepare the venv ahead of a benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from acmeflow.sandbox import SandboxInfo

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = ROOT / ".bench" / "certbot-venv"
WANTED_SERIES = "5.8"
PACKAGES = ("certbot", "certbot-dns-rfc2136")
_MARKER = "acmeflow-bench.json"
_TAIL_LINES = 12


@dataclass(frozen=True)
class CertbotWorkspace:
    """certbot's config, work and logs folders under ``root``, with an RFC 2136 credentials
    file for the sandbox's ``example.com`` zone (0600)."""

    root: Path
    credentials: Path
    common_args: tuple[str, ...]  # non-interactive, account email, CA, folders
    env: dict[str, str]  # the process environment plus the sandbox CA bundle

    @property
    def dir_args(self) -> list[str]:
        """``--config-dir``/``--work-dir``/``--logs-dir`` (enough for ``certbot renew``)."""
        return _dir_args(self.root)

    @classmethod
    def fresh(cls, root: Path, info: SandboxInfo, email: str) -> CertbotWorkspace:
        """Empty ``root`` and write the credentials of the sandbox zone into it."""
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True, mode=0o700)
        zone = info.zone("example.com")
        credentials = root / "rfc2136.ini"
        fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(
                f"dns_rfc2136_server = {info.dns_host}\n"
                f"dns_rfc2136_port = {info.dns_port}\n"
                f"dns_rfc2136_name = {zone.tsig_name}\n"
                f"dns_rfc2136_secret = {zone.tsig_secret}\n"
                f"dns_rfc2136_algorithm = {zone.tsig_algorithm.upper()}\n"
            )
        common = (
            "--non-interactive", "--agree-tos", "-m", email,
            "--server", info.directory_url, *_dir_args(root),
        )  # fmt: skip
        env = {**os.environ, "REQUESTS_CA_BUNDLE": str(info.ca_bundle)}
        return cls(root, credentials, common, env)


def _dir_args(root: Path) -> list[str]:
    return [
        "--config-dir", str(root / "config"),
        "--work-dir", str(root / "work"),
        "--logs-dir", str(root / "logs"),
    ]  # fmt: skip


class CertbotUnavailable(Exception):
    """certbot could not be installed or does not run; the message says why and what to do."""


@dataclass(frozen=True)
class CertbotEnv:
    """A venv with certbot and its RFC 2136 plugin."""

    venv: Path
    certbot: Path
    certbot_version: str
    plugin_version: str
    exact: bool  # True when both are from the wanted 5.8 series

    def describe(self) -> str:
        """``certbot X + certbot-dns-rfc2136 Y`` plus a note when not the wanted series."""
        text = f"certbot {self.certbot_version} + certbot-dns-rfc2136 {self.plugin_version}"
        if not self.exact:
            text += f" (certbot {WANTED_SERIES}.* not available; newest taken)"
        return text


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-_TAIL_LINES:])


def _run(argv: list[str], *, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CertbotUnavailable(f"`{' '.join(argv[:3])} ...` failed: {exc}") from None


def _installed_versions(python: Path) -> dict[str, str]:
    code = (
        "import json, importlib.metadata as m\n"
        "out = {}\n"
        f"for name in {list(PACKAGES)!r}:\n"
        "    try:\n"
        "        out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(out))\n"
    )
    result = _run([str(python), "-c", code], timeout=60)
    if result.returncode != 0:
        return {}
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}
    return {str(k): str(v) for k, v in data.items()}


def _works(certbot: Path) -> bool:
    if not certbot.exists():
        return False
    result = _run([str(certbot), "--version"], timeout=120)
    return result.returncode == 0


def _env(venv: Path) -> CertbotEnv | None:
    """The venv as it is, when certbot and the plugin are installed and certbot runs."""
    python = venv / "bin" / "python"
    certbot = venv / "bin" / "certbot"
    if not python.exists():
        return None
    versions = _installed_versions(python)
    if not all(name in versions for name in PACKAGES) or not _works(certbot):
        return None
    exact = all(versions[name].startswith(WANTED_SERIES + ".") for name in PACKAGES)
    return CertbotEnv(
        venv=venv,
        certbot=certbot,
        certbot_version=versions["certbot"],
        plugin_version=versions["certbot-dns-rfc2136"],
        exact=exact,
    )


def _pip_install(python: Path, specs: list[str]) -> subprocess.CompletedProcess[str]:
    return _run([str(python), "-m", "pip", "install", "--quiet", *specs])


def ensure_certbot(venv: Path = DEFAULT_VENV, *, log: bool = True) -> CertbotEnv:
    """Create (or reuse) ``venv`` with certbot 5.8 and certbot-dns-rfc2136 5.8 installed.

    Falls back to the newest available versions when 5.8 cannot be installed. Raises
    :class:`CertbotUnavailable` with pip's last lines when nothing can be installed.
    """
    existing = _env(venv)
    if existing is not None:
        return existing
    python3 = shutil.which("python3") or sys.executable
    if not (venv / "bin" / "python").exists():
        if venv.exists():
            shutil.rmtree(venv)
        venv.parent.mkdir(parents=True, exist_ok=True)
        if log:
            print(f"creating {venv} ...", file=sys.stderr, flush=True)
        made = _run([python3, "-m", "venv", str(venv)], timeout=300)
        if made.returncode != 0:
            raise CertbotUnavailable(
                f"`python3 -m venv {venv}` failed (Debian needs the python3-venv package):\n"
                + _tail(made.stderr or made.stdout)
            )
    python = venv / "bin" / "python"
    wanted = [f"{name}=={WANTED_SERIES}.*" for name in PACKAGES]
    if log:
        print(f"installing {' '.join(wanted)} into {venv} ...", file=sys.stderr, flush=True)
    result = _pip_install(python, wanted)
    if result.returncode != 0:
        if log:
            print(
                f"certbot {WANTED_SERIES}.* is not installable; trying the newest release ...",
                file=sys.stderr,
                flush=True,
            )
        first_error = _tail(result.stderr or result.stdout)
        result = _pip_install(python, ["--upgrade", *PACKAGES])
        if result.returncode != 0:
            raise CertbotUnavailable(
                f"cannot install certbot into {venv} with pip (is PyPI reachable?).\n"
                f"pip said for {' '.join(wanted)}:\n{first_error}\n"
                f"and for the newest release:\n{_tail(result.stderr or result.stdout)}\n"
                "Run the benchmark with --skip-certbot to measure acmeflow alone."
            )
    env = _env(venv)
    if env is None:
        raise CertbotUnavailable(
            f"certbot was installed into {venv} but `{venv / 'bin' / 'certbot'} --version` "
            "does not run; remove the folder and try again"
        )
    (venv / _MARKER).write_text(
        json.dumps({"certbot": env.certbot_version, "certbot-dns-rfc2136": env.plugin_version})
    )
    if log and not env.exact:
        print(f"note: using {env.describe()}", file=sys.stderr, flush=True)
    return env


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.certbot_env [--venv PATH]``: prepare the venv and print what is in it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="venv folder")
    args = parser.parse_args(argv)
    try:
        env = ensure_certbot(args.venv)
    except CertbotUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{env.describe()} in {env.venv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
