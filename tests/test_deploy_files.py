"""Files + reload deploy target, against a real nginx (Debian's /usr/sbin/nginx)."""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterator
from dataclasses import replace

import pytest

from acmeflow.core.errors import ConfigError, DeployError
from acmeflow.providers.deploy.base import CertificateBundle
from acmeflow.providers.deploy.files import FilesTarget
from acmeflow.providers.deploy.registry import build_target, target_types
from tests.nginx_server import Nginx, NginxStartError, run_nginx


def detail(exc: DeployError) -> str:
    """The error's detail (always set for deploy errors)."""
    assert exc.detail is not None
    return exc.detail


@pytest.fixture
def nginx(tmp_path, pki) -> Iterator[Nginx]:
    boot = pki.issue(["www.example.com"])
    try:
        with run_nginx(
            tmp_path,
            boot_fullchain=boot.cert_pem + boot.chain_pem,
            boot_key=boot.key_pem,
            boot_serial=boot.serial,
        ) as n:
            yield n
    except NginxStartError as exc:
        pytest.fail(str(exc))


def files_target(n: Nginx, reload_command: str, **extra: str) -> FilesTarget:
    settings = {
        "fullchain_path": str(n.fullchain),
        "key_path": str(n.key),
        "reload_command": reload_command,
        **extra,
    }
    target = build_target("files", settings, {})
    assert isinstance(target, FilesTarget)
    return target


def test_deploy_reload_and_rollback_with_real_nginx(nginx, pki):
    one, two, three = (pki.issue(["www.example.com"]) for _ in range(3))
    target = files_target(nginx, nginx.reload_command)

    out1 = target.deploy(one.bundle("www.example.com"))
    assert out1.changed and out1.location == str(nginx.fullchain)
    assert nginx.wait_for_serial(one.serial) == one.serial
    assert target.current_serial() == one.serial

    target.deploy(two.bundle("www.example.com"))
    assert nginx.wait_for_serial(two.serial) == two.serial

    failing = files_target(nginx, "false")
    with pytest.raises(DeployError) as err:
        failing.deploy(three.bundle("www.example.com"))
    assert detail(err.value).startswith("files: ")
    assert "previous files restored" in detail(err.value)
    assert err.value.retryable is False
    assert nginx.fullchain.read_bytes() == two.cert_pem + two.chain_pem
    assert nginx.key.read_bytes() == two.key_pem
    assert nginx.settled_serial() == two.serial
    assert nginx.proc.poll() is None


def test_config_test_failure_restores_and_keeps_serving(nginx, pki):
    """A key that does not match: ``nginx -t`` fails, its stderr is reported, service stays."""
    good = pki.issue(["www.example.com"])
    target = files_target(nginx, nginx.test_then_reload_command)
    target.deploy(good.bundle("www.example.com"))
    assert nginx.wait_for_serial(good.serial) == good.serial

    broken = pki.issue(["www.example.com"])
    stranger = pki.issue(["www.example.com"])
    bad_bundle = replace(broken.bundle("www.example.com"), key_pem=stranger.key_pem)
    with pytest.raises(DeployError) as err:
        target.deploy(bad_bundle)
    assert "key values mismatch" in detail(err.value)
    assert "service reloaded with the previous files" in detail(err.value)
    assert "PRIVATE KEY" not in str(err.value)
    assert nginx.key.read_bytes() == good.key_pem
    assert nginx.settled_serial() == good.serial

    after = pki.issue(["www.example.com"])
    target.deploy(after.bundle("www.example.com"))
    assert nginx.wait_for_serial(after.serial) == after.serial


def test_same_content_writes_nothing_and_skips_reload(tmp_path, pki):
    marker = tmp_path / "reloaded"
    target = build_target(
        "files",
        {
            "fullchain_path": str(tmp_path / "fullchain.pem"),
            "key_path": str(tmp_path / "key.pem"),
            "cert_path": str(tmp_path / "cert.pem"),
            "chain_path": str(tmp_path / "chain.pem"),
            "reload_command": f"touch {marker}",
        },
        {},
    )
    issued = pki.issue(["www.example.com"])
    bundle = issued.bundle("www.example.com")
    assert target.deploy(bundle).changed is True
    assert marker.exists()
    assert (tmp_path / "cert.pem").read_bytes() == issued.cert_pem
    assert (tmp_path / "chain.pem").read_bytes() == issued.chain_pem
    marker.unlink()
    mtime = (tmp_path / "key.pem").stat().st_mtime_ns

    again = target.deploy(bundle)

    assert again.changed is False
    assert not marker.exists()
    assert (tmp_path / "key.pem").stat().st_mtime_ns == mtime


