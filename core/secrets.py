"""Secrets: references, encryption at rest, and the sealed form stored in the database.

A secret given by the user is either a *reference* or a *literal*:

- ``env:NAME``            the environment variable ``NAME`` (read when used);
- ``file:PATH``           the contents of ``PATH`` without its trailing newline;
- ``prefect-block:NAME``  a Prefect ``Secret`` block, resolved by the tasks layer (core
  never imports Prefect: pass ``block_resolver`` to :func:`unseal` / :func:`resolve_ref`);
- anything else is a literal value (typed at a prompt).

:func:`seal` turns that into what the database stores: references stay references (so a
rotated env var or file takes effect without touching acmeflow) and literals are encrypted
with Fernet as ``enc:<token>``. :func:`unseal` turns a stored value back into the secret.

Rule for callers: never print, log or raise an unsealed value. Errors here name the
reference or the key file, never a value.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets as _stdlib_secrets
import stat
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from acmeflow.config.settings import Settings, get_settings
from acmeflow.core.errors import ConfigError, SecretError
from acmeflow.core.files import fsync_dir

ENV_PREFIX = "env:"
FILE_PREFIX = "file:"
PREFECT_BLOCK_PREFIX = "prefect-block:"
ENCRYPTED_PREFIX = "enc:"
REF_PREFIXES = (ENV_PREFIX, FILE_PREFIX, PREFECT_BLOCK_PREFIX)

BlockResolver = Callable[[str], str]
"""Resolves the NAME of a ``prefect-block:NAME`` reference to the secret (tasks layer)."""


def is_ref(value: str) -> bool:
    """Whether ``value`` is a secret reference (``env:``, ``file:`` or ``prefect-block:``)."""
    return value.startswith(REF_PREFIXES)


def is_prefect_block_ref(value: str) -> bool:
    """Whether ``value`` is a ``prefect-block:NAME`` reference."""
    return value.startswith(PREFECT_BLOCK_PREFIX)


def prefect_block_name(ref: str) -> str:
    """The block NAME of a ``prefect-block:NAME`` reference."""
    if not is_prefect_block_ref(ref):
        raise SecretError(detail="not a prefect-block: reference")
    name = ref[len(PREFECT_BLOCK_PREFIX) :].strip()
    if not name:
        raise SecretError(detail=f"{ref!r} names no Prefect block")
    return name


_default_block_resolver: BlockResolver | None = None


def set_block_resolver(resolver: BlockResolver | None) -> None:
    """Install how ``prefect-block:`` references are read when a caller passes no resolver.

    The Prefect layer (``tasks``) installs one on import, so core code resolves Secret blocks
    without importing Prefect.
    """
    global _default_block_resolver
    _default_block_resolver = resolver


def resolve_ref(ref: str, *, block_resolver: BlockResolver | None = None) -> str:
    """The secret a reference points to; a literal is returned as it is.

    ``prefect-block:`` references need a block resolver: ``block_resolver``, else the one
    installed with :func:`set_block_resolver`. Failures raise :class:`SecretError` naming the
    reference, never a value.
    """
    block_resolver = block_resolver or _default_block_resolver
    if ref.startswith(ENV_PREFIX):
        name = ref[len(ENV_PREFIX) :].strip()
        if not name:
            raise SecretError(detail=f"{ref!r} names no environment variable")
        value = os.environ.get(name)
        if value is None:
            raise SecretError(detail=f"environment variable {name} (from {ref!r}) is not set")
        return value
    if ref.startswith(FILE_PREFIX):
        raw = ref[len(FILE_PREFIX) :].strip()
        if not raw:
            raise SecretError(detail=f"{ref!r} names no file")
        path = Path(raw).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise SecretError(detail=f"cannot read secret file {str(path)!r}: {reason}") from None
        return text.removesuffix("\n").removesuffix("\r")
    if ref.startswith(PREFECT_BLOCK_PREFIX):
        name = prefect_block_name(ref)
        if block_resolver is None:
            raise SecretError(
                detail=f"{ref!r} is a Prefect Secret block: it is resolved by the Prefect "
                "(tasks) layer, not here"
            )
        try:
            return block_resolver(name)
        except SecretError:
            raise
        except Exception as exc:  # the resolver's error may not echo the value: keep the type
            raise SecretError(
                detail=f"cannot load Prefect Secret block {name!r}: {type(exc).__name__}"
            ) from None
    return ref


# --- encryption at rest -----------------------------------------------------------------------


def generate_key() -> str:
    """A new Fernet key (url-safe base64 of 32 random bytes)."""
    return Fernet.generate_key().decode("ascii")


def _fernet_from(text: str, source: str) -> Fernet:
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
        if len(raw) != 32:
            raise ValueError
        return Fernet(text.encode("ascii"))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise SecretError(
            detail=f"{source} is not a Fernet key (44 url-safe base64 characters; generate one "
            "with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')"
        ) from None


def _create_key_file(path: Path) -> None:
    """Create ``path`` with a new key, mode 0600, atomically; a concurrent creator wins."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.parent / f".{path.name}.{_stdlib_secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, (generate_key() + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        # link() fails when the key file exists: never overwrite a key another process made.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def _read_key_file(path: Path) -> str:
    try:
        st = path.stat()
    except FileNotFoundError:
        _create_key_file(path)
        st = path.stat()
    except OSError as exc:
        raise SecretError(detail=f"cannot read key file {str(path)!r}: {exc.strerror}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise SecretError(
            detail=f"key file {str(path)!r} is readable by group or others; run: chmod 600 {path}"
        )
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        raise SecretError(detail=f"cannot read key file {str(path)!r}") from None


class SecretBox:
    """Fernet encryption with acmeflow's key.

    The key is ``ACMEFLOW_SECRET_KEY`` (several comma-separated keys rotate: the first
    encrypts, any decrypts), else the Prefect Secret block ``ACMEFLOW_SECRET_KEY_BLOCK`` names
    (the same key for every worker of a pool), else the key file
    (``settings.resolved_secret_key_file``), created with mode 0600 on first use. A key file
    readable by group/others is refused.
    """

    def __init__(self, settings: Settings | None = None, *, key: str | None = None) -> None:
        self._settings = settings
        self._key = key
        self._fernet: MultiFernet | None = None
        self.source = "the given key"  # where the key came from, for messages (set on load)
        self._lock = threading.Lock()

    def _load(self) -> MultiFernet:
        if self._fernet is not None:
            return self._fernet
        with self._lock:
            if self._fernet is None:
                if self._key is not None:
                    keys, source = self._key, "the given key"
                else:
                    settings = self._settings or get_settings()
                    if settings.secret_key is not None:
                        keys, source = settings.secret_key.get_secret_value(), "ACMEFLOW_SECRET_KEY"
                    elif settings.secret_key_block:
                        block = PREFECT_BLOCK_PREFIX + settings.secret_key_block
                        keys, source = resolve_ref(block), f"Prefect Secret block {block!r}"
                    else:
                        path = settings.resolved_secret_key_file
                        keys, source = _read_key_file(path), f"key file {str(path)!r}"
                parts = [k.strip() for k in keys.split(",") if k.strip()]
                if not parts:
                    raise SecretError(detail=f"{source} is empty")
                self._fernet = MultiFernet([_fernet_from(k, source) for k in parts])
                self.source = source
        return self._fernet

    def encrypt(self, plaintext: str) -> str:
        """The Fernet token of ``plaintext``."""
        return self._load().encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The plaintext of a token made by :meth:`encrypt`."""
        fernet = self._load()
        try:
            return fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretError(
                detail="cannot decrypt a stored secret (wrong ACMEFLOW_SECRET_KEY?)"
            ) from None

    def encrypt_json(self, data: dict[str, Any]) -> str:
        """The token of ``data`` as JSON."""
        return self.encrypt(json.dumps(data, sort_keys=True, separators=(",", ":")))

    def decrypt_json(self, token: str) -> dict[str, Any]:
        """The dict encrypted by :meth:`encrypt_json`."""
        try:
            data = json.loads(self.decrypt(token))
        except json.JSONDecodeError:
            raise SecretError(detail="a stored secret is not valid JSON") from None
        if not isinstance(data, dict):
            raise SecretError(detail="a stored secret is not a JSON object")
        return data

    def seal(self, value_or_ref: str) -> str:
        """What to store: a reference as it is, a literal as ``enc:<token>``."""
        if is_ref(value_or_ref):
            return value_or_ref.strip()
        return ENCRYPTED_PREFIX + self.encrypt(value_or_ref)

    def unseal(self, stored: str, *, block_resolver: BlockResolver | None = None) -> str:
        """The secret a stored (sealed) value stands for: decrypted or resolved now."""
        if stored.startswith(ENCRYPTED_PREFIX):
            return self.decrypt(stored[len(ENCRYPTED_PREFIX) :])
        if is_ref(stored):
            return resolve_ref(stored, block_resolver=block_resolver)
        raise SecretError(detail="a stored secret is neither encrypted nor a reference")


_boxes: dict[tuple[str | None, str | None, str], SecretBox] = {}
_boxes_lock = threading.Lock()


def default_box(settings: Settings | None = None) -> SecretBox:
    """The :class:`SecretBox` of the settings (cached per key source)."""
    settings = settings or get_settings()
    key = settings.secret_key.get_secret_value() if settings.secret_key else None
    cache_key = (key, settings.secret_key_block, str(settings.resolved_secret_key_file))
    with _boxes_lock:
        box = _boxes.get(cache_key)
        if box is None:
            box = _boxes[cache_key] = SecretBox(settings)
        return box


def seal(value_or_ref: str, *, box: SecretBox | None = None) -> str:
    """Stored form of a secret: references kept, literals encrypted (``enc:...``)."""
    return (box or default_box()).seal(value_or_ref)


def unseal(
    stored: str, *, box: SecretBox | None = None, block_resolver: BlockResolver | None = None
) -> str:
    """The secret behind a stored value (decrypt ``enc:``, resolve references)."""
    if is_ref(stored):  # references need no key: do not create a key file to resolve one
        return resolve_ref(stored, block_resolver=block_resolver)
    return (box or default_box()).unseal(stored, block_resolver=block_resolver)


def seal_all(secrets: Mapping[str, str], *, box: SecretBox | None = None) -> dict[str, str]:
    """Stored form of a named set of secrets (credentials of a provider or target).

    Names must be non-empty strings and values non-empty strings or references, else
    :class:`ConfigError` (naming the secret, never its value).
    """
    sealed: dict[str, str] = {}
    for key, value in secrets.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(detail="secret names must be non-empty strings")
        if not isinstance(value, str) or not value:
            raise ConfigError(detail=f"secret {key!r} must be a non-empty string or reference")
        sealed[key] = seal(value, box=box)
    return sealed


def unseal_all(
    stored: Mapping[str, str],
    *,
    box: SecretBox | None = None,
    block_resolver: BlockResolver | None = None,
) -> dict[str, str]:
    """The secrets behind a stored set (for adapters only: never print them)."""
    return {
        key: unseal(value, box=box, block_resolver=block_resolver) for key, value in stored.items()
    }


def describe_sealed(stored: str | None) -> str:
    """A printable description of a stored secret (the reference, or ``encrypted``)."""
    if stored is None:
        return "-"
    if stored.startswith(ENCRYPTED_PREFIX):
        return "encrypted"
    if is_ref(stored):
        return stored
    return "invalid"
