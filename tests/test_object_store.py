"""The optional ``s3`` store backend against moto in server mode (a real HTTP endpoint on
127.0.0.1): versions with the key sealed, the live pointer switched back when the caller's
commit fails, previous versions kept, staged keys; and a certificate issued, renewed, exported
and deployed from the bucket on the sandbox, then migrated to the database and back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography import x509

from acmeflow.config.settings import get_settings
from acmeflow.core.errors import InvalidKey, StoreUnavailable
from acmeflow.core.object_store import ObjectStore
from tests.fixtures_acmeflow import Home
from tests.test_db_store import as_json, cert_row, deploy_to_files_target, new_set
from tests.test_issue_e2e import issue_json
from tests.test_renew_e2e import renew_json

BUCKET = "acmeflow-certificates"


@pytest.fixture
def bucket(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An empty bucket on the moto server; boto3 finds the test credentials in the env."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTING")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-not-real")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=moto_url)
    client.create_bucket(Bucket=BUCKET)
    yield client
    import requests

    requests.post(f"{moto_url}/moto-api/reset", timeout=10)


def objects(client: Any) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def test_versions_rollback_and_staged_keys(
    bucket: Any, moto_url: str, pki: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACMEFLOW_HOME", str(tmp_path))
    get_settings.cache_clear()
    store = ObjectStore("certificate", bucket=BUCKET, prefix="acme/", endpoint_url=moto_url,
                        keep_previous=1)  # fmt: skip
    folder = store.folder_for(["s3.example.com"])
    first, second = pki.issue(["s3.example.com"]), pki.issue(["s3.example.com"])
    with store.replacing(folder, **new_set(first)):
        pass
    assert store.read_set(folder).cert == first.cert_pem
    assert all(b"PRIVATE KEY" not in body for body in objects(bucket).values())

    with pytest.raises(RuntimeError), store.replacing(folder, **new_set(second)):
        raise RuntimeError("the certificate row could not be committed")
    assert store.read_set(folder).cert == first.cert_pem  # switched back
    assert len(store.versions(folder)) == 1

    with (
        pytest.raises(InvalidKey),
        store.replacing(folder, **new_set(second, key_pem=first.key_pem)),
    ):
        pass
    same_key = pki.issue(["s3.example.com"], key=first.key)
    for _ in range(3):  # the live key reused; one previous version kept
        with store.replacing(folder, **new_set(same_key, key_pem=None)):
            pass
    assert [v.cert for v in store.versions(folder)] == [same_key.cert_pem] * 2
    assert len([key for key in objects(bucket) if "/versions/" in key]) == 2

    store.write_staging_key("order-1", b"-----BEGIN PRIVATE KEY-----\nx\n")
    store.write_staging_key("order-2", b"-----BEGIN PRIVATE KEY-----\ny\n")
    assert store.staged_requests() == ["order-1", "order-2"]
    assert store.read_staging_key("order-2").endswith(b"y\n")
    assert store.prune_staging_keys(dt.timedelta(0), keep={"order-2"}) == ["order-1"]
    store.discard_staging_key("order-2")
    assert store.staged_requests() == []

    missing = ObjectStore("certificate", bucket="no-such-bucket", endpoint_url=moto_url)
    with pytest.raises(StoreUnavailable, match="NoSuchBucket"):
        missing.write_staging_key("order-3", b"key")


@pytest.mark.sandbox
@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_issue_renew_export_and_deploy_from_the_bucket(
    home: Home, bucket: Any, moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ACMEFLOW_STORE_BACKEND", "s3")
    monkeypatch.setenv("ACMEFLOW_S3_BUCKET", BUCKET)
    monkeypatch.setenv("ACMEFLOW_S3_ENDPOINT_URL", moto_url)
    get_settings.cache_clear()
    issued = issue_json(home, "--name", "bucket.example.com")
    assert issued["folder"].startswith("s3:certificate/") and issued["files"] == {}
    assert renew_json("--now", str(issued["id"]))["renewed"] == 1
    row = cert_row(issued["id"])
    assert row.folder == issued["folder"] and row.serial != issued["serial"]
    keys = objects(bucket)
    assert len([k for k in keys if "/versions/" in k]) == 2
    assert not any(".staging/" in k for k in keys)

    out = tmp_path / "out"
    home.ok("certs", "export", str(issued["id"]), str(out))
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert format(cert.serial_number, "x") == row.serial
    web = tmp_path / "web"
    assert deploy_to_files_target(home, issued["id"], web) == ["deployed"]
    assert (web / "fullchain.pem").read_bytes().startswith((out / "cert.pem").read_bytes())
    listed = {r["store"]: r for r in as_json(home, "stores", "list")}
    assert listed["certificate"]["s3"] == 1 and listed["certificate"]["new_certificates"] == "s3"

    (to_db,) = as_json(home, "stores", "migrate", "--to", "database", "--store", "certificate")
    assert (to_db["moved"], to_db["versions"]) == ([issued["id"]], 2)
    assert objects(bucket) == {}  # moved: the objects are removed once the row names the database
    (back,) = as_json(home, "stores", "migrate", "--to", "s3", "--store", "certificate")
    assert back["moved"] == [issued["id"]] and cert_row(issued["id"]).folder == issued["folder"]
    home.ok("certs", "export", str(issued["id"]), str(tmp_path / "again"))
    assert (tmp_path / "again" / "cert.pem").read_bytes() == (out / "cert.pem").read_bytes()
