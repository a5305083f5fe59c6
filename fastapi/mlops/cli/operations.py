"""The platform's everyday commands: training, jobs, predictions, schedules, alerts."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx

from mlops.cli.http import (
    MODEL_ARGUMENT,
    MODEL_OPTION,
    Api,
    ApiError,
    described,
    emit,
    number,
    one_model,
    params_of,
    scores_line,
    when_of,
    when_options,
    with_model,
)
from mlops.schemas import JobStatus

_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


_DATASET = [
    click.option("--dataset", help="CSV or Parquet to train on: an absolute path or s3:// URI."),
    click.option("--target", help="Its label column."),
]
_WAIT = [
    click.option(
        "--wait", is_flag=True, help="Follow the job until it ends; exit 1 unless it succeeds."
    ),
    click.option("--timeout", default=900, show_default=True, help="Seconds --wait waits at most."),
]


def _options(*groups: list) -> Any:
    def decorate(command: Any) -> Any:
        for option in reversed([o for group in groups for o in group]):
            command = option(command)
        return command

    return decorate


def _dataset(dataset: str | None, target: str | None) -> dict[str, str]:
    given = {"dataset_uri": dataset, "target_column": target}
    return {key: value for key, value in given.items() if value is not None}


@click.command()
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
              help="A hyperparameter of the model's estimator; repeat for more.")  # fmt: skip
@MODEL_ARGUMENT
@MODEL_OPTION
@_options(_DATASET, _WAIT)
@click.pass_context
def train(
    ctx: click.Context,
    params: tuple[str, ...],
    name: str | None,
    model: str | None,
    dataset: str | None,
    target: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Start a training job of MODEL (default: the default model) on Ray."""
    body = {"hyperparameters": params_of(params), **_dataset(dataset, target)}
    body = with_model(body, one_model(name, model))
    accepted = ctx.obj["api"].call("POST", "/trigger_training", json=body)
    _started(ctx, accepted, wait, timeout)


@click.command()
@click.option("--space", "-s", "space", multiple=True, required=True, metavar="KEY=KIND:VALUES",
              help="One searched hyperparameter, e.g. max_depth=randint:2,12 or "
                   "n_estimators=choice:50,100,200 (kinds: choice, randint, uniform, "
                   "loguniform); repeat for more.")  # fmt: skip
@click.option("--trials", default=8, show_default=True, help="Configurations to try.")
@click.option("--metric", type=click.Choice(["accuracy", "f1_macro", "rmse", "mae", "r2"]),
              help="What picks the best trial (default: the model's gate metric).")  # fmt: skip
