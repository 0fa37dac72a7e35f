"""Alerts: what a run tells the operator's channels, as plain data (no Prefect here).

Four events, each about one certificate:

- ``acmeflow.certificate.expiring``: an auto-enrolled certificate inside its renewal window
  and still not renewed after a ``renew`` run, or a manual one within
  ``ACMEFLOW_EXPIRY_WARNING_DAYS`` of expiry after a ``scan``;
- ``acmeflow.renewal.failed`` and ``acmeflow.renewal.succeeded``, one per renewal of a run;
- ``acmeflow.deploy.failed``: one per target a certificate could not be deployed to.

The flows emit them as Prefect events; ``acmeflow alerts setup`` sends them through a Prefect
notification block. A payload holds the names, CA, days left and the catalog message (and the
target of a deployment), never a secret.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from acmeflow.core.state import certificates
from acmeflow.core.state.cas import find_ca
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.state.models import Certificate

if TYPE_CHECKING:
    from acmeflow.core.renewal_plan import RenewalOutcome

EXPIRING = "acmeflow.certificate.expiring"
RENEWAL_FAILED = "acmeflow.renewal.failed"
RENEWAL_SUCCEEDED = "acmeflow.renewal.succeeded"
DEPLOY_FAILED = "acmeflow.deploy.failed"
EVENTS = (EXPIRING, RENEWAL_FAILED, RENEWAL_SUCCEEDED, DEPLOY_FAILED)


def days_until(not_after: dt.datetime | None, at: dt.datetime) -> int | None:
    """Whole days from ``at`` to ``not_after`` (both aware, as stored and parsed; negative
    once expired)."""
    if not_after is None:
        return None
    return math.floor((not_after - at) / dt.timedelta(days=1))


@dataclass(frozen=True)
class Alert:
    """One event about one certificate."""

    event: str
    certificate_id: int
    names: tuple[str, ...]
    ca: str | None
    not_after: dt.datetime | None
    at: dt.datetime
    message: str
    detail: str | None = None
    target: str | None = None

    @property
    def days_left(self) -> int | None:
        """Whole days from ``at`` to expiry (negative once expired)."""
        return days_until(self.not_after, self.at)

    def resource(self) -> dict[str, str]:
        """The Prefect resource the event is about: the certificate."""
        return {
            "prefect.resource.id": f"acmeflow.certificate.{self.certificate_id}",
            "prefect.resource.name": self.names[0] if self.names else str(self.certificate_id),
        }

    def payload(self) -> dict[str, Any]:
        """What the notification can show (JSON-ready, no secret)."""
        return {
            "certificate_id": self.certificate_id,
            "names": ", ".join(self.names),
            "ca": self.ca or "",
            "days_left": self.days_left,
            "not_after": self.not_after.isoformat() if self.not_after else "",
            "message": self.message,
            "detail": self.detail or "",
            "target": self.target or "",
        }


def _ca_name(cert: Certificate) -> str | None:
    return cert.ca_vendor.name if cert.ca_vendor is not None else None


def _expiring(cert: Certificate, at: dt.datetime, why: str) -> Alert:
    return Alert(
        event=EXPIRING,
        certificate_id=cert.id,
        names=tuple(cert.names),
        ca=_ca_name(cert),
        not_after=cert.not_after,
        at=at,
        message=f"Certificate expires in {days_until(cert.not_after, at)} day(s) and {why}.",
        detail=cert.last_error,
    )


def renewal_alerts(
    outcomes: Sequence[RenewalOutcome],
    *,
    at: dt.datetime,
    ca: str | None = None,
    certificate_ids: Iterable[int] | None = None,
    expiring: bool = True,
) -> list[Alert]:
    """The alerts of a ``renew`` run: one per renewal (succeeded or failed), and (unless
    ``expiring`` is False: a share of a run that reports its whole scope) one per
    auto-enrolled certificate of the run's scope still inside its window (not renewed)."""
    alerts: list[Alert] = []
    with session_scope(open_database()) as s:
        rows = certificates.certificates_found(s, (o.certificate_id for o in outcomes))
        for outcome in outcomes:
            if outcome.status not in ("renewed", "failed"):
                continue
            row = rows.get(outcome.certificate_id)
            renewed = outcome.status == "renewed"
            alerts.append(
                Alert(
                    event=RENEWAL_SUCCEEDED if renewed else RENEWAL_FAILED,
                    certificate_id=outcome.certificate_id,
                    names=tuple(outcome.names),
                    ca=outcome.ca,
                    not_after=outcome.not_after if renewed else (row.not_after if row else None),
                    at=at,
                    message=outcome.message,
                    detail=outcome.detail,
                )
            )
        scope_ca = find_ca(s, ca) if ca else None
        if not expiring or (ca and scope_ca is None):
            return alerts
        ids = list(certificate_ids) if certificate_ids is not None else None
        for cert in certificates.still_due(s, now=at, ca=scope_ca, ids=ids):
            alerts.append(_expiring(cert, at, "is not renewed yet"))
    return alerts


def manual_expiry_alerts(*, at: dt.datetime, warning_days: int) -> list[Alert]:
    """One alert per manual certificate that expires within ``warning_days`` of ``at``."""
    with session_scope(open_database()) as s:
        until = at + dt.timedelta(days=warning_days)
        return [
            _expiring(cert, at, "is not enrolled for renewal (renew it by hand or enroll it)")
            for cert in certificates.manual_expiring(s, until=until)
        ]


def deploy_alerts(
    failures: Sequence[tuple[int, str, str, str | None]], *, at: dt.datetime
) -> list[Alert]:
    """One alert per failed deployment: (certificate id, target, message, detail)."""
    with session_scope(open_database()) as s:
        rows = certificates.certificates_found(s, (f[0] for f in failures))
        alerts: list[Alert] = []
        for cert_id, target, message, detail in failures:
            row = rows.get(cert_id)
            alerts.append(
                Alert(
                    event=DEPLOY_FAILED,
                    certificate_id=cert_id,
                    names=tuple(row.names) if row else (),
                    ca=_ca_name(row) if row else None,
                    not_after=row.not_after if row else None,
                    at=at,
                    message=message,
                    detail=detail,
                    target=target,
                )
            )
        return alerts
