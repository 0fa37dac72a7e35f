"""Deploy target ``aws-acm``: import a certificate into AWS Certificate Manager.

The first deployment imports a new certificate tagged ``acmeflow:name=<bundle name>`` (plus
the configured tags); a renewal re-imports into the same ARN (the configured
``certificate_arn``, else the one carrying that tag), so load balancers and CloudFront
distributions using it pick the new certificate up without a change. When the ARN already
holds a certificate with the same serial nothing is imported (``changed=False``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import boto3
import botocore.exceptions as bexc
from botocore.config import Config

from acmeflow.core.errors import ConfigError, DeployError
from acmeflow.providers.deploy.base import (
    CertificateBundle,
    DeployOutcome,
    TargetType,
    secret,
    setting,
)
from acmeflow.providers.deploy.common import deploy_error, serial_of_pem

log = logging.getLogger(__name__)

TYPE_NAME = "aws-acm"
NAME_TAG = "acmeflow:name"
# ListCertificates returns only RSA_2048 certificates unless asked for every key type.
KEY_TYPES = [
    "RSA_1024",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "EC_prime256v1",
    "EC_secp384r1",
    "EC_secp521r1",
]
_AUTH_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
}
_THROTTLE_CODES = {
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalServerError",
}
_NOT_FOUND = {"ResourceNotFoundException"}

_T = TypeVar("_T")


def parse_tags(text: str) -> list[dict[str, str]]:
    """``"k=v,k2=v2"`` as ACM tags; a malformed pair is a :class:`ConfigError`."""
    tags: list[dict[str, str]] = []
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                detail=f"{TYPE_NAME}: tags must look like k=v,k2=v2 (bad pair {pair!r})"
            )
        if key.strip() == NAME_TAG:
            raise ConfigError(detail=f"{TYPE_NAME}: the tag {NAME_TAG} is set by acmeflow")
        tags.append({"Key": key.strip(), "Value": value.strip()})
    return tags


class AcmTarget:
    """AWS Certificate Manager in one region; renewals keep their ARN."""

    type_name = TYPE_NAME

    def __init__(
        self,
        *,
        region: str,
        certificate_arn: str = "",
        access_key_id: str = "",
        secret_access_key: str = "",
        profile: str = "",
        role_arn: str = "",
        endpoint_url: str = "",
        tags: str = "",
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
    ) -> None:
        if bool(access_key_id) != bool(secret_access_key):
            raise ConfigError(
                detail=f"{TYPE_NAME}: access_key_id and secret_access_key must be given together"
            )
        self.region = region
        self.certificate_arn = certificate_arn
        self.access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self.profile = profile
        self.role_arn = role_arn
        self.endpoint_url = endpoint_url or None
        self.tags = parse_tags(tags)
        self._config = Config(
            region_name=region,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        self._session_secrets: list[str] = []

    def __repr__(self) -> str:
        return f"AcmTarget(region={self.region!r}, certificate_arn={self.certificate_arn!r})"

    # --- public API ----------------------------------------------------------------------

    def deploy(self, bundle: CertificateBundle) -> DeployOutcome:
        """Import ``bundle`` (re-import into its ARN on renewal); idempotent by serial."""
        return self._guard(lambda: self._deploy(bundle))

    def current_serial(self, name: str | None = None) -> str | None:
        """Serial held at the configured ARN, else at the ARN tagged with ``name``."""

        def run() -> str | None:
            acm = self._client()
            arn = self.certificate_arn or (self._find_arn(acm, name) if name else None)
            return self._serial_at(acm, arn) if arn else None

        return self._guard(run)

    # --- internals -----------------------------------------------------------------------

    def _deploy(self, bundle: CertificateBundle) -> DeployOutcome:
        acm = self._client()
        arn = self.certificate_arn or self._find_arn(acm, bundle.name)
        wanted = serial_of_pem(bundle.cert_pem) or bundle.serial
        pems: dict[str, Any] = {"Certificate": bundle.cert_pem, "PrivateKey": bundle.key_pem}
        if bundle.chain_pem.strip():
            pems["CertificateChain"] = bundle.chain_pem
        name_tag = {"Key": NAME_TAG, "Value": bundle.name}

        if arn:
            current = self._serial_at(acm, arn)
            if current is not None or self.certificate_arn:
                if current == wanted:
                    return DeployOutcome(
                        changed=False,
                        detail=f"ACM certificate already holds serial {wanted}",
                        location=arn,
                    )
                # Re-import keeps the ARN (and every service association). Tags cannot be
                # given on a re-import; make sure ours is there afterwards.
                acm.import_certificate(CertificateArn=arn, **pems)
                acm.add_tags_to_certificate(CertificateArn=arn, Tags=[name_tag])
                return DeployOutcome(
                    changed=True,
                    detail=f"re-imported serial {wanted} into {arn}",
                    location=arn,
                )
            log.warning("%s: certificate %s vanished; importing a new one", TYPE_NAME, arn)

        answer = acm.import_certificate(Tags=[name_tag, *self.tags], **pems)
        new_arn = str(answer["CertificateArn"])
        return DeployOutcome(
            changed=True, detail=f"imported serial {wanted} as {new_arn}", location=new_arn
        )

    def _client(self) -> Any:
        session = boto3.session.Session(
            aws_access_key_id=self.access_key_id or None,
            aws_secret_access_key=self._secret_access_key or None,
            profile_name=self.profile or None,
            region_name=self.region,
        )
        if self.role_arn:
            sts = session.client("sts", endpoint_url=self.endpoint_url, config=self._config)
            creds = sts.assume_role(RoleArn=self.role_arn, RoleSessionName="acmeflow-deploy")[
                "Credentials"
            ]
            self._session_secrets = [creds["SecretAccessKey"], creds["SessionToken"]]
            session = boto3.session.Session(
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
                region_name=self.region,
            )
        return session.client("acm", endpoint_url=self.endpoint_url, config=self._config)

    def _find_arn(self, acm: Any, name: str) -> str | None:
        """The ARN of the imported certificate tagged ``acmeflow:name=<name>``, if any."""
        summaries = list(self._summaries(acm))
        # Likely candidates first: the certificate's name is usually its first domain.
        summaries.sort(key=lambda s: s.get("DomainName") != name.lstrip("*."))
        for summary in summaries:
            if summary.get("Type", "IMPORTED") != "IMPORTED":
                continue
            arn = str(summary["CertificateArn"])
            try:
                tags = acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
            except bexc.ClientError as exc:
                if _code(exc) in _NOT_FOUND:
                    continue
                raise
            if any(t.get("Key") == NAME_TAG and t.get("Value") == name for t in tags):
                return arn
        return None

    @staticmethod
    def _summaries(acm: Any) -> Iterator[dict[str, Any]]:
        paginator = acm.get_paginator("list_certificates")
        for page in paginator.paginate(Includes={"keyTypes": KEY_TYPES}):
            yield from page.get("CertificateSummaryList", [])

    def _serial_at(self, acm: Any, arn: str) -> str | None:
        """Serial of the certificate at ``arn``; None when a tag-found ARN is gone."""
        try:
            answer = acm.get_certificate(CertificateArn=arn)
        except bexc.ClientError as exc:
            if _code(exc) in _NOT_FOUND and not self.certificate_arn:
                return None
            raise
        return serial_of_pem(str(answer.get("Certificate", "")).encode())

    def _guard(self, func: Callable[[], _T]) -> _T:
        """Run ``func``; botocore failures become :class:`DeployError` (secrets masked)."""
        try:
            return func()
        except DeployError:
            raise
        except bexc.ClientError as exc:
            code = _code(exc)
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            message = exc.response.get("Error", {}).get("Message") or str(exc)
            op = exc.operation_name
            retryable = code in _THROTTLE_CODES or status >= 500
            if code in _NOT_FOUND:
                text = f"certificate not found ({op}: {code}: {message})"
                if self.certificate_arn:
                    text += f"; check certificate_arn {self.certificate_arn}"
            elif code == "ValidationException" and "arn" in message.lower():
                text = f"invalid certificate ARN {self.certificate_arn!r} ({op}: {code}: {message})"
            elif code in _AUTH_CODES:
                text = f"access refused ({op}: {code}: {message}); check the credentials/role"
                retryable = False
            else:
                text = f"{op} failed: {code}: {message}"
            raise self._error(text, retryable=retryable) from None
        except (
            bexc.EndpointConnectionError,
            bexc.ConnectTimeoutError,
            bexc.ReadTimeoutError,
            bexc.ConnectionClosedError,
        ) as exc:
            raise self._error(f"cannot reach ACM: {exc}", retryable=True) from None
        except (bexc.NoCredentialsError, bexc.PartialCredentialsError) as exc:
            raise self._error(f"no AWS credentials: {exc}", retryable=False) from None
        except bexc.ParamValidationError as exc:
            text = f"request refused before sending: {exc}"
            if "CertificateArn" in str(exc):
                text = f"invalid certificate ARN {self.certificate_arn!r}: {exc}"
            raise self._error(text, retryable=False) from None
        except bexc.ProfileNotFound as exc:
            raise self._error(f"{exc}", retryable=False) from None
        except bexc.BotoCoreError as exc:
            raise self._error(f"{type(exc).__name__}: {exc}", retryable=False) from None

    def _error(self, text: str, *, retryable: bool) -> DeployError:
        secrets = [self._secret_access_key, *self._session_secrets]
        return deploy_error(TYPE_NAME, text, secrets=secrets, retryable=retryable)


def _code(exc: bexc.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or "")


def build_acm_target(settings: Mapping[str, str], secrets: Mapping[str, str]) -> AcmTarget:
    """Factory for the registry: an :class:`AcmTarget` from settings and secrets."""
    try:
        return AcmTarget(
            region=settings["region"],
            certificate_arn=settings.get("certificate_arn", ""),
            access_key_id=settings.get("access_key_id", ""),
            secret_access_key=secrets.get("secret_access_key", ""),
            profile=settings.get("profile", ""),
            role_arn=settings.get("role_arn", ""),
            endpoint_url=settings.get("endpoint_url", ""),
            tags=settings.get("tags", ""),
        )
    except KeyError as exc:
        raise ConfigError(detail=f"{TYPE_NAME}: missing required setting {exc.args[0]}") from None


TARGET = TargetType(
    name=TYPE_NAME,
    label="AWS Certificate Manager",
    fields=(
        setting("region", "AWS region, e.g. eu-west-1", required=True),
        setting("certificate_arn", "ARN to re-import into (default: found by tag)"),
        setting("access_key_id", "access key id (default: the AWS credential chain)"),
        secret("secret_access_key", "secret access key"),
        setting("profile", "AWS shared-config profile"),
        setting("role_arn", "IAM role to assume via STS"),
        setting("endpoint_url", "custom ACM/STS endpoint (tests, VPC endpoints)"),
        setting("tags", "extra tags on first import: k=v,k2=v2"),
    ),
    factory=build_acm_target,
)
