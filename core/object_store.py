"""The ``s3`` store backend: certificate sets in S3-compatible object storage (boto3).

For pools that keep files in object storage rather than in the state database. Layout under
``<bucket>/<prefix><store>/<slug>-<hash8>/``::

    versions/<version>.json    one complete set: certificate, chain, fullchain, the private
                               key sealed with the settings' Fernet key, metadata
    live                       the name of the live version: the commit point (one PUT)

Keys of orders in flight are ``<prefix><store>/.staging/<request id>`` (sealed). A write
stores the new version, then switches ``live`` to it; when the caller's body (its database
commit) raises, ``live`` is switched back and the new version deleted, so the objects and the
certificate rows agree. The previous versions stay (the newest ``keep_previous``). A
certificate's locator is ``s3:<store>/<name>``. Credentials come from boto3's own chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile, an instance role): acmeflow
keeps none.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from acmeflow.core.errors import ConfigError, InvalidKey, NotFound, StoreUnavailable
from acmeflow.core.locator_store import LocatorStore
from acmeflow.core.secrets import SecretBox
from acmeflow.core.stores import (
    S3_PREFIX,
    CertificateSet,
    StoreKind,
    as_bytes,
    check_request_id,
    new_version_name,
)

LIVE = "live"


def is_object_folder(folder: Path | str) -> bool:
    """Whether a certificate's ``folder`` is a locator of the s3 backend."""
    return str(folder).startswith(S3_PREFIX)


