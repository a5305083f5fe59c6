"""The platform's everyday commands: training, jobs, predictions, schedules, alerts."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx

from mlops.cli.http import Api, ApiError, emit, number, params_of
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
              help="A RandomForestClassifier hyperparameter; repeat for more.")  # fmt: skip
@_options(_DATASET, _WAIT)
@click.pass_context
def train(
    ctx: click.Context,
    params: tuple[str, ...],
    dataset: str | None,
    target: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Start a training job on Ray."""
    body = {"hyperparameters": params_of(params), **_dataset(dataset, target)}
    accepted = ctx.obj["api"].call("POST", "/trigger_training", json=body)
    _started(ctx, accepted, wait, timeout)


@click.command()
@click.option("--space", "-s", "space", multiple=True, required=True, metavar="KEY=KIND:VALUES",
              help="One searched hyperparameter, e.g. max_depth=randint:2,12 or "
                   "n_estimators=choice:50,100,200 (kinds: choice, randint, uniform, "
                   "loguniform); repeat for more.")  # fmt: skip
@click.option("--trials", default=8, show_default=True, help="Configurations to try.")
@click.option("--metric", type=click.Choice(["accuracy", "f1_macro"]), default="accuracy",
              show_default=True, help="What the best trial maximises.")  # fmt: skip
@click.option("--max-concurrent", type=int, help="Trials at once (default: the cluster's CPUs).")
@_options(_DATASET, _WAIT)
@click.pass_context
def tune(
    ctx: click.Context,
    space: tuple[str, ...],
    trials: int,
    metric: str,
    max_concurrent: int | None,
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
    accepted = ctx.obj["api"].call("POST", "/tune", json=body)
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
        time.sleep(0.5)


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
        f"{job['job_id']} succeeded{searched}: version {job['model_version']}, "
        f"accuracy {job['accuracy']:.4f}, macro F1 {job['f1_macro']:.4f}{promoted}"
    )


@click.command()
@click.option("--limit", default=20, show_default=True)
@click.pass_context
def jobs(ctx: click.Context, limit: int) -> None:
    """Recent training jobs, newest first."""
    listed = ctx.obj["api"].call("GET", "/jobs", params={"limit": limit})["jobs"]
    rows = [
        f"{j['job_id']}  {j['status']:<9}  {j['created_at'][:19]}  "
        f"{'v' + j['model_version'] if j.get('model_version') else '-':<5}  "
        f"{number(j.get('accuracy'))}"
        for j in listed
    ]
    emit(ctx, listed, "\n".join(rows) or "no jobs yet")


@click.command()
@click.argument("features", nargs=-1, type=float, required=True)
@click.option("--version", "model_version", help="A registered version instead of the champion.")
@click.pass_context
def predict(ctx: click.Context, features: tuple[float, ...], model_version: str | None) -> None:
    """Predict one row: the feature values in the model's column order."""
    body: dict[str, Any] = {"input_data": list(features)}
    if model_version:
        body["model_version"] = model_version
    answer = ctx.obj["api"].call("POST", "/inference", json=body)
    chance = answer["probabilities"][answer["label"]]
    emit(ctx, answer, f"{answer['label']} ({chance:.1%}), version {answer['model_version']}")


@click.command()
@click.argument("minutes", type=int)
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE")
@click.pass_context
def schedule(ctx: click.Context, minutes: int, params: tuple[str, ...]) -> None:
    """Train every MINUTES minutes."""
    body = {"minutes": minutes, "hyperparameters": params_of(params)}
    added = ctx.obj["api"].call("POST", "/schedule_training", json=body)
    emit(ctx, added, f"{added['schedule_id']}: training every {minutes} min")


@click.command()
@click.argument("minutes", type=int)
@click.pass_context
def watch(ctx: click.Context, minutes: int) -> None:
    """Alert when no new model has been registered for MINUTES minutes."""
    added = ctx.obj["api"].call("POST", "/watch_model", json={"minutes": minutes})
    emit(ctx, added, f"{added['schedule_id']}: watching for a model older than {minutes} min")


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
        f"{s['schedule_id']}  {s['kind']:<8}  every {s['minutes']} min  "
        f"next {(s['next_run_time'] or '-')[:19]}  runs {s['runs']}"
        for s in listed
    ]
    emit(ctx, listed, "\n".join(rows) or "no schedules")


@click.command()
@click.pass_context
def metrics(ctx: click.Context) -> None:
    """The latest model and the last 7 days' accuracy."""
    data = ctx.obj["api"].call("GET", "/get_metrics")
    latest = data["latest_model"]
    if latest is None:
        emit(ctx, data, "no model registered yet (mlops train --wait)")
        return
    days = "  ".join(f"{day} {acc:.4f}" for day, acc in data["avg_accuracy_last_7_days"].items())
    human = (
        f"latest version {latest['version']}, accuracy {number(latest['accuracy'])}"
        f"{' (champion)' if latest['is_champion'] else ''}\n"
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