def test_file_modes_and_owner(tmp_path, pki):
    me = pwd.getpwuid(os.getuid())
    old_umask = os.umask(0o077)  # modes must not depend on the umask
    try:
        target = build_target(
            "files",
            {
                "fullchain_path": str(tmp_path / "fullchain.pem"),
                "key_path": str(tmp_path / "key.pem"),
                "owner": f"{me.pw_name}:{os.getgid()}",
            },
            {},
        )
        target.deploy(pki.issue(["www.example.com"]).bundle("www.example.com"))
    finally:
        os.umask(old_umask)
    key_stat = (tmp_path / "key.pem").stat()
    assert stat.S_IMODE(key_stat.st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "fullchain.pem").stat().st_mode) == 0o644
    assert key_stat.st_uid == os.getuid()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    custom = build_target(
        "files",
        {
            "fullchain_path": str(tmp_path / "fc2.pem"),
            "key_path": str(tmp_path / "k2.pem"),
            "key_mode": "0640",
            "cert_mode": "0600",
        },
        {},
    )
    custom.deploy(pki.issue(["www.example.com"]).bundle("www.example.com"))
    assert stat.S_IMODE((tmp_path / "k2.pem").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "fc2.pem").stat().st_mode) == 0o600


def test_failed_first_deploy_leaves_no_files(tmp_path, pki):
    target = build_target(
        "files",
        {
            "fullchain_path": str(tmp_path / "fullchain.pem"),
            "key_path": str(tmp_path / "key.pem"),
            "reload_command": "sh -c 'echo reload exploded >&2; exit 3'",
        },
        {},
    )
    with pytest.raises(DeployError) as err:
        target.deploy(pki.issue(["www.example.com"]).bundle("www.example.com"))
    assert "exited with 3" in detail(err.value) and "reload exploded" in detail(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert target.current_serial() is None


def test_reload_timeout_is_retryable_and_restores(tmp_path, pki):
    first = pki.issue(["www.example.com"]).bundle("www.example.com")
    paths = {"fullchain_path": str(tmp_path / "fc.pem"), "key_path": str(tmp_path / "k.pem")}
    build_target("files", paths, {}).deploy(first)
    slow = build_target(
        "files", {**paths, "reload_command": "sleep 5", "reload_timeout": "0.2"}, {}
    )
    with pytest.raises(DeployError) as err:
        slow.deploy(pki.issue(["www.example.com"]).bundle("www.example.com"))
    assert err.value.retryable is True
    assert "timed out" in detail(err.value)
    assert slow.current_serial() == first.serial


def test_bad_settings(tmp_path):
    with pytest.raises(ConfigError, match="key_path"):
        build_target("files", {"fullchain_path": str(tmp_path / "a")}, {})
    with pytest.raises(ConfigError, match="key_mode"):
        build_target(
            "files",
            {
                "fullchain_path": str(tmp_path / "a"),
                "key_path": str(tmp_path / "b"),
                "key_mode": "rw",
            },
            {},
        )
    with pytest.raises(ConfigError, match="different"):
        build_target(
            "files", {"fullchain_path": str(tmp_path / "a"), "key_path": str(tmp_path / "a")}, {}
        )
    with pytest.raises(ConfigError, match="unknown"):
        build_target("nope", {}, {})


def test_missing_directory_is_a_deploy_error(tmp_path, pki):
    target = build_target(
        "files",
        {"fullchain_path": str(tmp_path / "no" / "fc.pem"), "key_path": str(tmp_path / "k.pem")},
        {},
    )
    with pytest.raises(DeployError) as err:
        target.deploy(pki.issue(["www.example.com"]).bundle("www.example.com"))
    assert "cannot write" in detail(err.value)
    assert not (tmp_path / "k.pem").exists()  # the key written first was taken back


def test_registry_lists_types_and_rejects_unknown_settings(tmp_path):
    names = [t.name for t in target_types()]
    assert names == ["netscaler", "files", "aws-acm"]
    secret_fields = {f.name for t in target_types() for f in t.fields if f.kind == "secret"}
    assert secret_fields == {"password", "secret_access_key"}
    with pytest.raises(ConfigError, match="reload_cmd"):
        build_target(
            "files",
            {
                "fullchain_path": str(tmp_path / "a"),
                "key_path": str(tmp_path / "b"),
                "reload_cmd": "x",
            },
            {},
        )


def test_bundle_repr_hides_the_key(pki):
    bundle = pki.issue(["www.example.com"]).bundle("www.example.com")
    assert "PRIVATE" not in repr(bundle) and bundle.serial in repr(bundle)
    rebuilt = CertificateBundle.from_fullchain(
        "www.example.com", bundle.fullchain_pem, bundle.key_pem
    )
    assert rebuilt == bundle
