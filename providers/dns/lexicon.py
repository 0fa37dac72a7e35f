"""One adapter for every DNS service dns-lexicon (3.25) supports.

Each operation builds the lexicon provider for the zone (``lexicon:<module>:<option>`` config
from our settings and secrets), authenticates, and works on TXT records only:
``present`` lists the name's TXT records and creates ours when absent; ``cleanup`` deletes
exactly the records whose content is our value (by their identifier); ``txt_values`` lists.

The zone comes from the ``zone`` setting, else from the public suffix list bundled with
tldextract (never downloaded: acmeflow runs offline and lexicon's own Client would fetch it).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import requests
import tldextract

from acmeflow.core.dnsprovider import ProviderField
from acmeflow.core.errors import ConfigError, TXTRecordError
from acmeflow.core.names import canonical_name
from acmeflow.providers.dns._base import (
    ProviderBase,
    unquote_txt,
)
from acmeflow.providers.settings import setting_float

LOGGER = logging.getLogger(__name__)
DEFAULT_LEXICON_TTL = 120
#: settings of ours that are not lexicon provider options
OWN_FIELDS = frozenset({"zone", "ttl", "nameservers"})
_SECRET_WORDS = ("token", "password", "secret", "key", "psw", "2fa", "service_account_info")
_NOT_SECRET = frozenset({"auth_key_id", "auth_access_key"})

_extractor_lock = threading.Lock()


@functools.cache
def _extractor() -> tldextract.TLDExtract:
    # suffix_list_urls=() and cache_dir=None: the snapshot shipped with tldextract, no network.
    return tldextract.TLDExtract(
        suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True
    )


def guess_zone(fqdn: str) -> str:
    """The registrable domain of ``fqdn`` by the bundled public suffix list."""
    with _extractor_lock:
        parts = _extractor()(canonical_name(fqdn))
    if not parts.domain or not parts.suffix:
        raise ValueError(f"cannot determine the zone of {fqdn}")
    return f"{parts.domain}.{parts.suffix}"


def load_module(module: str) -> Any:
    """Import ``lexicon._private.providers.<module>`` (lexicon 3.25's provider modules)."""
    return importlib.import_module(f"lexicon._private.providers.{module}")


def is_secret_option(option: str) -> bool:
    """Whether a lexicon provider option holds a secret (token, password, key, ...)."""
    if option in _NOT_SECRET:
        return False
    return any(word in option for word in _SECRET_WORDS)


@functools.cache
def lexicon_options(module: str) -> tuple[tuple[str, str], ...]:
    """The provider's own options ``(dest, help)`` from its ``configure_parser``."""
    parser = argparse.ArgumentParser(add_help=False)
    load_module(module).Provider.configure_parser(parser)
    return tuple(
        (action.dest, " ".join((action.help or "").split()))
        for action in parser._actions
        if action.dest not in ("help",) and action.option_strings
    )


def lexicon_fields(
    module: str, required: tuple[str, ...] = (), defaults: Mapping[str, str] | None = None
) -> tuple[ProviderField, ...]:
    """Our field list for a lexicon module: its options (``required`` ones marked), plus ours."""
    options = dict(lexicon_options(module))
    unknown = [name for name in required if name not in options]
    if unknown:
        raise ValueError(f"lexicon {module} has no option {unknown}")
    fields = [
        ProviderField(
            name,
            kind="secret" if is_secret_option(name) else "setting",
            required=name in required,
            help=help_text
            + (f" (default {defaults[name]})" if defaults and name in defaults else ""),
        )
        for name, help_text in options.items()
    ]
    fields += [
        ProviderField("zone", required=False, help="zone name (default: registrable domain)"),
        ProviderField(
            "ttl", required=False, help=f"TTL of the TXT records (default {DEFAULT_LEXICON_TTL})"
        ),
        ProviderField(
            "nameservers",
            required=False,
            help="comma-separated host[:port] to check propagation at instead of the delegation",
        ),
    ]
    return tuple(fields)


class LexiconProvider(ProviderBase):
    """TXT records through a dns-lexicon provider module."""

    def __init__(
        self,
        type_name: str,
        module: str,
        settings: Mapping[str, str],
        secrets: Mapping[str, str],
        *,
        defaults: Mapping[str, str] | None = None,
        default_ttl: int = DEFAULT_LEXICON_TTL,
    ) -> None:
        self.type_name = type_name
        super().__init__(settings, secrets)
        self._module = module
        zone = (settings.get("zone") or "").strip()
        self._zone: str | None = canonical_name(zone) if zone else None
        self._ttl = int(setting_float(settings, "ttl", default_ttl, type_name))
        options: dict[str, str] = dict(defaults or {})
        for mapping in (settings, secrets):
            for key, value in mapping.items():
                if key not in OWN_FIELDS and value is not None and str(value) != "":
                    options[key] = str(value)
        self._options = options
        try:
            self._provider_class = load_module(module).Provider
        except ImportError as exc:
            raise ConfigError(
                detail=f"{type_name}: lexicon provider '{module}' is not available ({exc.name})"
            ) from None

    # -- DNSProvider ------------------------------------------------------------------------

    def present(self, fqdn: str, value: str) -> None:
        """Create the TXT record ``value`` at ``fqdn`` unless it already exists."""
        fqdn = canonical_name(fqdn)
        with self._session(fqdn, f"adding TXT {fqdn}") as provider:
            if any(r["value"] == value for r in self._list(provider, fqdn)):
                return
            if provider.create_record("TXT", fqdn, value) is False:
                self._fail(f"adding TXT {fqdn}: the provider reported failure")

    def cleanup(self, fqdn: str, value: str) -> None:
        """Delete only the TXT records of ``fqdn`` whose content is ``value``."""
        fqdn = canonical_name(fqdn)
        with self._session(fqdn, f"deleting TXT {fqdn}") as provider:
            for record in self._list(provider, fqdn):
                if record["value"] != value:
                    continue
                ok = provider.delete_record(record.get("id"), "TXT", fqdn, record["content"])
                if ok is False:
                    self._fail(f"deleting TXT {fqdn}: the provider reported failure")

    def txt_values(self, fqdn: str) -> list[str]:
        """The TXT values the provider lists for ``fqdn``."""
        fqdn = canonical_name(fqdn)
        with self._session(fqdn, f"reading TXT {fqdn}") as provider:
            return [r["value"] for r in self._list(provider, fqdn)]

    # -- internals --------------------------------------------------------------------------

    def _zone_for(self, fqdn: str) -> str:
        if self._zone is not None:
            if fqdn != self._zone and not fqdn.endswith("." + self._zone):
                self._fail(f"{fqdn} is not inside the configured zone {self._zone}")
            return self._zone
        try:
            return guess_zone(fqdn)
        except ValueError as exc:
            self._fail(f"{exc}; set 'zone' explicitly")

    def _config(self, zone: str) -> Any:
        from lexicon.config import ConfigResolver

        return ConfigResolver().with_dict(
            {
                "provider_name": self._module,
                "domain": zone,
                "type": "TXT",
                "ttl": self._ttl,
                self._module: dict(self._options),
            }
        )

    @contextmanager
    def _session(self, fqdn: str, what: str) -> Iterator[Any]:
        """An authenticated lexicon provider for the zone of ``fqdn``; errors -> TXTRecordError."""
        zone = self._zone_for(fqdn)
        try:
            provider = self._provider_class(self._config(zone))
            provider.authenticate()
        except Exception as exc:
            self._fail(f"{what}: authentication for zone {zone} failed: {_describe(exc)}")
        try:
            yield provider
        except Exception as exc:
            if isinstance(exc, TXTRecordError):
                raise
            self._fail(f"{what}: {_describe(exc)}")
        finally:
            try:
                provider.cleanup()
            except Exception:  # a failed logout must not hide the result
                LOGGER.debug("%s: lexicon cleanup failed", self.type_name, exc_info=False)

    def _list(self, provider: Any, fqdn: str) -> list[dict[str, Any]]:
        records = provider.list_records("TXT", fqdn) or []
        result = []
        for record in records:
            name = canonical_name(str(record.get("name", fqdn)))
            if name not in (fqdn, ""):
                continue
            content = str(record.get("content", ""))
            result.append({**record, "content": content, "value": unquote_txt(content)})
        return result

    def __repr__(self) -> str:
        return f"<LexiconProvider type={self.type_name!r} lexicon={self._module!r}>"


def _describe(exc: BaseException) -> str:
    """A one-line description of a lexicon/requests error (the caller masks secrets)."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        response = exc.response
        body = " ".join((response.text or "").split())[:300]
        method = response.request.method if response.request is not None else ""
        url = (response.url or "").split("?", 1)[0]
        return f"HTTP {response.status_code} {response.reason} for {method} {url}: {body}".strip()
    if isinstance(exc, requests.RequestException):
        return f"{type(exc).__name__}: {exc}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text
