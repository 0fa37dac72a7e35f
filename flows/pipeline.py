"""The issuance sequence as the ``issue`` and ``renew`` flows run it (composition only)."""

from acmeflow.core.pipeline import Batch
from acmeflow.tasks.pipeline import STEP_TASKS, clean_up


def run_sequence(batch: Batch) -> Batch:
    """Every step task on ``batch`` in order, then the cleanup, whatever happened."""
    interrupted: BaseException | None = None
    try:
        for step in STEP_TASKS:
            step(batch)
    except BaseException as exc:
        interrupted = exc
        raise
    finally:
        clean_up(batch, interrupted)
    return batch
