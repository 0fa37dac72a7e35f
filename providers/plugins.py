"""Plugins of an entry point group (DNS provider types, deploy target types): load each, keep
the ones of the expected type, log and skip the broken ones."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import TypeVar

T = TypeVar("T")
LOGGER = logging.getLogger(__name__)


def load_plugins(group: str, expected: type[T], what: str) -> list[T]:
    """Every entry point of ``group`` whose value is an ``expected``; a plugin that cannot be
    loaded or is something else is logged ("``what`` plugin NAME ...") and left out, so one
    broken plugin never breaks the registry."""
    found: list[T] = []
    for ep in entry_points(group=group):
        try:
            value = ep.load()
        except Exception as exc:
            LOGGER.warning("%s plugin %r cannot be loaded: %s", what, ep.name, exc)
            continue
        if not isinstance(value, expected):
            LOGGER.warning(
                "%s plugin %r is not a %s (%s)",
                what,
                ep.name,
                expected.__name__,
                type(value).__name__,
            )
            continue
        found.append(value)
    return found
