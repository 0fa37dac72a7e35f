"""The deploy target types acmeflow knows, and building a target from its configuration."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from acmeflow.core.dnsprovider import ProviderField
from acmeflow.core.errors import ConfigError
from acmeflow.providers.deploy.base import DeployTarget

Factory = Callable[[Mapping[str, str], Mapping[str, str]], DeployTarget]


@dataclass(frozen=True)
class TargetType:
    """A deploy target type: its id, label, configuration fields and factory."""

    name: str
    label: str
    fields: tuple[ProviderField, ...]
    factory: Factory


def _netscaler(settings: Mapping[str, str], secrets: Mapping[str, str]) -> DeployTarget:
    from acmeflow.providers.deploy.netscaler import build_netscaler_target

    return build_netscaler_target(settings, secrets)


def _files(settings: Mapping[str, str], secrets: Mapping[str, str]) -> DeployTarget:
    from acmeflow.providers.deploy.files import build_files_target

    return build_files_target(settings, secrets)


def _aws_acm(settings: Mapping[str, str], secrets: Mapping[str, str]) -> DeployTarget:
    from acmeflow.providers.deploy.aws_acm import build_acm_target

    return build_acm_target(settings, secrets)


def _f(name: str, help: str, *, kind: str = "setting", required: bool = False) -> ProviderField:
    return ProviderField(
        name=name, kind="secret" if kind == "secret" else "setting", required=required, help=help
    )


_TYPES: tuple[TargetType, ...] = (
    TargetType(
        name="netscaler",
        label="NetScaler ADC (NITRO API)",
        fields=(
            _f("url", "NITRO base URL, e.g. https://adc.example:443", required=True),
            _f("username", "NITRO user", required=True),
            _f("password", "NITRO password", kind="secret", required=True),
            _f("ca_bundle", "PEM file of the CA that signed the ADC's management certificate"),
            _f("insecure", '"true" to skip TLS verification (logged as a warning)'),
            _f("certkey", "sslcertkey name (default acmeflow-<certificate name>)"),
            _f("timeout", "seconds per NITRO request (default 30)"),
        ),
        factory=_netscaler,
    ),
    TargetType(
        name="files",
        label="Files on disk + reload command (nginx, HAProxy, ...)",
        fields=(
            _f("fullchain_path", "leaf + intermediates PEM file", required=True),
            _f("key_path", "private key PEM file (written 0600)", required=True),
            _f("cert_path", "leaf-only PEM file"),
            _f("chain_path", "intermediates-only PEM file"),
            _f("owner", "user[:group] owning the written files"),
            _f("key_mode", "octal mode of the key file (default 0600)"),
            _f("cert_mode", "octal mode of the certificate files (default 0644)"),
            _f(
                "reload_command",
                "command run after writing, no shell (e.g. systemctl reload nginx)",
            ),
            _f("reload_timeout", "seconds before the reload command is killed (default 30)"),
        ),
        factory=_files,
    ),
    TargetType(
        name="aws-acm",
        label="AWS Certificate Manager",
        fields=(
            _f("region", "AWS region, e.g. eu-west-1", required=True),
            _f("certificate_arn", "ARN to re-import into (default: found by tag)"),
            _f("access_key_id", "access key id (default: the AWS credential chain)"),
            _f("secret_access_key", "secret access key", kind="secret"),
            _f("profile", "AWS shared-config profile"),
            _f("role_arn", "IAM role to assume via STS"),
            _f("endpoint_url", "custom ACM/STS endpoint (tests, VPC endpoints)"),
            _f("tags", "extra tags on first import: k=v,k2=v2"),
        ),
        factory=_aws_acm,
    ),
)


def target_types() -> list[TargetType]:
    """Every deploy target type, in display order."""
    return list(_TYPES)


def get_target_type(name: str) -> TargetType:
    """The target type called ``name``; unknown names raise :class:`ConfigError`."""
    for target_type in _TYPES:
        if target_type.name == name:
            return target_type
    known = ", ".join(t.name for t in _TYPES)
    raise ConfigError(f"unknown deploy target type {name!r} (known: {known})")


def build_target(
    type_name: str, settings: Mapping[str, str], secrets: Mapping[str, str]
) -> DeployTarget:
    """Build a target after checking its required fields (a missing one is named)."""
    target_type = get_target_type(type_name)
    for fld in target_type.fields:
        source = secrets if fld.kind == "secret" else settings
        if fld.required and not str(source.get(fld.name) or "").strip():
            what = "secret" if fld.kind == "secret" else "setting"
            raise ConfigError(f"{type_name}: missing required {what} {fld.name}")
    known = {f.name for f in target_type.fields}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(
            f"{type_name}: unknown setting {unknown[0]} (known: {', '.join(sorted(known))})"
        )
    return target_type.factory(settings, secrets)
