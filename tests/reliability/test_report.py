"""The harness's verdict (pure: no deployment)."""

from __future__ import annotations

from tests.reliability._report import Report


def _judged(**ack: float) -> list[str]:
    report = Report("short", ack_ms=dict(ack))
    report.judge()
    return report.failures


def test_one_stall_in_a_window_does_not_fail_the_run() -> None:
    # the second-slowest of ~150 answers (the p99) is one machine stall; the p95 is steady
    assert _judged(baseline_p95=4.0, baseline_p99=5.5, failing_p95=6.0, failing_p99=744.1) == []


def test_a_web_slowed_by_the_failing_sink_fails_the_run() -> None:
    [failure] = _judged(baseline_p95=4.0, baseline_p99=5.5, failing_p95=900.0, failing_p99=10_000.0)
    assert failure == "web ack p95 moved with a failing sink: 4.0 ms -> 900.0 ms"


def test_both_bounds_must_be_passed() -> None:
    # three times slower but only 8 ms more: scheduling noise, not a web waiting on a sink
    assert _judged(baseline_p95=4.0, failing_p95=12.0) == []
    # 60 ms more but less than three times: a busy machine
    assert _judged(baseline_p95=40.0, failing_p95=100.0) == []
    assert len(_judged(baseline_p95=40.0, failing_p95=130.0)) == 1


def test_what_was_poisoned_is_told() -> None:
    report = Report("short", leftovers={"poison stream": 1, "dlq:hook": 0})
    report.poisoned = ["{receiver}:stream:notifications after 10 attempt(s): GraphError ..."]
    report.judge()
    assert report.failures == [
        "1 entries left in poison stream",
        "  poison: {receiver}:stream:notifications after 10 attempt(s): GraphError ...",
    ]
