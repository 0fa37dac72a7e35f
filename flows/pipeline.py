"""The issuance sequence as the ``issue`` and ``renew`` flows run it (composition only)."""

from acmeflow.core.pipeline import Batch
from acmeflow.tasks.limits import dns_slots
from acmeflow.tasks.pipeline import STEP_TASKS, clean_up


def run_sequence(batch: Batch) -> Batch:
    """Every step task on ``batch`` in order, then the cleanup, whatever happened. The TXT
    records are written holding the DNS providers' pool-wide slots (the cleanup never waits
    for one: it must run)."""
    interrupted: BaseException | None = None
    try:
        for step in STEP_TASKS:
            if step.name == "add_txt_records":
                with dns_slots(batch):
                    step(batch)
            else:
                step(batch)
    except BaseException as exc:
        interrupted = exc
        raise
    finally:
        clean_up(batch, interrupted)
    return batch
