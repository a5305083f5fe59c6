"""The closed loop from a terminal: labels sent back, live metrics, rollouts."""

from __future__ import annotations

from typing import Any

import click

from mlops.cli.http import MODEL_ARGUMENT, MODEL_OPTION, Api, emit, model_name, one_model


def _label(text: str) -> int | float | str:
    """A number is sent as one (a class index, or a regression's value); else a class."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@click.command()
@click.argument("prediction_id")
@click.argument("label")
@click.pass_context
def feedback(ctx: click.Context, prediction_id: str, label: str) -> None:
    """Send the true LABEL of a prediction (its id is in `mlops predict`'s answer)."""
    body = {"prediction_id": prediction_id, "label": _label(label)}
    answer = ctx.obj["api"].call("POST", "/feedback", json=body)
    item = answer["items"][0]
    emit(ctx, answer, f"{item['outcome']}: {item['model']} version {item['model_version']}")


def _estimate(live: dict[str, Any], metric: str) -> str:
    found = live.get(metric) or {}
    if found.get("value") is None:
        return f"{metric} –"
    return f"{metric} {found['value']:.4g} [{found['low']:.4g}, {found['high']:.4g}]"


@click.command()
@click.option("--window", type=click.Choice(["hour", "day", "week"]), default="hour")
@click.option("--last", type=int, help="The newest N labels instead of a window.")
@MODEL_OPTION
@click.pass_context
def performance(ctx: click.Context, window: str, last: int | None, model: str | None) -> None:
    """Each version's live metric on the labels sent back, beside its held-out score."""
    api: Api = ctx.obj["api"]
    params: dict[str, Any] = {"last": last} if last else {"window": window}
    report = api.call("GET", f"/models/{model_name(api, model)}/performance", params=params)
    metric = report["metric"]
    lines = [
        f"version {v['version']}{' (champion)' if v['is_champion'] else ''}: "
        f"{v['labels']} labels, live {_estimate(v['live'], metric)}, held out "
        + ("–" if v["offline"] is None else f"{v['offline']:.4g}")
        for v in report["versions"]
    ]
    emit(ctx, report, "\n".join(lines) or "no labels yet (mlops feedback)")


@click.group()
def rollout() -> None:
    """A version beside the champion: start, show, abort."""


@rollout.command(name="start")
@click.argument("model_and_version", nargs=-1, required=True, metavar="[MODEL] VERSION")
@click.option("--mode", type=click.Choice(["canary", "shadow"]), default="canary")
@click.option("--percent", type=int, default=10, show_default=True)
@click.option("--auto", is_flag=True, help="Let the sequential test promote or abort.")
@click.option("--max-hours", type=float, default=24, show_default=True)
@click.option("--min-labels", type=int, default=100, show_default=True)
@MODEL_OPTION
@click.pass_context
def start(
    ctx: click.Context,
    model_and_version: tuple[str, ...],
    model: str | None,
    **spec: Any,
) -> None:
    """Put VERSION beside MODEL's champion (default: the default model)."""
    if len(model_and_version) > 2:
        raise click.UsageError("give [MODEL] VERSION")
    *named, version = model_and_version
    api: Api = ctx.obj["api"]
    name = model_name(api, one_model(named[0] if named else None, model))
    started = api.call("POST", f"/models/{name}/rollouts", json={"version": version, **spec})
    emit(
        ctx,
        started,
        f"{name}: {started['mode']} of version {version} at {started['percent']}% beside "
        f"version {started['champion_version']}",
    )


@rollout.command(name="show")
@MODEL_ARGUMENT
@MODEL_OPTION
@click.pass_context
def show(ctx: click.Context, name: str | None, model: str | None) -> None:
    """The rollout in progress, or the last one: each side's labels, the test."""
    api: Api = ctx.obj["api"]
    report = api.call("GET", f"/models/{model_name(api, one_model(name, model))}/rollouts")
    emit(ctx, report, _report_line(report))


def _report_line(report: dict[str, Any]) -> str:
    rollout = report["rollout"]
    if rollout is None:
        return f"{report['model']}: no rollout yet"
    state = "in progress" if report["active"] else f"{report['ended']['outcome']}"
    line = (
        f"{report['model']}: {rollout['mode']} of version {rollout['version']} at "
        f"{rollout['percent']}% beside version {rollout['champion_version']}, {state}; "
        f"labels {report['challenger']['labels']} / {report['champion']['labels']}"
    )
    if (d := report["difference"]) is not None:
        line += f"; difference {d['value']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"
    if report["decision"]:
        line += f"; the test says {report['decision']}"
    if report["ended"]:
        line += f"\n{report['ended']['reason']}"
    return line


@rollout.command(name="abort")
@MODEL_ARGUMENT
@click.option("--reason", default="aborted", show_default=True)
@MODEL_OPTION
@click.pass_context
def abort(ctx: click.Context, name: str | None, reason: str, model: str | None) -> None:
    """End the rollout: the champion answers every request again."""
    api: Api = ctx.obj["api"]
    path = f"/models/{model_name(api, one_model(name, model))}/rollouts"
    ended = api.call("DELETE", path, params={"reason": reason})
    emit(ctx, ended, f"{ended['outcome']}: {ended['reason']}")
