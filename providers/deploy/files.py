"""Deploy target ``files``: write PEM files atomically, then run a reload command.

Used for nginx, HAProxy, Apache, Postfix, ... Each file is replaced atomically (temporary
file in the same directory, then rename); the private key is created with its final mode
(0600 by default) from the start. When the reload command fails or times out, the previous
files are put back, the reload is run once more to restore service, and a
:class:`core.errors.DeployError` carries the tail of the command's stderr.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shlex
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from acmeflow.core.errors import ConfigError
from acmeflow.core.files import atomic_write
from acmeflow.providers.deploy.base import (
    CertificateBundle,
    DeployOutcome,
    TargetType,
    setting,
)
from acmeflow.providers.deploy.common import deploy_error, serial_of_pem, text_tail
from acmeflow.providers.settings import setting_bool, setting_float, setting_mode

log = logging.getLogger(__name__)

TYPE_NAME = "files"
DEFAULT_KEY_MODE = 0o600
DEFAULT_CERT_MODE = 0o644
DEFAULT_RELOAD_TIMEOUT = 30.0


@dataclass(frozen=True)
class _PlannedFile:
    path: Path
    data: bytes
    mode: int
    is_key: bool


@dataclass(frozen=True)
class _Previous:
    path: Path
    data: bytes | None  # None: the file did not exist
    mode: int


def _resolve_owner(owner: str) -> tuple[int, int]:
    """``user[:group]`` (names or numeric ids) to ``(uid, gid)``; -1 means unchanged."""
    user, _, group = owner.partition(":")
    uid = gid = -1
    try:
        if user:
            uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(
            detail=f"{TYPE_NAME}: owner {owner!r} names an unknown user or group"
        ) from None
    return uid, gid


class FilesTarget:
    """Writes fullchain/key (and optionally cert/chain) files, then reloads the service."""

    type_name = TYPE_NAME

    def __init__(
        self,
        *,
        fullchain_path: str,
        key_path: str,
        cert_path: str = "",
        chain_path: str = "",
        owner: str = "",
        key_mode: int = DEFAULT_KEY_MODE,
        cert_mode: int = DEFAULT_CERT_MODE,
        reload_command: str = "",
        reload_timeout: float = DEFAULT_RELOAD_TIMEOUT,
        follow_symlinks: bool = False,
    ) -> None:
        self.follow_symlinks = follow_symlinks
        self.fullchain_path = Path(fullchain_path)
        self.key_path = Path(key_path)
        self.cert_path = Path(cert_path) if cert_path else None
        self.chain_path = Path(chain_path) if chain_path else None
        self.uid, self.gid = _resolve_owner(owner) if owner else (-1, -1)
        self.key_mode = key_mode
        self.cert_mode = cert_mode
        try:
            self.reload_argv = shlex.split(reload_command) if reload_command else []
        except ValueError as exc:
            raise ConfigError(
                detail=f"{TYPE_NAME}: reload_command cannot be parsed: {exc}"
            ) from None
        self.reload_timeout = reload_timeout
        paths = [self.fullchain_path, self.key_path, self.cert_path, self.chain_path]
        given = [p for p in paths if p is not None]
        if len({p.resolve() for p in given}) != len(given):
            raise ConfigError(
                detail=f"{TYPE_NAME}: fullchain_path, key_path, cert_path and chain_path "
                "must be different files"
            )

    # --- public API -------------------------------------------------------------------

    def deploy(self, bundle: CertificateBundle) -> DeployOutcome:
        """Write the bundle's files (only when they differ) and run the reload command."""
        planned = self._plan(bundle)
        previous = [self._read_previous(f.path) for f in planned]
        if all(prev.data == f.data for prev, f in zip(previous, planned, strict=True)):
            self._fix_modes(planned, previous)
            return DeployOutcome(
                changed=False,
                detail=f"files already hold serial {bundle.serial}; nothing written",
                location=str(self.fullchain_path),
            )

        written: list[_Previous] = []
        try:
            for prev, f in zip(previous, planned, strict=True):
                if prev.data == f.data:
                    continue
                self._write(f.path, f.data, f.mode)
                written.append(prev)
        except OSError as exc:
            self._restore(written)
            raise deploy_error(
                TYPE_NAME, f"cannot write {exc.filename or 'file'}: {exc.strerror or exc}"
            ) from None

        if self.reload_argv:
            failure = self._run_reload()
            if failure is not None:
                message, retryable = failure
                restore_note = self._restore(written)
                second = self._run_reload()
                after = (
                    "service reloaded with the previous files"
                    if second is None
                    else f"reload with the previous files also failed: {second[0]}"
                )
                raise deploy_error(
                    TYPE_NAME,
                    f"reload command failed ({message}); previous files restored{restore_note}; "
                    f"{after}",
                    retryable=retryable,
                )
        names = ", ".join(str(p.path) for p in written)
        reload_note = f"; reloaded with {self.reload_argv[0]}" if self.reload_argv else ""
        return DeployOutcome(
            changed=True,
            detail=f"serial {bundle.serial} written to {names}{reload_note}",
            location=str(self.fullchain_path),
        )

    def current_serial(self, name: str | None = None) -> str | None:
        """Serial of the leaf in the fullchain file (None when absent or unreadable)."""
        try:
            data = self.fullchain_path.read_bytes()
        except OSError:
            return None
        return serial_of_pem(data)

    # --- internals --------------------------------------------------------------------

    def _plan(self, bundle: CertificateBundle) -> list[_PlannedFile]:
        files = [
            _PlannedFile(self.key_path, bundle.key_pem, self.key_mode, True),
            _PlannedFile(self.fullchain_path, bundle.fullchain_pem, self.cert_mode, False),
        ]
        if self.cert_path is not None:
            files.append(_PlannedFile(self.cert_path, bundle.cert_pem, self.cert_mode, False))
        if self.chain_path is not None:
            files.append(_PlannedFile(self.chain_path, bundle.chain_pem, self.cert_mode, False))
        return [replace(f, path=self._destination(f.path)) for f in files]

    def _destination(self, path: Path) -> Path:
        """Where ``path`` is really written: itself, or (``follow_symlinks``) the file its
        symbolic link points to, so the link stays a link. A link is refused otherwise: it
        could make acmeflow write a key into a file that belongs to something else."""
        try:
            is_link = stat.S_ISLNK(path.lstat().st_mode)
        except FileNotFoundError:
            return path
        except OSError as exc:
            raise deploy_error(TYPE_NAME, f"cannot inspect {path}: {exc.strerror or exc}") from None
        if not is_link:
            return path
        if not self.follow_symlinks:
            raise deploy_error(
                TYPE_NAME,
                f"{path} is a symbolic link (to {os.readlink(path)}); refusing to write through "
                "it (set follow_symlinks=true on the target to write the file it points to)",
            )
        return Path(os.path.realpath(path))

    @staticmethod
    def _read_previous(path: Path) -> _Previous:
        """The current content and mode of ``path``, opened without following a link."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return _Previous(path, None, 0)
        except OSError as exc:
            raise deploy_error(TYPE_NAME, f"cannot read {path}: {exc.strerror or exc}") from None
        with os.fdopen(fd, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode & 0o7777
            return _Previous(path, handle.read(), mode)

    def _write(self, path: Path, data: bytes, mode: int) -> None:
        if not path.parent.is_dir():
            raise FileNotFoundError(2, "directory does not exist", str(path.parent))
        atomic_write(path, data, mode=mode, uid=self.uid, gid=self.gid)

    def _fix_modes(self, planned: list[_PlannedFile], previous: list[_Previous]) -> None:
        for f, prev in zip(planned, previous, strict=True):
            if prev.mode != f.mode:
                try:
                    os.chmod(f.path, f.mode)
                except OSError as exc:
                    log.warning("%s: cannot set mode of %s: %s", TYPE_NAME, f.path, exc.strerror)

    def _restore(self, written: list[_Previous]) -> str:
        """Put back what ``written`` replaced; returns a note about files that failed."""
        failed: list[str] = []
        for prev in reversed(written):
            try:
                if prev.data is None:
                    prev.path.unlink(missing_ok=True)
                else:
                    atomic_write(prev.path, prev.data, mode=prev.mode, uid=self.uid, gid=self.gid)
            except OSError as exc:
                failed.append(f"{prev.path} ({exc.strerror or exc})")
        return f" except {', '.join(failed)}" if failed else ""

    def _run_reload(self) -> tuple[str, bool] | None:
        """Run the reload command; None on success, else (reason, retryable)."""
        argv = self.reload_argv
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                timeout=self.reload_timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            stderr = (exc.stderr or b"").decode("utf-8", "replace")
            tail = text_tail(stderr)
            return (
                f"{argv[0]} timed out after {self.reload_timeout:g} s"
                + (f": {tail}" if tail else ""),
                True,
            )
        except OSError as exc:
            return f"cannot run {argv[0]}: {exc.strerror or exc}", False
        if proc.returncode != 0:
            stderr = proc.stderr.decode("utf-8", "replace") or proc.stdout.decode(
                "utf-8", "replace"
            )
            tail = text_tail(stderr)
            return f"{argv[0]} exited with {proc.returncode}" + (f": {tail}" if tail else ""), False
        return None


def build_files_target(settings: Mapping[str, str], secrets: Mapping[str, str]) -> FilesTarget:
    """Factory for the registry: a :class:`FilesTarget` from its settings."""
    del secrets  # the files target has no secrets
    try:
        return FilesTarget(
            fullchain_path=settings["fullchain_path"],
            key_path=settings["key_path"],
            cert_path=settings.get("cert_path", ""),
            chain_path=settings.get("chain_path", ""),
            owner=settings.get("owner", ""),
            key_mode=setting_mode(settings, "key_mode", DEFAULT_KEY_MODE, type_name=TYPE_NAME),
            cert_mode=setting_mode(settings, "cert_mode", DEFAULT_CERT_MODE, type_name=TYPE_NAME),
            reload_command=settings.get("reload_command", ""),
            reload_timeout=setting_float(
                settings, "reload_timeout", DEFAULT_RELOAD_TIMEOUT, type_name=TYPE_NAME
            ),
            follow_symlinks=setting_bool(settings, "follow_symlinks", TYPE_NAME),
        )
    except KeyError as exc:
        raise ConfigError(detail=f"{TYPE_NAME}: missing required setting {exc.args[0]}") from None


TARGET = TargetType(
    name=TYPE_NAME,
    label="Files on disk + reload command (nginx, HAProxy, ...)",
    fields=(
        setting("fullchain_path", "leaf + intermediates PEM file", required=True),
        setting("key_path", "private key PEM file (written 0600)", required=True),
        setting("cert_path", "leaf-only PEM file"),
        setting("chain_path", "intermediates-only PEM file"),
        setting("owner", "user[:group] owning the written files"),
        setting("key_mode", "octal mode of the key file (default 0600)"),
        setting("cert_mode", "octal mode of the certificate files (default 0644)"),
        setting(
            "reload_command", "command run after writing, no shell (e.g. systemctl reload nginx)"
        ),
        setting("reload_timeout", "seconds before the reload command is killed (default 30)"),
        setting(
            "follow_symlinks",
            '"true" to write the file a symlinked path points to (refused by default)',
        ),
    ),
    factory=build_files_target,
)
