"""The two settings a command reads before it loads :class:`~acmeflow.config.settings.Settings`
(whose import alone costs about 0.2 s): the home and whether the warm runner may be used.
They read the environment exactly as ``Settings`` does (tests/test_runner_fast_path.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_FALSE = {"0", "false", "f", "no", "n", "off"}


def home_from(environ: Mapping[str, str] | None = None) -> Path:
    """``ACMEFLOW_HOME``, else ``~/.acmeflow``."""
    environ = os.environ if environ is None else environ
    value = environ.get("ACMEFLOW_HOME")
    return Path(value) if value else Path("~/.acmeflow").expanduser()


def runner_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """``ACMEFLOW_USE_RUNNER`` (default true)."""
    environ = os.environ if environ is None else environ
    return environ.get("ACMEFLOW_USE_RUNNER", "true").strip().lower() not in _FALSE
