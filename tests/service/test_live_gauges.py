"""Live gauges are replaced round by round, never cleared while a scrape may read them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from mlops.services.live_watch import _show


def _scraped(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def test_a_round_sets_its_versions_and_removes_only_those_no_longer_measured() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("live_metric", "test", ["model", "version"], registry=registry)
    shown = _show(gauge, {("iris", "1"): 0.9, ("iris", "2"): 0.8}, set())
    shown = _show(gauge, {("iris", "2"): 0.85, ("wine", "1"): 0.7}, shown)

    scraped = _scraped(registry)
    assert 'live_metric{model="iris",version="1"}' not in scraped  # no longer measured
    assert 'live_metric{model="iris",version="2"} 0.85' in scraped
    assert 'live_metric{model="wine",version="1"} 0.7' in scraped
    assert shown == {("iris", "2"), ("wine", "1")}

    assert _show(gauge, {}, shown) == set()
    assert "live_metric{" not in _scraped(registry)
