"""What the store backends without files on this machine (``database``, ``s3``) share: a
certificate is named by a locator, ``<prefix><store>/<slug>-<hash8>``, and its private keys are
sealed with the settings' Fernet key."""

from __future__ import annotations

from pathlib import Path

from acmeflow.core.errors import ConfigError
from acmeflow.core.secrets import SecretBox, default_box
from acmeflow.core.stores import STORE_KINDS, StoreKind, folder_name


class LocatorStore:
    """One store (``certificate`` or ``zero-touch``) of a backend named by ``PREFIX``."""

    PREFIX = ""

    def __init__(
        self, kind: StoreKind, *, keep_previous: int | None = 5, box: SecretBox | None = None
    ) -> None:
        if kind not in STORE_KINDS:
            raise ConfigError(detail=f"unknown store {kind!r} (certificate or zero-touch)")
        self.kind: StoreKind = kind
        self.keep_previous = keep_previous
        self._box = box

    @property
    def root(self) -> Path:
        """The locator prefix of this store's certificates."""
        return Path(f"{self.PREFIX}{self.kind}")

    @property
    def box(self) -> SecretBox:
        """The sealing key (read when the first key is sealed or unsealed)."""
        if self._box is None:
            self._box = default_box()
        return self._box

    def folder_for(self, names: list[str]) -> Path:
        """The locator of the certificate for ``names``."""
        return self.root / folder_name(names)

    def holds(self, folder: Path | str) -> bool:
        """Whether ``folder`` is a locator of this store."""
        return Path(folder).parent == self.root

    def _own(self, folder: Path | str) -> str:
        """``folder`` as a locator of this store (another one: :class:`ConfigError`)."""
        if not self.holds(folder):
            raise ConfigError(detail=f"{str(folder)!r} is not a certificate of {self!r}")
        return str(folder)
