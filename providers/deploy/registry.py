"""The deploy target registry: list, look up and build target types.

Each adapter module declares its ``TARGET`` (a :class:`TargetType`) beside the adapter, as
the DNS providers declare ``PROVIDER``. The built-in ones (``netscaler``, ``files``,
``aws-acm``) are registered, like plugins, under the entry point group
``acmeflow.deploy_targets`` (each entry point's value is a :class:`TargetType`); the built-ins
are also known without their entry points, so a source checkout works uninstalled.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
from collections.abc import Mapping

from acmeflow.core.errors import ConfigError
from acmeflow.providers.deploy.base import DeployTarget, TargetType
from acmeflow.providers.plugins import load_plugins

LOGGER = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "acmeflow.deploy_targets"
BUILT_IN_MODULES = (
    "acmeflow.providers.deploy.netscaler",
    "acmeflow.providers.deploy.files",
    "acmeflow.providers.deploy.aws_acm",
)

_types_lock = threading.Lock()


def _plugin_types() -> list[TargetType]:
    return load_plugins(ENTRY_POINT_GROUP, TargetType, "deploy target")


@functools.cache
def _target_types() -> tuple[TargetType, ...]:
    built_in = [importlib.import_module(m).TARGET for m in BUILT_IN_MODULES]
    result: dict[str, TargetType] = {}
    for ttype in [*built_in, *_plugin_types()]:
        existing = result.setdefault(ttype.name, ttype)
        if existing is not ttype and existing != ttype:
            LOGGER.warning("deploy target type %r is defined twice; keeping the first", ttype.name)
    return tuple(result.values())


def target_types() -> list[TargetType]:
    """Every deploy target type: built-ins first, then plugins (the first of a name wins)."""
    with _types_lock:
        return list(_target_types())


def reset_target_types() -> None:
    """Forget the built list, so the next call scans the entry points again."""
    with _types_lock:
        _target_types.cache_clear()


def get_target_type(name: str) -> TargetType:
    """The target type called ``name``; unknown names raise :class:`ConfigError`."""
    types = target_types()
    for target_type in types:
        if target_type.name == name:
            return target_type
    known = ", ".join(t.name for t in types)
    raise ConfigError(detail=f"unknown deploy target type {name!r} (known: {known})")


def build_target(
    type_name: str, settings: Mapping[str, str], secrets: Mapping[str, str]
) -> DeployTarget:
    """Build a target after checking its fields (a missing or unknown one is named)."""
    target_type = get_target_type(type_name)
    for fld in target_type.fields:
        source = secrets if fld.kind == "secret" else settings
        if fld.required and not str(source.get(fld.name) or "").strip():
            what = "secret" if fld.kind == "secret" else "setting"
            raise ConfigError(detail=f"{type_name}: missing required {what} {fld.name}")
    known = {f.name for f in target_type.fields}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(
            detail=f"{type_name}: unknown setting {unknown[0]} (known: {', '.join(sorted(known))})"
        )
    return target_type.factory(settings, secrets)
