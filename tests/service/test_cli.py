"""The `mlops` command against the running platform, as a user runs it."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from helpers import API_TOKEN, MLOPS, Relay, free_port, run_cli, serve_a_champion, wait_for
from sklearn.datasets import load_wine

from mlops.settings.platform import PlatformSettings

pytestmark = pytest.mark.slow


def test_train_wait_follows_the_job_and_prints_the_accuracy(api_url: str) -> None:
    result = run_cli(api_url, "train", "--param", "n_estimators=20", "-p", "max_depth=4", "--wait")

    assert result.returncode == 0, result.stderr
    assert "succeeded: iris version" in result.stdout and "accuracy 0." in result.stdout
    assert "running" in result.stderr  # the live status display


def test_a_bad_parameter_exits_non_zero_with_the_api_message_on_one_line(api_url: str) -> None:
    result = run_cli(api_url, "train", "--param", "n_estimator=5", "--wait")

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line, no traceback
    assert result.stderr.startswith(
        "error: 422 hyperparameters.n_estimator: unknown hyperparameter"
    )


def test_writes_without_a_token_say_so(api_url: str) -> None:
    result = run_cli(api_url, "watch", "30", token=None)

    assert result.returncode == 1
    assert result.stderr.startswith("error: 401 this endpoint needs the API token")
    assert "no token was found: set MLOPS_API_TOKEN, or MLOPS_DATA_DIR" in result.stderr


def test_a_write_from_inside_a_clone_finds_the_token_make_up_kept(
    api_url: str, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    (clone / ".data").mkdir(parents=True)
    (clone / ".data" / "api-token").write_text(f"{API_TOKEN}\n")
    inside = clone / "fastapi" / "mlops"
    inside.mkdir(parents=True)

    # No token given: a write gets past the API's check (the schedule is unknown).
    found = run_cli(api_url, "unschedule", "watch-none", token=None, data_dir=None, cwd=inside)
    elsewhere = run_cli(
        api_url, "unschedule", "watch-none", token=None, data_dir=None, cwd=tmp_path
    )

    assert found.stderr.startswith("error: 404"), found.stderr
    assert elsewhere.stderr.startswith("error: 401"), elsewhere.stderr


def test_an_unreachable_api_is_one_clear_line() -> None:
    result = run_cli(f"http://127.0.0.1:{free_port()}", "jobs")

    assert result.returncode == 1
    assert "cannot reach the API" in result.stderr and "Traceback" not in result.stderr


def test_predict_jobs_metrics_and_a_schedule_round_trip(api_url: str) -> None:
    run_cli(api_url, "train", "--wait")  # a champion to predict with

    # The API deploys serving by itself once a champion exists; predict waits for it.
    predicted = run_cli(api_url, "predict", "5.1", "3.5", "1.4", "0.2")
    assert predicted.returncode == 0, predicted.stderr
    negative = run_cli(api_url, "predict", "-0.5", "3.5", "1.4", "0.2")  # a value, not an option
    listed = run_cli(api_url, "jobs", "--limit", "3")
    with_phases = run_cli(api_url, "jobs", "--limit", "1", "--phases")
    metrics = run_cli(api_url, "metrics")
    added = run_cli(api_url, "schedule", "120", "-p", "n_estimators=10")
    schedule_id = added.stdout.split(":")[0]
    nightly = run_cli(api_url, "watch", "--cron", "0 2 * * 1-5", "-z", "Europe/Paris")
    nightly_id = nightly.stdout.split(":")[0]
    neither = run_cli(api_url, "watch")
    shown = run_cli(api_url, "schedules")
    removed = run_cli(api_url, "unschedule", schedule_id)
    run_cli(api_url, "unschedule", nightly_id)
    as_json = run_cli(api_url, "--json", "jobs", "--limit", "1")
    models = run_cli(api_url, "models")
    versions = run_cli(api_url, "versions", "--model", "iris")
    unknown = run_cli(api_url, "versions", "--model", "no-such-model")

    assert predicted.returncode == 0 and predicted.stdout.startswith("Setosa (")
    assert negative.returncode == 0, negative.stderr
    assert listed.returncode == 0 and "succeeded" in listed.stdout
    phases_shown = with_phases.stdout.splitlines()[1]
    assert phases_shown.startswith("  queued ") and " · job start " in phases_shown
    assert " · fit " in phases_shown and "(total " in phases_shown
    assert metrics.returncode == 0 and "iris: latest version" in metrics.stdout
    assert models.returncode == 0 and "iris " in models.stdout and "(default)" in models.stdout
    assert versions.returncode == 0 and "champion" in versions.stdout
    assert unknown.returncode == 1 and "error: 404" in unknown.stderr and "iris" in unknown.stderr
    assert added.returncode == 0 and schedule_id.startswith("training-")
    assert schedule_id in shown.stdout and "every 120 min" in shown.stdout
    assert nightly.returncode == 0, nightly.stderr
    assert "watching at '0 2 * * 1-5' Europe/Paris" in nightly.stdout
    assert f"{nightly_id}  watch     at '0 2 * * 1-5' Europe/Paris  next 20" in shown.stdout
    assert neither.returncode == 2 and "MINUTES or --cron" in neither.stderr
    assert removed.returncode == 0 and schedule_id not in run_cli(api_url, "schedules").stdout
    assert as_json.stdout.lstrip().startswith("[")


def test_predict_asks_again_while_the_api_starts_serving(
    start_api, api: httpx.Client, settings: PlatformSettings
) -> None:
    """Right after a first training the API may still be starting serving: it answers
    503 with Retry-After, and `mlops predict` asks again until serving answers. Here
    the API reaches the session's Serve through a relay that lets it through 3 s late."""
    serve_a_champion(api)
    relay = Relay(urlsplit(settings.serve_url).port or 8000, up=False)
    relay.start()
    try:
        client, _ = start_api(serve_url=f"http://127.0.0.1:{relay.port}", auto_serve=True)
        opening = threading.Timer(3, relay.restore)
        started = time.monotonic()
        opening.start()
        result = run_cli(str(client.base_url), "predict", "5.1", "3.5", "1.4", "0.2")
        opening.join()
    finally:
        relay.stop()

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Setosa")
    assert time.monotonic() - started >= 3
    assert result.stderr.count("being started") == 1  # said once, then asked again quietly
    assert "(asking again)" in result.stderr


