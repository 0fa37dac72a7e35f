"""The bulk-renewal bench never calls a target met against a reference that failed."""

from typing import Any

from bench.bulk_renew import report

FLOW = {"flow_seconds": 9.0, "flow_cpu_seconds": 7.2, "renewed": 200, "peak_rss_mb": 210.0}


def floor(failures: int) -> dict[str, Any]:
    return {"seconds": 6.0, "cpu_seconds": 6.0, "failures": failures}


def test_failed_floor_gives_no_ratio_and_no_met() -> None:
    summary = report({"acmeflow": FLOW, "floor": floor(174)}, 200)
    assert summary["floor_ratio"] is None and summary["cpu_ratio"] is None
    assert summary["target_floor"] is None and summary["target_cpu_floor"] is None
    assert summary["acmeflow_cpu_ms"] == 36.0


def test_clean_floor_gives_wall_and_cpu_ratios() -> None:
    summary = report({"acmeflow": FLOW, "floor": floor(0)}, 200)
    assert summary["floor_ratio"] == 1.5 and summary["target_floor"] is True
    assert summary["floor_cpu_ms"] == 30.0 and summary["cpu_ratio"] == 1.2
