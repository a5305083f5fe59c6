"""Rolling back undoes promotions in order (fast: the history replay alone)."""

from __future__ import annotations

from datetime import UTC, datetime

from mlops.schemas import ChampionMove
from mlops.services.models import _champions


def _move(action: str, before: str | None, after: str) -> ChampionMove:
    return ChampionMove(
        action=action,
        from_version=before,
        to_version=after,
        at=datetime.now(UTC),
        by="t",
        reason="r",
    )


def test_each_rollback_goes_one_promotion_further_back() -> None:
    oldest_first = [
        _move("promote", None, "1"),
        _move("promote", "1", "2"),
        _move("promote", "2", "3"),
        _move("rollback", "3", "2"),
    ]

    stack = _champions(list(reversed(oldest_first)))

    assert stack == ["1", "2"]  # the next rollback goes to 1, not back to 3


def test_a_promotion_after_a_rollback_is_undone_first() -> None:
    oldest_first = [
        _move("promote", None, "1"),
        _move("promote", "1", "2"),
        _move("rollback", "2", "1"),
        _move("promote", "1", "5"),
    ]

    assert _champions(list(reversed(oldest_first))) == ["1", "5"]
