"""Run the issuance steps for one request up to ``finalize_orders``, then SIGKILL this process
(run as a subprocess by the recovery test): the CA issued the certificate, nothing stored it.

Usage: ``python -m tests.faults.order_killer CA NAME [NAME ...]`` with the home in the
environment. Prints the journaled order URL before it dies.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid

from acmeflow.config.settings import get_settings
from acmeflow.core import pipeline
from acmeflow.core.state import history, orders_in_flight
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.tasks.pipeline import pipeline_context, start_batch


def main(ca: str, *names: str) -> None:
    engine = open_database(get_settings().resolved_database_url)
    with session_scope(engine) as s:
        entry = history.log_start(
            s, kind="issue", names=list(names), ca_name=ca, store="certificate"
        )
    item = pipeline.OrderItem(
        ref=uuid.uuid4().hex, ca=ca, names=list(names), store="certificate", log_id=entry.id
    )
    ctx = pipeline_context()
    batch = start_batch([item])
    pipeline.open_issue(batch, ctx)
    for step in pipeline.SEQUENCE:
        if step.name == "store_certificates":
            break
        step.run(batch, ctx)
        pipeline.settle(batch, ctx, final=True)
    if item.error is not None:
        raise SystemExit(f"failed before the kill: {item.error}")
    with session_scope(engine) as s:
        (journaled,) = orders_in_flight.listed(s)
    print(journaled.order_url, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main(*sys.argv[1:])
