"""Deploy targets (F7): where zero-touch certificates go after issuance or renewal.

``netscaler`` (NITRO REST API), ``files`` (PEM files + reload command) and ``aws-acm``
(AWS Certificate Manager). Build one with :func:`build_target`.
"""

from acmeflow.providers.deploy.base import (
    CertificateBundle,
    DeployOutcome,
    DeployTarget,
    TargetType,
)
from acmeflow.providers.deploy.registry import build_target, get_target_type, target_types

__all__ = [
    "CertificateBundle",
    "DeployOutcome",
    "DeployTarget",
    "TargetType",
    "build_target",
    "get_target_type",
    "target_types",
]