@click.option("--max-concurrent", type=int, help="Trials at once (default: the cluster's CPUs).")
@MODEL_OPTION
@_options(_DATASET, _WAIT)
@click.pass_context
def tune(
    ctx: click.Context,
    space: tuple[str, ...],
    trials: int,
    metric: str | None,
    max_concurrent: int | None,
    model: str | None,
    dataset: str | None,
    target: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Search hyperparameters with Ray Tune; the best trial is registered."""
    body = {
        "search_space": space_of(space),
        "trials": trials,
        "metric": metric,
        "max_concurrent_trials": max_concurrent,
        **_dataset(dataset, target),
    }
    accepted = ctx.obj["api"].call("POST", "/tune", json=with_model(body, model))
    _started(ctx, accepted, wait, timeout)


def space_of(entries: tuple[str, ...]) -> dict[str, dict[str, list[Any]]]:
    """KEY=KIND:V1,V2 entries as a search space; each value read as JSON when it is."""
    space: dict[str, dict[str, list[Any]]] = {}
    for entry in entries:
        key, sep, rest = entry.partition("=")
        kind, colon, values = rest.partition(":")
        if not (sep and colon and key and kind and values):
            raise click.BadParameter(f"{entry!r} is not KEY=KIND:VALUES", param_hint="--space")
        space[key] = {kind: [params_of((f"v={v}",))["v"] for v in values.split(",")]}
    return space


def _started(ctx: click.Context, accepted: dict[str, Any], wait: bool, timeout: float) -> None:
    job_id = accepted["job_id"]
    if not wait:
        emit(ctx, accepted, f"started {job_id} (mlops jobs, or --wait to follow it)")
        return
    job = _follow(ctx.obj["api"], job_id, timeout)
    if ctx.obj["json"]:
        click.echo(json.dumps(job, indent=2))
    else:
        click.echo(_outcome(job))
    if job["status"] != JobStatus.SUCCEEDED:
        ctx.exit(1)


def _follow(api: Api, job_id: str, timeout: float) -> dict[str, Any]:
    """Poll the job, showing its status live (a spinner on a terminal, a line per change
    otherwise), until it ends."""
    live = sys.stderr.isatty()
    started = time.monotonic()
    last_status = None
    tick = 0
    while True:
        job = api.call("GET", f"/jobs/{job_id}")
        elapsed = time.monotonic() - started
        state = f"{job['status']}{_progress(job)}"
        if live:
            spinner = _SPINNER[tick % len(_SPINNER)]
            click.echo(f"\r{spinner} {job_id} {state:<40} {elapsed:5.1f}s", nl=False, err=True)
        elif state != last_status:
            click.echo(f"{job_id} {state} ({elapsed:.1f}s)", err=True)
        last_status, tick = state, tick + 1
        if JobStatus(job["status"]).is_terminal:
            if live:
                click.echo(err=True)
            return job
        if elapsed > timeout:
            raise ApiError(f"{job_id} still {job['status']} after {timeout:g}s")
        time.sleep(poll_pause(elapsed))


def poll_pause(elapsed: float) -> float:
    """Seconds until the next look at a job followed for `elapsed` seconds: a tenth
    while a training is likely to end (each look is a millisecond of the API's), then
    half a second."""
    return 0.1 if elapsed < 10 else 0.5


def _progress(job: dict[str, Any]) -> str:
    """A search's trials so far and its best score, for the live status line."""
    if job.get("kind") != "tune" or not job.get("trials_total"):
        return ""
    done = f", trials {job.get('trials_finished') or 0}/{job['trials_total']}"
    failed = f" ({job['trials_failed']} failed)" if job.get("trials_failed") else ""
    best = f", best {job['metric']} {number(job['best_score'])}" if job.get("best_score") else ""
    return done + failed + best


def _outcome(job: dict[str, Any]) -> str:
    if job["status"] != JobStatus.SUCCEEDED:
        return f"{job['job_id']} {job['status']}: {job.get('error') or 'no reason given'}"
    promoted = " and is now the champion" if job.get("promoted") else " (not promoted)"
    searched = f" (best of {job['trials_finished']} trials)" if job.get("kind") == "tune" else ""
    return (
        f"{job['job_id']} succeeded{searched}: {job.get('model') or 'model'} version "
        f"{job['model_version']}, {scores_line(job.get('scores'))}{promoted}"
    )


@click.command()
@click.option("--limit", default=20, show_default=True)
@click.option("--model", "-m", help="Only this model's jobs (default: every model's).")
@click.option("--phases", is_flag=True, help="Where each job's time went, phase by phase.")
@click.pass_context
def jobs(ctx: click.Context, limit: int, model: str | None, phases: bool) -> None:
    """Recent training jobs, newest first."""
    params = with_model({"limit": limit}, model)
    listed = ctx.obj["api"].call("GET", "/jobs", params=params)["jobs"]
    rows = []
    for j in listed:
        rows.append(
            f"{j['job_id']}  {j['status']:<9}  {j['created_at'][:19]}  "
            f"{j.get('model') or '-':<12}  "
            f"{'v' + j['model_version'] if j.get('model_version') else '-':<5}  "
            f"{scores_line(j.get('scores'))}"
        )
        if phases:
            rows.append(f"  {phases_line(j.get('phases') or {})}")
    emit(ctx, listed, "\n".join(rows) or "no jobs yet")


def phases_line(phases: dict[str, float]) -> str:
    """A job's phases in seconds, in order, with their total."""
    if not phases:
        return "no phases recorded"
    parts = [f"{name.replace('_', ' ')} {seconds:.2f}" for name, seconds in phases.items()]
    return f"{' · '.join(parts)}  (total {sum(phases.values()):.2f} s)"


# Unknown options are taken as arguments, so a negative feature value is a value.
@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("features", nargs=-1, type=float, required=True)
@click.option("--version", "model_version", help="A registered version instead of the champion.")
@click.option(
    "--ready-within",
    default=60.0,
    show_default=True,
    help="Seconds to wait for serving that the API is starting (a first champion's); 0: none.",
)
@MODEL_OPTION
@click.pass_context
def predict(
    ctx: click.Context,
    features: tuple[float, ...],
    model_version: str | None,
    ready_within: float,
    model: str | None,
) -> None:
    """Predict one row: the feature values in the model's column order."""
    body: dict[str, Any] = {"input_data": list(features)}
    if model_version:
        body["model_version"] = model_version
    answer = ctx.obj["api"].call(
        "POST", "/inference", json=with_model(body, model), ready_within=ready_within
    )
    served = f"{answer['model']} version {answer['model_version']}"
    if answer.get("prediction_id"):
        served += f", prediction {answer['prediction_id']}"
    if answer.get("label") is None:  # a regressor: the value
        emit(ctx, answer, f"{answer['prediction']:.4g}, {served}")
        return
    chance = answer["probabilities"][answer["label"]]
    emit(ctx, answer, f"{answer['label']} ({chance:.1%}), {served}")


@click.command()
@when_options
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE")
@MODEL_OPTION
@click.pass_context
def schedule(
    ctx: click.Context,
    minutes: int | None,
    cron: str | None,
    timezone: str,
    params: tuple[str, ...],
    model: str | None,
) -> None:
    """Train every MINUTES minutes, or at the --cron times."""
    body = {**when_of(minutes, cron, timezone), "hyperparameters": params_of(params)}
    added = ctx.obj["api"].call("POST", "/schedule_training", json=with_model(body, model))
    emit(ctx, added, f"{added['schedule_id']}: training {described(added)}")


@click.command()
@when_options
@MODEL_OPTION
@click.pass_context
def watch(
    ctx: click.Context, minutes: int | None, cron: str | None, timezone: str, model: str | None
) -> None:
    """Alert when no new version was registered since the previous check (every MINUTES
    minutes, or at the --cron times)."""
    body = with_model(when_of(minutes, cron, timezone), model)
    added = ctx.obj["api"].call("POST", "/watch_model", json=body)
    emit(ctx, added, f"{added['schedule_id']}: watching {described(added)}")


@click.command()
@click.argument("schedule_id")
@click.pass_context
def unschedule(ctx: click.Context, schedule_id: str) -> None:
    """Remove a schedule or a watch."""
    removed = ctx.obj["api"].call("DELETE", f"/kill_scheduled_job/{schedule_id}")
    emit(ctx, removed, f"removed {schedule_id}")


@click.command()
@click.pass_context
def schedules(ctx: click.Context) -> None:
    """Schedules and watches, with their next run."""
    listed = ctx.obj["api"].call("GET", "/scheduled_jobs")["schedules"]
    rows = [
        f"{s['schedule_id']}  {s['kind']:<8}  {described(s)}  "
        f"next {(s['next_run_time'] or '-')[:19]}  runs {s['runs']}"
        for s in listed
    ]
    emit(ctx, listed, "\n".join(rows) or "no schedules")


@click.command()
@MODEL_OPTION
@click.pass_context
def metrics(ctx: click.Context, model: str | None) -> None:
    """A model's latest version and the last 7 days' scores on its gate's metric."""
    data = ctx.obj["api"].call("GET", "/get_metrics", params=with_model({}, model))
    latest = data["latest_model"]
    if latest is None:
        emit(ctx, data, f"no version of {data['model']} registered yet (mlops train --wait)")
        return
    days = "  ".join(f"{day} {score:.4g}" for day, score in data["daily_average"].items())
    human = (
        f"{data['model']}: latest version {latest['version']}, {data['metric']} "
        f"{number(latest['score'])}{' (champion)' if latest['is_champion'] else ''}\n"
        f"champion version {data['champion_version'] or '-'}, "
        f"7-day average {number(data['weekly_average'])}\n{days}"
    )
    emit(ctx, data, human)


def _alert_line(alert: dict[str, Any]) -> str:
    return f"{alert['created_at'][:19]}  {alert['level']:<7}  {alert['kind']:<8}  {alert['text']}"


@click.command()
@click.option("--limit", default=20, show_default=True, help="How many recent alerts.")
@click.option("--follow", "-f", is_flag=True, help="Then stream new ones (Ctrl-C stops).")
@click.pass_context
def alerts(ctx: click.Context, limit: int, follow: bool) -> None:
    """Recent alerts; with --follow, the live feed too (reconnecting as a browser does)."""
    api: Api = ctx.obj["api"]
    recent = api.call("GET", "/alerts", params={"limit": limit})["alerts"]
    for alert in reversed(recent):
        click.echo(json.dumps(alert) if ctx.obj["json"] else _alert_line(alert))
    if not follow:
        return
    last_id = recent[0]["id"] if recent else None
    try:
        while True:
            try:
                for event in api.events(last_id):
                    last_id = event.id or last_id
                    if event.event == "message":  # an alert ("ready" opens the stream)
                        alert = event.json()
                        click.echo(json.dumps(alert) if ctx.obj["json"] else _alert_line(alert))
            except (httpx.HTTPError, ApiError) as exc:
                click.secho(f"feed interrupted ({exc}); reconnecting", err=True, fg="yellow")
            time.sleep(2)
    except KeyboardInterrupt:
        pass


@click.command()
@click.option("--outputs", type=click.Path(path_type=Path), default=Path("outputs"))
def up(outputs: Path) -> None:
    """Start the local platform in this terminal (Ctrl-C stops it)."""
    from mlops.local.__main__ import main as local

    sys.exit(local(["up", "--outputs", str(outputs)]))


@click.command()
def down() -> None:
    """Stop a local platform started in another terminal."""
    from mlops.local.__main__ import main as local

    sys.exit(local(["down"]))
