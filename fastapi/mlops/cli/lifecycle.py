"""Models and their lifecycles from a terminal: models, versions, promote, roll back,
history, drift."""

from __future__ import annotations

from typing import Any

import click

from mlops.cli.http import (
    MODEL_OPTION,
    Api,
    described,
    emit,
    model_name,
    scores_line,
    when_of,
    when_options,
    with_model,
)


def _move_line(move: dict[str, Any]) -> str:
    was = f"{move['from_version']} → " if move["from_version"] else ""
    return (
        f"{move['at'][:19]}  {move['action']:<8}  {was}{move['to_version']}  "
        f"by {move['by']}: {move['reason']}"
    )


def _model_line(model: dict[str, Any], default: str) -> str:
    spec, champion = model["spec"], model["champion"]
    best = (
        f"champion v{champion['version']} {champion['metric']} "
        f"{'-' if champion['score'] is None else format(champion['score'], '.4g')}"
        if champion
        else "no champion yet"
    )
    mark = " (default)" if model["name"] == default else ""
    return f"{model['name']:<16} {spec['task']:<14} {spec['estimator']:<24} {best}{mark}"


@click.command()
@click.pass_context
def models(ctx: click.Context) -> None:
    """Every model: its task, estimator and champion."""
    listed = ctx.obj["api"].call("GET", "/models")
    rows = [_model_line(m, listed["default_model"]) for m in listed["models"]]
    emit(ctx, listed, "\n".join(rows))


@click.command()
@MODEL_OPTION
@click.pass_context
def versions(ctx: click.Context, model: str | None) -> None:
    """A model's versions, newest first, and why each was or was not promoted."""
    api: Api = ctx.obj["api"]
    listed = api.call("GET", f"/models/{model_name(api, model)}/versions")
    rows = [
        f"v{v['version']:<4} {','.join(v['aliases']) or '-':<9} {scores_line(v['scores'])}  "
        f"{v['created_at'][:19]}  {v['job_id'] or '-'}  "
        f"{v['promotion'] or '-'}: {v['promotion_reason'] or ''}"
        for v in listed["versions"]
    ]
    emit(ctx, listed, "\n".join(rows) or "no version registered yet (mlops train --wait)")


@click.command()
@click.argument("version")
@click.option("--reason", required=True, help="Why: kept in the history and the alert.")
@MODEL_OPTION
@click.pass_context
def promote(ctx: click.Context, version: str, reason: str, model: str | None) -> None:
    """Make VERSION the model's champion (serving follows within seconds)."""
    api: Api = ctx.obj["api"]
    path = f"/models/{model_name(api, model)}/versions/{version}/promote"
    move = api.call("POST", path, json={"reason": reason})
    emit(ctx, move, _move_line(move))


@click.command()
@click.option("--reason", required=True, help="Why: kept in the history and the alert.")
@MODEL_OPTION
@click.pass_context
def rollback(ctx: click.Context, reason: str, model: str | None) -> None:
    """Give the model's champion back to the version the last promotion replaced."""
    api: Api = ctx.obj["api"]
    move = api.call("POST", f"/models/{model_name(api, model)}/rollback", json={"reason": reason})
    emit(ctx, move, _move_line(move))


@click.command()
@click.option("--limit", default=20, show_default=True)
@MODEL_OPTION
@click.pass_context
def history(ctx: click.Context, limit: int, model: str | None) -> None:
    """Every move of the model's champion, newest first."""
    api: Api = ctx.obj["api"]
    path = f"/models/{model_name(api, model)}/history"
    moves = api.call("GET", path, params={"limit": limit})["moves"]
    emit(ctx, moves, "\n".join(_move_line(m) for m in moves) or "no move yet")


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
