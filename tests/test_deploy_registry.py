"""Deploy target types take the DNS providers' shape: declared beside each adapter, found
through the ``acmeflow.deploy_targets`` entry points, settings read by one strict parser."""

from __future__ import annotations

import logging
import sys
import types
from importlib.metadata import EntryPoint, entry_points

import pytest

from acmeflow.core.errors import ConfigError
from acmeflow.providers import plugins
from acmeflow.providers.deploy import registry
from acmeflow.providers.deploy.base import CertificateBundle, DeployOutcome, TargetType, setting
from acmeflow.providers.deploy.registry import build_target, get_target_type, target_types
from acmeflow.providers.settings import setting_bool
from tests.fakes.nitro import FakeNitroServer


def test_the_built_in_targets_are_registered_as_entry_points() -> None:
    found = {ep.name: ep.load() for ep in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert set(found) >= {"netscaler", "files", "aws-acm"}
    for name in ("netscaler", "files", "aws-acm"):
        assert found[name] is get_target_type(name)


class _EchoTarget:
    type_name = "echo"

    def deploy(self, bundle: CertificateBundle) -> DeployOutcome:
        return DeployOutcome(changed=True, detail=bundle.name)

    def current_serial(self, name: str | None = None) -> str | None:
        return None


def test_a_plugin_target_type_is_listed_and_built(
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugin = TargetType(
        name="echo",
        label="Echo",
        fields=(setting("where", "anything", required=True),),
        factory=lambda settings, secrets: _EchoTarget(),
    )
    module = types.ModuleType("acmeflow_test_deploy_plugin")
    module.TARGET = plugin  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "acmeflow_test_deploy_plugin", module)
    eps = [
        EntryPoint("echo", "acmeflow_test_deploy_plugin:TARGET", registry.ENTRY_POINT_GROUP),
        EntryPoint("broken", "acmeflow_no_such_module:TARGET", registry.ENTRY_POINT_GROUP),
        EntryPoint("files", "acmeflow.providers.deploy.files:TARGET", registry.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(plugins, "entry_points", lambda group: eps)
    registry.reset_target_types()
    request.addfinalizer(registry.reset_target_types)
    with caplog.at_level(logging.WARNING):
        names = [t.name for t in target_types()]
    assert names == ["netscaler", "files", "aws-acm", "echo"]
    assert "broken" in caplog.text
    assert isinstance(build_target("echo", {"where": "x"}, {}), _EchoTarget)
    with pytest.raises(ConfigError) as info:
        build_target("echo", {}, {})
    assert info.value.detail == "echo: missing required setting where"


@pytest.mark.parametrize("raw", ["tru", "maybe", "2"])
def test_one_strict_boolean_parser_for_dns_and_deploy(raw: str, tmp_path) -> None:
    with pytest.raises(ConfigError) as info:
        setting_bool({"private_zone": raw}, "private_zone", "route53")
    assert info.value.detail == f"route53: field 'private_zone' must be true or false, not {raw!r}"
    with FakeNitroServer(tls=False) as fake, pytest.raises(ConfigError) as info:
        build_target(
            "netscaler",
            {"url": fake.url, "username": "nsroot", "insecure": raw},
            {"password": "x"},
        )
    assert info.value.detail == f"netscaler: field 'insecure' must be true or false, not {raw!r}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", False), ("true", True), ("YES", True), ("on", True), ("0", False), ("Off", False)],
)
def test_boolean_spellings(raw: str, expected: bool) -> None:
    assert setting_bool({"flag": raw}, "flag", "t") is expected
    assert setting_bool({}, "flag", "t", default=True) is True


def test_deploy_configuration_errors_carry_their_detail() -> None:
    with pytest.raises(ConfigError) as info:
        get_target_type("nope")
    assert (
        info.value.detail is not None and "unknown deploy target type 'nope'" in info.value.detail
    )
    with pytest.raises(ConfigError) as info:
        build_target("files", {"fullchain_path": "/x", "key_path": "/y", "key_mode": "99"}, {})
    assert info.value.detail == "files: field 'key_mode' must be an octal mode like 0600"
