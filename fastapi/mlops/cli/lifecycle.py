"""The model's lifecycle from a terminal: versions, promote, roll back, history, drift."""

from __future__ import annotations

from typing import Any

import click

from mlops.cli.http import Api, emit, number


def _move_line(move: dict[str, Any]) -> str:
    was = f"{move['from_version']} → " if move["from_version"] else ""
    return (
        f"{move['at'][:19]}  {move['action']:<8}  {was}{move['to_version']}  "
        f"by {move['by']}: {move['reason']}"
    )


@click.command()
@click.pass_context
def models(ctx: click.Context) -> None:
    """Every version, newest first, and why each was or was not promoted."""
    listed = ctx.obj["api"].call("GET", "/models")
    rows = [
        f"v{v['version']:<4} {','.join(v['aliases']) or '-':<9} acc {number(v['accuracy'])}  "
        f"F1 {number(v['f1_macro'])}  {v['created_at'][:19]}  {v['job_id'] or '-'}  "
        f"{v['promotion'] or '-'}: {v['promotion_reason'] or ''}"
        for v in listed["versions"]
    ]
    emit(ctx, listed, "\n".join(rows) or "no model registered yet (mlops train --wait)")


@click.command()
@click.argument("version")
@click.option("--reason", required=True, help="Why: kept in the history and the alert.")
@click.pass_context
def promote(ctx: click.Context, version: str, reason: str) -> None:
    """Make VERSION the champion (serving follows within seconds)."""
    api: Api = ctx.obj["api"]
    move = api.call("POST", f"/models/{version}/promote", json={"reason": reason})
    emit(ctx, move, _move_line(move))


@click.command()
@click.option("--reason", required=True, help="Why: kept in the history and the alert.")
@click.pass_context
def rollback(ctx: click.Context, reason: str) -> None:
    """Give the champion back to the version the last promotion replaced."""
    move = ctx.obj["api"].call("POST", "/models/rollback", json={"reason": reason})
    emit(ctx, move, _move_line(move))


@click.command()
@click.option("--limit", default=20, show_default=True)
@click.pass_context
def history(ctx: click.Context, limit: int) -> None:
    """Every move of the champion, newest first."""
    moves = ctx.obj["api"].call("GET", "/models/history", params={"limit": limit})["moves"]
    emit(ctx, moves, "\n".join(_move_line(m) for m in moves) or "no move yet")


@click.command()
@click.pass_context
def drift(ctx: click.Context) -> None:
    """Does the champion's recent traffic still look like its training data?"""
    report = ctx.obj["api"].call("GET", "/drift")
    lines = [f"{report['verdict']}: {report['detail']}"]
    lines += [
        f"  {f['feature']:<20} PSI {f['psi']:.3f}  KS p {f['ks_pvalue']:.3g}"
        + ("  DRIFT" if f["drifting"] else "")
        for f in report["features"]
    ]
    emit(ctx, report, "\n".join(lines))


@click.command(name="watch-drift")
@click.argument("minutes", type=int)
@click.option("--threshold", type=float, help="PSI at which a feature drifts.")
@click.pass_context
def watch_drift(ctx: click.Context, minutes: int, threshold: float | None) -> None:
    """Check for drift every MINUTES, alerting on the features that moved."""
    body: dict[str, Any] = {"minutes": minutes}
    if threshold is not None:
        body["threshold"] = threshold
    added = ctx.obj["api"].call("POST", "/watch_drift", json=body)
    emit(ctx, added, f"{added['schedule_id']}: checking for drift every {minutes} min")
