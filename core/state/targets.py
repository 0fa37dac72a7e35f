"""Queries over deploy targets and their bindings to certificates (F7).

Like :mod:`core.state.cas` and its siblings: every function validates before it changes
anything, flushes but never commits, and raises catalog errors. Target secrets are sealed here
(:mod:`core.secrets`): literals are encrypted, ``env:`` / ``file:`` / ``prefect-block:``
references are kept as references. Checking a target's type and fields against the adapters
is the caller's job (core does not import providers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from acmeflow.core.errors import ConfigError, NotFound
from acmeflow.core.secrets import BlockResolver, SecretBox, seal_all, unseal_all
from acmeflow.core.state.certificates import certificates_by_id
from acmeflow.core.state.dns_providers import apply_changes, apply_secret_changes
from acmeflow.core.state.models import Certificate, DeployTargetConfig, TargetBinding, utcnow

_MAX_ERROR = 4000


def _validate_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(detail="a deploy target name is required")
    if name != name.strip() or len(name) > 100 or any(c in name for c in "\r\n\t"):
        raise ConfigError(detail=f"invalid deploy target name {name!r} (1-100 characters)")
    return name


def _clean_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    cleaned: dict[str, str] = {}
    for key, value in settings.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(detail="setting names must be non-empty strings")
        cleaned[key.strip()] = str(value)
    return cleaned


# --- targets -----------------------------------------------------------------------------------


def find_target(s: Session, name: str) -> DeployTargetConfig | None:
    """The deploy target ``name`` (active or not), or ``None``."""
    return s.scalars(
        select(DeployTargetConfig).where(DeployTargetConfig.name == name)
    ).one_or_none()


def get_target(s: Session, name: str, *, include_inactive: bool = True) -> DeployTargetConfig:
    """The deploy target ``name``; unknown (or disabled, unless ``include_inactive``) raises."""
    target = find_target(s, name) if name else None
    if target is None:
        raise NotFound(detail=f"no deploy target named {name!r} (see `acmeflow targets list`)")
    if not target.active and not include_inactive:
        raise ConfigError(detail=f"deploy target {name!r} is disabled")
    return target


def list_targets(s: Session, *, include_inactive: bool = True) -> list[DeployTargetConfig]:
    """Every deploy target, by name."""
    q = select(DeployTargetConfig).order_by(DeployTargetConfig.name)
    if not include_inactive:
        q = q.where(DeployTargetConfig.active.is_(True))
    return list(s.scalars(q))


def add_target(
    s: Session,
    *,
    name: str,
    type: str,
    settings: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    active: bool = True,
    box: SecretBox | None = None,
) -> DeployTargetConfig:
    """Add a deploy target; each secret (literal or reference) is sealed."""
    _validate_name(name)
    if not type or not type.strip():
        raise ConfigError(detail="a deploy target type is required")
    cleaned = _clean_settings(settings or {})
    sealed = seal_all(secrets or {}, box=box)
    if find_target(s, name) is not None:
        raise ConfigError(detail=f"a deploy target named {name!r} already exists")
    target = DeployTargetConfig(
        name=name, type=type.strip(), settings=cleaned, secrets=sealed, active=active
    )
    s.add(target)
    s.flush()
    return target


def update_target(
    s: Session,
    name: str,
    *,
    new_name: str | None = None,
    settings: Mapping[str, Any | None] | None = None,
    secrets: Mapping[str, str | None] | None = None,
    active: bool | None = None,
    box: SecretBox | None = None,
) -> DeployTargetConfig:
    """Change a deploy target: ``settings`` / ``secrets`` are merged into the current ones (a
    ``None`` value removes a key); ``active`` enables or disables it."""
    target = get_target(s, name)
    if new_name is not None and new_name != target.name:
        _validate_name(new_name)
        if find_target(s, new_name) is not None:
            raise ConfigError(detail=f"a deploy target named {new_name!r} already exists")
    new_settings: dict[str, Any] | None = None
    if settings is not None:
        removed = {k: None for k, v in settings.items() if v is None}
        cleaned = _clean_settings({k: v for k, v in settings.items() if v is not None})
        new_settings = apply_changes(target.settings, {**removed, **cleaned})
    new_secrets: dict[str, str] | None = None
    if secrets is not None:
        new_secrets = apply_secret_changes(target.secrets, secrets, box=box)
    if new_name is not None:
        target.name = new_name
    if new_settings is not None:
        target.settings = new_settings
    if new_secrets is not None:
        target.secrets = new_secrets
    if active is not None:
        target.active = active
    s.flush()
    return target


def remove_target(s: Session, name: str) -> int:
    """Remove a deploy target and its bindings; returns how many bindings went with it."""
    target = get_target(s, name)
    count = len(target.bindings)
    s.delete(target)
    s.flush()
    return count


def target_secrets(
    target: DeployTargetConfig,
    *,
    box: SecretBox | None = None,
    block_resolver: BlockResolver | None = None,
) -> dict[str, str]:
    """The target's secrets, unsealed (for the adapter layer only: never print them)."""
    return unseal_all(target.secrets, box=box, block_resolver=block_resolver)


# --- bindings ----------------------------------------------------------------------------------