class ObjectStore(LocatorStore):
    """One store (``certificate`` or ``zero-touch``) in a bucket of S3-compatible storage."""

    backend = "s3"
    PREFIX = S3_PREFIX

    def __init__(
        self,
        kind: StoreKind,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        keep_previous: int | None = 5,
        box: SecretBox | None = None,
    ) -> None:
        super().__init__(kind, keep_previous=keep_previous, box=box)
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self._client: Any = None

    def __repr__(self) -> str:
        return f"ObjectStore({self.kind!r}, s3://{self.bucket}/{self.prefix})"

    @property
    def client(self) -> Any:
        """The S3 client (made on first use: boto3 loads only where a store uses it)."""
        if self._client is None:
            import boto3

            if not self.bucket:
                raise ConfigError(detail="the s3 store backend needs ACMEFLOW_S3_BUCKET")
            self._client = boto3.client("s3", endpoint_url=self.endpoint_url)
        return self._client

    def _base(self, folder: Path | str) -> str:
        return f"{self.prefix}{self.kind}/{Path(self._own(folder)).name}/"

    # -- objects

    def _get(self, key: str) -> bytes | None:
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        except Exception as exc:  # botocore.exceptions.ClientError and connection errors
            raise _storage_error(exc) from None
        return body

    def _put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except Exception as exc:
            raise _storage_error(exc) from None

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": key} for key in keys[start : start + 1000]]
            with contextlib.suppress(Exception):  # a leftover object is harmless
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk})

    def forget(self, folder: Path | str) -> None:
        """Delete every object of ``folder`` (it moved to another backend)."""
        base = self._base(folder)
        self._delete([obj["Key"] for obj in self._list(base)])

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                found += page.get("Contents", [])
        except Exception as exc:
            raise _storage_error(exc) from None
        return found

    def _version_names(self, base: str) -> list[str]:
        """The versions stored under ``base``, oldest first."""
        names = [
            obj["Key"][len(base) + len("versions/") : -len(".json")]
            for obj in self._list(f"{base}versions/")
            if obj["Key"].endswith(".json")
        ]
        return sorted(names)

    def _load(self, base: str, version: str) -> CertificateSet:
        data = self._get(f"{base}versions/{version}.json")
        if data is None:
            raise NotFound(detail=f"version {version} of {base} is missing from the bucket")
        doc = json.loads(data)
        return CertificateSet(
            cert=doc["cert"].encode(),
            chain=doc["chain"].encode(),
            fullchain=doc["fullchain"].encode(),
            key=self.box.decrypt(doc["key_sealed"]).encode(),
            metadata=doc.get("metadata", {}),
        )

    def _live(self, base: str) -> str | None:
        data = self._get(f"{base}{LIVE}")
        return data.decode() if data else None

    # -- write / read

    @contextlib.contextmanager
    def replacing(
        self,
        folder: Path,
        *,
        cert_pem: bytes | str,
        chain_pem: bytes | str,
        fullchain_pem: bytes | str,
        key_pem: bytes | str | None,
        metadata: dict[str, Any],
    ) -> Iterator[Path]:
        """Make a new version of ``folder`` live; switched back when the body raises."""
        base = self._base(folder)
        old = self._live(base)
        if key_pem is None:
            if old is None:
                raise InvalidKey(detail=f"no private key to reuse in {str(folder)!r}")
            key_pem = self._load(base, old).key
        new = CertificateSet.checked(
            cert_pem=cert_pem,
            chain_pem=chain_pem,
            fullchain_pem=fullchain_pem,
            key_pem=key_pem,
            metadata=metadata,
        )
        version = new_version_name()
        doc = {
            "cert": new.cert.decode(),
            "chain": new.chain.decode(),
            "fullchain": new.fullchain.decode(),
            "key_sealed": self.box.encrypt(new.key.decode()),
            "metadata": metadata,
        }
        self._put(f"{base}versions/{version}.json", json.dumps(doc, default=str).encode())
        self._put(f"{base}{LIVE}", version.encode())  # the commit point
        try:
            yield Path(folder)
        except BaseException:
            if old is None:
                self._delete([f"{base}{LIVE}"])
            else:
                self._put(f"{base}{LIVE}", old.encode())
            self._delete([f"{base}versions/{version}.json"])
            raise
        self._prune(base, version)

    def _prune(self, base: str, live: str) -> None:
        if self.keep_previous is None:
            return
        earlier = [v for v in self._version_names(base) if v != live]
        excess = earlier[: max(len(earlier) - self.keep_previous, 0)]
        self._delete([f"{base}versions/{v}.json" for v in excess])

    def read_set(self, folder: Path | str) -> CertificateSet:
        """The live set of ``folder``."""
        base = self._base(folder)
        live = self._live(base)
        if live is None:
            raise NotFound(detail=f"no certificate in the s3 store at {str(folder)!r}")
        return self._load(base, live)

    def versions(self, folder: Path | str) -> list[CertificateSet]:
        """Every version of ``folder``, oldest first, the live one last."""
        base = self._base(folder)
        live = self._live(base)
        names = [v for v in self._version_names(base) if v != live]
        return [self._load(base, v) for v in (*names, *([live] if live else []))]

    # -- keys of orders in flight

    def _staged(self, request_id: str) -> str:
        return f"{self.prefix}{self.kind}/.staging/{check_request_id(request_id)}"

    def write_staging_key(self, request_id: str, key_pem: bytes | str) -> None:
        """Park a generated key, sealed, while its order is in flight."""
        self._put(self._staged(request_id), self.box.encrypt(as_bytes(key_pem).decode()).encode())

    def read_staging_key(self, request_id: str) -> bytes:
        """The parked key of ``request_id``."""
        data = self._get(self._staged(request_id))
        if data is None:
            raise NotFound(detail=f"no staged key for request {request_id!r}")
        return self.box.decrypt(data.decode()).encode()

    def discard_staging_key(self, request_id: str) -> None:
        """Delete the parked key of ``request_id`` (absent is fine)."""
        self._delete([self._staged(request_id)])

    def staged_requests(self) -> list[str]:
        """The request ids whose keys are parked here."""
        base = f"{self.prefix}{self.kind}/.staging/"
        return sorted(obj["Key"][len(base) :] for obj in self._list(base))

    def prune_staging_keys(
        self, older_than: dt.timedelta, keep: Collection[str] = frozenset()
    ) -> list[str]:
        """Delete parked keys older than ``older_than`` but those of ``keep``; their ids."""
        base = f"{self.prefix}{self.kind}/.staging/"
        cutoff = dt.datetime.now(dt.UTC) - older_than
        old = [
            obj["Key"][len(base) :]
            for obj in self._list(base)
            if obj["LastModified"] < cutoff and obj["Key"][len(base) :] not in keep
        ]
        self._delete([base + request_id for request_id in old])
        return sorted(old)


def _storage_error(exc: Exception) -> StoreUnavailable:
    """An S3 failure as the catalog's error: the service's code and message, or the kind of
    connection failure (never credentials)."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    text = f"{error.get('Code')}: {error.get('Message')}" if error else type(exc).__name__
    return StoreUnavailable(detail=f"s3: {text}")
