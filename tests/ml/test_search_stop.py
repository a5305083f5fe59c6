"""How a search in the warm trainer learns that its job was stopped in Ray: from its
record, read at most once in STOP_CHECK_S however often Tune asks
(tests/service/test_tune.py stops a running search through Ray)."""

from __future__ import annotations

import pytest

from mlops.ml import search


def test_a_search_reads_its_jobs_status_once_a_second_and_stays_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now, reads, answers = [100.0], [], iter([False, True])
    monkeypatch.setattr(search.time, "monotonic", lambda: now[0])

    def stopped() -> bool:
        reads.append(now[0])
        return next(answers)

    stopper = search.JobStopper(stopped)

    assert [stopper.stop_all() for _ in range(50)] == [False] * 50  # Tune asks each step
    now[0] += search.STOP_CHECK_S
    assert stopper.stop_all() is True and stopper("trial", {}) is True
    now[0] += 10 * search.STOP_CHECK_S
    assert stopper.stop_all() is True
    assert reads == [100.0, 100.0 + search.STOP_CHECK_S]  # never asked again once stopped