def bind(s: Session, target_name: str, certificate_ids: Iterable[int]) -> list[TargetBinding]:
    """Bind certificates to a target (idempotent); returns the bindings, existing or new."""
    target = get_target(s, target_name)
    certs = certificates_by_id(s, certificate_ids)
    gone = [str(c.id) for c in certs if c.status != "active"]
    if gone:
        raise ConfigError(detail=f"certificate {', '.join(gone)} is gone from its store")
    existing = {b.certificate_id: b for b in target.bindings}
    result: list[TargetBinding] = []
    for cert in certs:
        binding = existing.get(cert.id)
        if binding is None:
            binding = TargetBinding(target=target, certificate_id=cert.id)
            s.add(binding)
            existing[cert.id] = binding
        result.append(binding)
    s.flush()
    return result


def unbind(s: Session, target_name: str, certificate_ids: Iterable[int]) -> list[int]:
    """Unbind certificates from a target; returns the ids that were bound (others ignored)."""
    target = get_target(s, target_name)
    ids = set(certificate_ids)
    removed: list[int] = []
    for binding in list(target.bindings):
        if binding.certificate_id in ids:
            removed.append(binding.certificate_id)
            target.bindings.remove(binding)
    s.flush()
    return sorted(removed)


def bindings_for_certificate(
    s: Session, certificate_id: int, *, target_name: str | None = None
) -> list[TargetBinding]:
    """The bindings of a certificate (targets loaded), by target name.

    With ``target_name`` only that target's binding; a target that is not bound raises.
    """
    q = (
        select(TargetBinding)
        .join(TargetBinding.target)
        .where(TargetBinding.certificate_id == certificate_id)
        .options(selectinload(TargetBinding.target))
        .order_by(DeployTargetConfig.name)
    )
    if target_name is not None:
        get_target(s, target_name)
        q = q.where(DeployTargetConfig.name == target_name)
    bindings = list(s.scalars(q))
    if target_name is not None and not bindings:
        raise ConfigError(
            detail=f"deploy target {target_name!r} is not bound to certificate {certificate_id}: "
            f"`acmeflow targets bind {target_name} {certificate_id}` first"
        )
    return bindings


def bound_target_names(s: Session, certificate_ids: Iterable[int]) -> dict[int, list[str]]:
    """The names of the targets bound to each certificate (sorted), in one query."""
    ids = sorted(set(certificate_ids))
    found: dict[int, list[str]] = {i: [] for i in ids}
    for i in range(0, len(ids), 500):
        rows = s.execute(
            select(TargetBinding.certificate_id, DeployTargetConfig.name)
            .join(TargetBinding.target)
            .where(TargetBinding.certificate_id.in_(ids[i : i + 500]))
            .order_by(DeployTargetConfig.name)
        )
        for cert_id, name in rows:
            found[cert_id].append(name)
    return found


def bindings_for_target(s: Session, target_name: str) -> list[TargetBinding]:
    """The bindings of a target (certificates loaded), by certificate id."""
    target = get_target(s, target_name)
    q = (
        select(TargetBinding)
        .where(TargetBinding.target_id == target.id)
        .options(selectinload(TargetBinding.certificate))
        .order_by(TargetBinding.certificate_id)
    )
    return list(s.scalars(q))


def binding_counts(s: Session) -> dict[int, list[int]]:
    """Target id -> ids of the certificates bound to it (for listings, one query)."""
    result: dict[int, list[int]] = {}
    q = select(TargetBinding.target_id, TargetBinding.certificate_id).order_by(
        TargetBinding.certificate_id
    )
    for target_id, cert_id in s.execute(q):
        result.setdefault(target_id, []).append(cert_id)
    return result


def record_deployed(
    s: Session, binding_id: int, serial: str, *, at: datetime | None = None
) -> TargetBinding | None:
    """Note a successful deployment of ``serial`` (no-op if the binding went meanwhile)."""
    binding = s.get(TargetBinding, binding_id)
    if binding is None:
        return None
    binding.last_deployed_serial = serial
    binding.last_deployed_at = at or utcnow()
    binding.last_error = None
    s.flush()
    return binding


def record_deploy_error(s: Session, binding_id: int, error: str) -> TargetBinding | None:
    """Note a failed deployment (the text must already be free of secrets)."""
    binding = s.get(TargetBinding, binding_id)
    if binding is None:
        return None
    binding.last_error = error[:_MAX_ERROR]
    s.flush()
    return binding


def pending_bindings(s: Session) -> list[TargetBinding]:
    """Bindings of active zero-touch certificates to active targets that do not hold the
    certificate's current serial (never deployed, or the last deployment failed)."""
    q = (
        select(TargetBinding)
        .join(TargetBinding.target)
        .join(TargetBinding.certificate)
        .where(
            DeployTargetConfig.active.is_(True),
            Certificate.status == "active",
            Certificate.store == "zero-touch",
            Certificate.serial.is_not(None),
            (TargetBinding.last_deployed_serial.is_(None))
            | (TargetBinding.last_deployed_serial != Certificate.serial),
        )
        .options(selectinload(TargetBinding.target), selectinload(TargetBinding.certificate))
        .order_by(TargetBinding.certificate_id, DeployTargetConfig.name)
    )
    return list(s.scalars(q))
