"""The DNS provider registry: list, look up and build provider types.

Built-in types come from :mod:`providers.dns.catalog`; plugins add more under the entry point
group ``acmeflow.dns_providers`` (each entry point's value is a :class:`ProviderType`).
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
import threading
from collections.abc import Mapping

from acmeflow.core.dnsprovider import DNSProvider, ProviderType
from acmeflow.core.errors import ConfigError
from acmeflow.core.secrets import resolve_ref
from acmeflow.providers.dns.catalog import catalog
from acmeflow.providers.plugins import load_plugins

LOGGER = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "acmeflow.dns_providers"


def _key(text: str) -> str:
    """Lookup key: case-insensitive, punctuation and spaces ignored ("Amazon Route53")."""
    return re.sub(r"[^0-9a-z]+", "", text.casefold())


def _plugin_types() -> list[ProviderType]:
    return load_plugins(ENTRY_POINT_GROUP, ProviderType, "DNS provider")


_types_lock = threading.Lock()


def provider_types() -> list[ProviderType]:
    """Every provider type: built-ins first, then plugins (the first of a name wins).

    Built once per process, under a lock so that worker threads starting together do not
    each build it; call :func:`reset_provider_types` after installing a plugin at run time.
    """
    with _types_lock:
        return list(_provider_types())


def reset_provider_types() -> None:
    """Forget the built list, so the next call scans the entry points again."""
    with _types_lock:
        _provider_types.cache_clear()


@functools.cache
def _provider_types() -> tuple[ProviderType, ...]:
    result: dict[str, ProviderType] = {}
    for ptype in [*catalog(), *_plugin_types()]:
        existing = result.get(ptype.name)
        if existing is None:
            result[ptype.name] = ptype
        elif existing is not ptype and existing != ptype:
            LOGGER.warning("DNS provider type %r is defined twice; keeping the first", ptype.name)
    return tuple(result.values())


def get_provider_type(name: str, *, require_supported: bool = False) -> ProviderType:
    """Find a type by id, PRODUCT.md label or alias (case-insensitive).

    Unknown names raise :class:`ConfigError` listing close matches; with
    ``require_supported`` an unsupported type raises :class:`ConfigError` with its reason.
    """
    wanted = _key(name)
    types = provider_types()
    index: dict[str, ProviderType] = {}
    for ptype in types:  # ids first so that an alias never shadows a type id
        index.setdefault(_key(ptype.name), ptype)
    for ptype in types:
        for alias in (ptype.label, *ptype.aliases):
            index.setdefault(_key(alias), ptype)
    found = index.get(wanted) if wanted else None
    if found is None:
        labels = {_key(t.label): t.label for t in types} | {_key(t.name): t.name for t in types}
        close = difflib.get_close_matches(wanted, list(labels), n=5, cutoff=0.6)
        close += [k for k in labels if wanted and len(wanted) >= 3 and wanted in k]
        hint = sorted({labels[k] for k in close})
        suggestion = f"; did you mean: {', '.join(hint)}?" if hint else ""
        raise ConfigError(
            detail=f"unknown DNS provider type {name!r}{suggestion} "
            "(`acmeflow dns providers` lists every type)"
        )
    if require_supported:
        _ensure_supported(found)
    return found


def _ensure_supported(ptype: ProviderType) -> None:
    if ptype.backing == "unsupported" or ptype.factory is None:
        raise ConfigError(
            detail=f"{ptype.name}: {ptype.label} is not supported: {ptype.reason or 'no adapter'}"
        )


def validate_fields(
    ptype: ProviderType, settings: Mapping[str, str], secrets: Mapping[str, str]
) -> None:
    """Check ``settings``/``secrets`` against the type's fields (missing, unknown, misplaced)."""
    setting_names = {f.name for f in ptype.fields if f.kind == "setting"}
    secret_names = {f.name for f in ptype.fields if f.kind == "secret"}
    for key in settings:
        if key in secret_names:
            raise ConfigError(
                detail=f"{ptype.name}: field '{key}' is a secret: pass it as a secret, "
                "not as a plain setting"
            )
        if key not in setting_names:
            raise ConfigError(detail=f"{ptype.name}: unknown field '{key}'{_known(ptype)}")
    for key in secrets:
        if key not in secret_names and key not in setting_names:
            raise ConfigError(detail=f"{ptype.name}: unknown field '{key}'{_known(ptype)}")
    for f in ptype.fields:
        if not f.required:
            continue
        # a setting may be stored as a secret; a secret never as a setting
        value = secrets.get(f.name) if f.kind == "secret" else settings.get(f.name)
        if value is None and f.kind == "setting":
            value = secrets.get(f.name)
        if value is None or not str(value).strip():
            raise ConfigError(detail=f"{ptype.name}: missing field '{f.name}'")


def _known(ptype: ProviderType) -> str:
    names = ", ".join(f.name for f in ptype.fields)
    return f" (fields: {names})" if names else ""


def build_provider(
    type_name: str, settings: Mapping[str, str], secrets: Mapping[str, str]
) -> DNSProvider:
    """Validate the fields of ``type_name`` and build its provider.

    A setting may also be given among ``secrets`` (stored encrypted); a secret may not be
    given as a plain setting.
    """
    ptype = get_provider_type(type_name, require_supported=True)
    validate_fields(ptype, settings, secrets)
    assert ptype.factory is not None  # checked by require_supported
    # settings that were stored as secrets are still settings for the factory
    setting_names = {f.name for f in ptype.fields if f.kind == "setting"}
    merged_settings = dict(settings)
    merged_settings.update({k: v for k, v in secrets.items() if k in setting_names})
    # all of ``secrets`` stay secrets too, so that their values are masked in errors
    return ptype.factory(merged_settings, dict(secrets))


def check_provider(type_name: str, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
    """Check a provider configuration before it is saved, as it will be used: every secret
    reference resolves (``env:`` set, ``file:`` readable, ...), and the adapter accepts the
    values (ports 1-65535, known TSIG algorithms, ...). Raises the catalog error; builds
    nothing that lasts."""
    resolved = {key: resolve_ref(value) for key, value in secrets.items()}
    build_provider(type_name, settings, resolved)
