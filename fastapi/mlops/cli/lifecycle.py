"""Models' lifecycles from a terminal: versions, promote, roll back, history, drift."""

from __future__ import annotations

from typing import Any

import click

from mlops.cli.http import (
    MODEL_ARGUMENT,
    MODEL_OPTION,
    Api,
    described,
    emit,
    model_name,
    one_model,
    when_of,
    when_options,
    with_model,
)
from mlops.cli.models import version_line


def _move_line(move: dict[str, Any]) -> str:
    was = f"{move['from_version']} → " if move["from_version"] else ""
    return (
        f"{move['at'][:19]}  {move['action']:<8}  {was}{move['to_version']}  "
        f"by {move['by']}: {move['reason']}"
    )


@click.command()
@MODEL_OPTION
@click.pass_context
def versions(ctx: click.Context, model: str | None) -> None:
    """A model's versions, newest first, and why each was or was not promoted."""
    api: Api = ctx.obj["api"]
    listed = api.call("GET", f"/models/{model_name(api, model)}/versions")
    rows = [version_line(v) for v in listed["versions"]]
    emit(ctx, listed, "\n".join(rows) or "no version registered yet (mlops train --wait)")


@click.command()
@click.argument("model_and_version", nargs=-1, required=True, metavar="[MODEL] VERSION")
@click.option("--reason", required=True, help="Why: kept in the history and the alert.")
@MODEL_OPTION
@click.pass_context
def promote(
    ctx: click.Context, model_and_version: tuple[str, ...], reason: str, model: str | None
) -> None:
    """Make VERSION the champion of MODEL (default: the default model); serving follows
    within seconds."""
    if len(model_and_version) > 2:
        raise click.UsageError("give [MODEL] VERSION")
    *named, version = model_and_version
    api: Api = ctx.obj["api"]
    path = f"/models/{model_name(api, one_model(named[0] if named else None, model))}"
    path += f"/versions/{version}/promote"
    move = api.call("POST", path, json={"reason": reason})
    emit(ctx, move, _move_line(move))


@click.command()
@MODEL_ARGUMENT
@click.option("--reason", required=True, help="Why: kept in the history and the alert.")
@MODEL_OPTION
@click.pass_context
def rollback(ctx: click.Context, name: str | None, reason: str, model: str | None) -> None:
    """Give MODEL's champion back to the version its last promotion replaced."""
    api: Api = ctx.obj["api"]
    path = f"/models/{model_name(api, one_model(name, model))}/rollback"
    move = api.call("POST", path, json={"reason": reason})
    emit(ctx, move, _move_line(move))


@click.command()
@click.option("--limit", default=20, show_default=True)
@MODEL_OPTION
@click.pass_context
def history(ctx: click.Context, limit: int, model: str | None) -> None:
    """Every move of the model's champion and step of its retraining, newest first."""
    api: Api = ctx.obj["api"]
    path = f"/models/{model_name(api, model)}/history"
    found = api.call("GET", path, params={"limit": limit})
    lines = [(m["at"], _move_line(m)) for m in found["moves"]]
    lines += [(s["at"], _step_line(s)) for s in found["retraining"]]
    newest = [line for _, line in sorted(lines, reverse=True)[:limit]]
    emit(ctx, found, "\n".join(newest) or "no move yet")


def _step_line(step: dict[str, Any]) -> str:
    return f"{step['at'][:19]}  {'retrain':<8}  {step['step']}: {step['detail']}"


@click.command()
@MODEL_OPTION
@click.pass_context
def drift(ctx: click.Context, model: str | None) -> None:
    """Does the champion's recent traffic still look like its training data?"""
    report = ctx.obj["api"].call("GET", "/drift", params=with_model({}, model))
    lines = [f"{report['verdict']}: {report['detail']}"]
    lines += [
        f"  {f['feature']:<20} PSI {f['psi']:.3f}  KS p {f['ks_pvalue']:.3g}"
        + ("  DRIFT" if f["drifting"] else "")
        for f in report["features"]
    ]
    emit(ctx, report, "\n".join(lines))


@click.command(name="watch-drift")
@when_options
@click.option("--threshold", type=float, help="PSI at which a feature drifts.")
@MODEL_OPTION
@click.pass_context
def watch_drift(
    ctx: click.Context,
    minutes: int | None,
    cron: str | None,
    timezone: str,
    threshold: float | None,
    model: str | None,
) -> None:
    """Check for drift every MINUTES (or at the --cron times), alerting on the features
    that moved."""
    body: dict[str, Any] = with_model(when_of(minutes, cron, timezone), model)
    if threshold is not None:
        body["threshold"] = threshold
    added = ctx.obj["api"].call("POST", "/watch_drift", json=body)
    emit(ctx, added, f"{added['schedule_id']}: checking for drift {described(added)}")
