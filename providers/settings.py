"""The one parser of provider settings (DNS providers and deploy targets alike): every value
arrives as text from the command line or the database and a bad one is a
:class:`~acmeflow.core.errors.ConfigError` whose detail names the type and the field."""

from __future__ import annotations

from collections.abc import Mapping

from acmeflow.core.errors import ConfigError


def require(mapping: Mapping[str, str], name: str, type_name: str) -> str:
    """The non-empty value of ``name`` or :class:`ConfigError` naming the missing field."""
    value = mapping.get(name)
    if value is None or not str(value).strip():
        raise ConfigError(detail=f"{type_name}: missing field '{name}'")
    return str(value).strip()


def setting_bool(
    settings: Mapping[str, str], name: str, type_name: str, default: bool = False
) -> bool:
    """Read a boolean setting: true/false/yes/no/1/0/on/off (any case); unset is ``default``;
    anything else is a :class:`ConfigError` naming the field (never silently false)."""
    raw = (settings.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(detail=f"{type_name}: field '{name}' must be true or false, not {raw!r}")


def setting_float(settings: Mapping[str, str], name: str, default: float, type_name: str) -> float:
    """Read a positive number setting, ``default`` when unset."""
    raw = (settings.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(detail=f"{type_name}: field '{name}' must be a number") from None
    if value <= 0:
        raise ConfigError(detail=f"{type_name}: field '{name}' must be positive")
    return value


def setting_mode(settings: Mapping[str, str], name: str, default: int, type_name: str) -> int:
    """Read a file mode written in octal ("0600", "640"), ``default`` when unset."""
    raw = (settings.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw, 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o7777:
        raise ConfigError(detail=f"{type_name}: field '{name}' must be an octal mode like 0600")
    return value


def split_host_port(value: str, default_port: int, type_name: str, field: str) -> tuple[str, int]:
    """Split ``host[:port]`` (``[v6]:port`` for IPv6) or raise :class:`ConfigError`."""
    value = value.strip()
    host, port_text = value, ""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ConfigError(detail=f"{type_name}: invalid {field} {value!r}")
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(detail=f"{type_name}: invalid {field} {value!r}")
            port_text = rest[1:]
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    if not host:
        raise ConfigError(detail=f"{type_name}: invalid {field} {value!r}")
    if not port_text:
        return host, default_port
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(detail=f"{type_name}: invalid port in {field} {value!r}") from None
    if not 0 < port < 65536:
        raise ConfigError(detail=f"{type_name}: invalid port in {field} {value!r}")
    return host, port
