"""What every acmeflow flow is declared with: :func:`acmeflow_flow`.

Prefect validates a run's parameters before the run's logger exists, so a validation failure
reaches only the console of the process that ran it (``acmeflow serve``'s stdout or a worker's
log), and the run page shows a bare state message. :func:`log_invalid_parameters` puts it on
the run page: it runs as the flow's failure hook and logs through the flow run's logger.
"""

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Flow, flow
from prefect.client.schemas.objects import FlowRun
from prefect.logging.loggers import flow_run_logger
from prefect.states import State

P = ParamSpec("P")
R = TypeVar("R")

#: How Prefect's flow engine begins the state message of a run whose parameters failed.
VALIDATION_FAILED = "Validation of flow parameters failed"


def log_invalid_parameters(flow: Flow[Any, Any], flow_run: FlowRun, state: State) -> None:
    """Log a parameter-validation failure of ``flow_run`` to its run page (other failures are
    logged by the run itself)."""
    message = state.message or ""
    if message.startswith(VALIDATION_FAILED):
        flow_run_logger(flow_run, flow).error(
            "The run's parameters are invalid, so nothing was done. Correct them and run "
            "again.\n%s",
            message,
        )


def acmeflow_flow(name: str) -> Callable[[Callable[P, R]], Flow[P, R]]:
    """``@flow`` as every acmeflow flow uses it: named, prints not logged, and a failed
    parameter validation logged on the run page."""
    return flow(name=name, log_prints=False, on_failure=[log_invalid_parameters])