def test_predict_fails_at_once_when_a_person_must_start_serving(start_api) -> None:
    client, _ = start_api(serve_url=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()

    result = run_cli(str(client.base_url), "predict", "5.1", "3.5", "1.4", "0.2")

    assert result.returncode == 1
    assert "serve.py" in result.stderr and "asking again" not in result.stderr
    assert time.monotonic() - started < 30  # one request's retries, not the wait


def test_alerts_follow_streams_new_alerts(api_url: str) -> None:
    env = {**os.environ, "MLOPS_API_URL": api_url, "MLOPS_API_TOKEN": API_TOKEN}
    follower = subprocess.Popen(
        [MLOPS, "alerts", "--limit", "1", "--follow"], env=env, stdout=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    output = follower.stdout
    assert output is not None

    def pump() -> None:
        for line in output:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        lines.get(timeout=30)  # the most recent alert, printed first
        watch = run_cli(api_url, "watch", "1")  # a watch alerts within a (test) minute
        schedule_id = watch.stdout.split(":")[0]
        streamed = lines.get(timeout=60)
    finally:
        follower.terminate()
        follower.wait(10)
        run_cli(api_url, "unschedule", schedule_id)

    assert "watch" in streamed


def test_tune_wait_shows_the_trials_live_and_the_best_version(start_api) -> None:
    api, _ = start_api(redis_db=8, model_name=f"cli_{uuid.uuid4().hex[:8]}")

    result = run_cli(
        str(api.base_url), "tune", "-s", "max_depth=randint:2,5", "-s",
        "n_estimators=choice:5,10", "--trials", "2", "--metric", "f1_macro", "--wait",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "succeeded (best of 2 trials): iris version 1" in result.stdout
    assert "trials 0/2" in result.stderr and "trials 2/2, best f1_macro 0." in result.stderr


def test_a_bad_search_space_is_one_line_naming_the_key(api_url: str) -> None:
    result = run_cli(api_url, "tune", "-s", "max_depth=normal:2,5", "--wait")

    assert result.returncode == 1
    assert result.stderr.startswith("error: 422 search_space.max_depth: unsupported distribution")


def test_a_model_from_create_to_archive_as_a_user_types_it(
    api_url: str, settings: PlatformSettings
) -> None:
    name = f"wine-{uuid.uuid4().hex[:6]}"
    dataset = settings.data_dir / f"{name}.csv"
    load_wine(as_frame=True).frame.to_csv(dataset, index=False)

    created = run_cli(
        api_url, "models", "create", name, "--dataset", str(dataset), "--target", "target",
        "--estimator", "extra_trees", "-p", "n_estimators=10",
    )  # fmt: skip
    first = run_cli(api_url, "train", name, "--wait")
    second = run_cli(api_url, "train", name, "-p", "n_estimators=12", "--wait")
    shown = run_cli(api_url, "models", "show", name)
    champion = json.loads(run_cli(api_url, "--json", "models", "show", name).stdout)["champion"]
    other = "1" if champion["version"] == "2" else "2"
    promoted = run_cli(api_url, "promote", name, other, "--reason", "the other one")
    rolled_back = run_cli(api_url, "rollback", name, "--reason", "changed my mind")
    changed = run_cli(api_url, "models", "change", name, "--metric", "f1_macro")
    policy = run_cli(api_url, "models", "retraining", name, "--on", "drift", "--canary", "20")
    no_threshold = run_cli(api_url, "models", "retraining", name, "--on", "live")
    policy_off = run_cli(api_url, "models", "retraining", name, "--off")
    history = run_cli(api_url, "history", "--model", name)
    listed = run_cli(api_url, "models")
    archived = run_cli(api_url, "models", "archive", name)
    twice = run_cli(api_url, "train", name, "--model", "iris")

    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == f"created {name}: classification, extra_trees"
    assert first.returncode == 0 and f"succeeded: {name} version 1" in first.stdout, first.stderr
    assert second.returncode == 0 and f"{name} version 2" in second.stdout, second.stderr
    assert shown.stdout.startswith(f"{name}: classification, extra_trees\n")
    assert f"dataset   {dataset} → target" in shown.stdout
    assert "gate      accuracy" in shown.stdout and "\nv2 " in shown.stdout
    assert "retrain   never on its own" in shown.stdout
    assert promoted.returncode == 0 and f"→ {other}" in promoted.stdout, promoted.stderr
    assert rolled_back.returncode == 0 and f"{other} → {champion['version']}" in rolled_back.stdout
    assert changed.returncode == 0 and changed.stdout.strip() == f"changed {name}: gate"
    assert policy.stdout.strip() == (
        f"{name} retrains on drift alerts, at most once in 60 min; "
        "new version in a 20% automatic canary"
    ), policy.stderr
    assert no_threshold.returncode != 0  # the f1_macro gate has no threshold to fall below
    assert "needs a gate threshold" in no_threshold.stderr
    assert policy_off.stdout.strip() == f"{name} retrains never on its own"
    assert "rollback" in history.stdout and "promote" in history.stdout
    assert f"{name} " in listed.stdout and "champion v" in listed.stdout
    assert archived.returncode == 0 and name not in run_cli(api_url, "models").stdout
    assert twice.returncode == 2 and "two models named" in twice.stderr


def test_a_label_sent_back_and_a_rollout_as_a_user_types_them(api_url: str) -> None:
    run_cli(api_url, "train", "-p", "random_state=1", "--wait")
    run_cli(api_url, "train", "-p", "random_state=2", "--wait")  # a second version at least
    predicted = wait_for(
        lambda: (
            (r := run_cli(api_url, "predict", "6.7", "3.0", "5.2", "2.3")).returncode == 0 and r
        ),
        timeout=120,
        what="a champion to answer",
    )
    prediction_id = predicted.stdout.strip().rsplit("prediction ", 1)[1]
    answered_by = predicted.stdout.split("iris version ", 1)[1].split(",")[0]
    versions = json.loads(run_cli(api_url, "--json", "versions").stdout)["versions"]
    other = next(
        v["version"] for v in versions if "champion" not in v["aliases"] and not v["foreign"]
    )

    sent = wait_for(
        lambda: (
            (r := run_cli(api_url, "feedback", prediction_id, "Virginica")).returncode == 0 and r
        ),
        timeout=10,
        what="the prediction recorded",
    )
    again = run_cli(api_url, "feedback", prediction_id, "2")
    wrong = run_cli(api_url, "feedback", prediction_id, "Rose")
    performance = run_cli(api_url, "performance", "--last", "1000")
    started = run_cli(api_url, "rollout", "start", "iris", other, "--mode", "shadow")
    shown = run_cli(api_url, "rollout", "show")
    aborted = run_cli(api_url, "rollout", "abort", "--reason", "seen enough")

    assert sent.stdout.startswith("accepted: iris version")
    assert again.stdout.startswith("replaced: iris version")
    assert wrong.returncode == 1 and "Setosa, Versicolor, Virginica" in wrong.stderr
    assert performance.returncode == 0, performance.stderr
    assert f"version {answered_by}" in performance.stdout  # champion then, or now
    assert "live accuracy" in performance.stdout and "held out 0." in performance.stdout
    assert started.returncode == 0, started.stderr
    assert f"shadow of version {other} at 10%" in started.stdout
    assert "in progress" in shown.stdout
    assert aborted.stdout.strip() == "aborted: by hand: seen enough"
