"""`mlops models`: the models of the platform, listed, shown, created, changed and
archived."""

from __future__ import annotations

from typing import Any

import click

from mlops.cli.http import Api, emit, params_of, scores_line
from mlops.contracts.model_definition import ESTIMATORS, METRICS, Task

_TASKS = [task.value for task in Task]
_ESTIMATORS = sorted({estimator.value for choices in ESTIMATORS.values() for estimator in choices})
_METRICS = sorted({metric.value for choices in METRICS.values() for metric in choices})


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


def version_line(version: dict[str, Any]) -> str:
    return (
        f"v{version['version']:<4} {','.join(version['aliases']) or '-':<9} "
        f"{scores_line(version['scores'])}  {version['created_at'][:19]}  "
        f"{version['job_id'] or '-'}  {version['promotion'] or '-'}: "
        f"{version['promotion_reason'] or ''}"
    )


def _definition_options(command):
    """The fields of a definition; each left out keeps its value (or its default)."""
    for option in reversed(
        [
            click.option("--dataset", help="CSV or Parquet: an absolute path or s3:// URI."),
            click.option("--target", help="The column to predict."),
            click.option("--task", type=click.Choice(_TASKS)),
            click.option("--estimator", type=click.Choice(_ESTIMATORS)),
            click.option(
                "--param",
                "-p",
                "params",
                multiple=True,
                metavar="KEY=VALUE",
                help="A default hyperparameter; repeat for more.",
            ),  # fmt: skip
            click.option("--metric", type=click.Choice(_METRICS), help="The gate's metric."),
            click.option("--threshold", type=float, help="The bound the metric must clear."),
            click.option(
                "--tolerance", type=float, help="How much worse than the champion passes."
            ),
        ]
    ):
        command = option(command)
    return command


def _definition(given: dict[str, Any]) -> dict[str, Any]:
    """The request's fields from the options given."""
    fields = {
        "dataset_uri": given["dataset"],
        "target_column": given["target"],
        "task": given["task"],
        "estimator": given["estimator"],
        "hyperparameters": params_of(given["params"]) if given["params"] else None,
    }
    gate = {k: given[k] for k in ("metric", "threshold", "tolerance") if given[k] is not None}
    if gate:
        if "metric" not in gate:
            raise click.UsageError("a gate needs its --metric")
        fields["gate"] = gate
    return {key: value for key, value in fields.items() if value is not None}


@click.group(invoke_without_command=True)
@click.pass_context
def models(ctx: click.Context) -> None:
    """Every model: its task, estimator and champion (and commands on one model)."""
    if ctx.invoked_subcommand is None:
        listed = ctx.obj["api"].call("GET", "/models")
        rows = [_model_line(m, listed["default_model"]) for m in listed["models"]]
        emit(ctx, listed, "\n".join(rows))


@models.command()
@click.argument("name")
@click.pass_context
def show(ctx: click.Context, name: str) -> None:
    """A model's definition, champion and versions."""
    api: Api = ctx.obj["api"]
    model = api.call("GET", f"/models/{name}")
    listed = model["versions"]
    spec, gate = model["spec"], model["spec"]["gate"]
    bound = "" if gate["threshold"] is None else f", threshold {gate['threshold']:g}"
    lines = [
        f"{name}: {spec['task']}, {spec['estimator']}"
        + (" (default model)" if model["is_default"] else ""),
        f"dataset   {spec['dataset_uri']} → {spec['target_column']}",
        f"defaults  {spec['hyperparameters'] or '-'}",
        f"gate      {gate['metric']}{bound}, tolerance {gate['tolerance']:g}",
        f"retrain   {policy_line(spec['retraining'])}",
        *(version_line(v) for v in listed),
    ]
    if not listed:
        lines.append(f"no version yet: mlops train {name} --wait")
    emit(ctx, model, "\n".join(lines))


@models.command()
@click.argument("name")
@_definition_options
@click.pass_context
def create(ctx: click.Context, name: str, **given: Any) -> None:
    """Define a new model NAME (--dataset and --target are needed)."""
    if given["dataset"] is None or given["target"] is None:
        raise click.UsageError("a new model needs --dataset and --target")
    created = ctx.obj["api"].call("POST", "/models", json={"name": name, **_definition(given)})
    spec = created["spec"]
    emit(ctx, created, f"created {name}: {spec['task']}, {spec['estimator']}")


@models.command()
@click.argument("name")
@_definition_options
@click.pass_context
def change(ctx: click.Context, name: str, **given: Any) -> None:
    """Change fields of model NAME's definition (kept in its history)."""
    fields = _definition(given)
    if not fields:
        raise click.UsageError("nothing to change: give at least one option")
    changed = ctx.obj["api"].call("PATCH", f"/models/{name}", json=fields)
    emit(ctx, changed, f"changed {name}: {', '.join(fields)}")


@models.command()
@click.argument("name")
@click.pass_context
def archive(ctx: click.Context, name: str) -> None:
    """Take model NAME out of use (its versions stay in MLflow)."""
    archived = ctx.obj["api"].call("DELETE", f"/models/{name}")
    emit(ctx, archived, f"archived {name}")


def policy_line(policy: dict[str, Any]) -> str:
    """A retraining policy in words."""
    on = [w for w, k in (("drift", "on_drift"), ("live", "on_live_below_gate")) if policy[k]]
    if not on:
        return "never on its own"
    canary = policy["canary"]
    then = (
        f"new version in a {canary['percent']}% automatic canary" if canary else "the gate promotes"
    )
    cooldown = f"at most once in {policy['cooldown_minutes']:g} min"
    return f"on {' or '.join(on)} alerts, {cooldown}; {then}"


@models.command()
@click.argument("name")
@click.option(
    "--on",
    "triggers",
    multiple=True,
    type=click.Choice(["drift", "live"]),
    help="Retrain on a drift alert, or on live performance short of the gate; repeat for both.",
)
@click.option("--off", is_flag=True, help="Retrain on nothing.")
@click.option("--cooldown", type=float, help="Minutes at least between two retrainings.")
@click.option(
    "--canary",
    type=click.IntRange(1, 100),
    help="Put each new version in an automatic canary at this percent (else the gate promotes).",
)
@click.option("--no-canary", is_flag=True, help="Let the gate promote new versions.")
@click.pass_context
def retraining(
    ctx: click.Context,
    name: str,
    triggers: tuple[str, ...],
    off: bool,
    cooldown: float | None,
    canary: int | None,
    no_canary: bool,
) -> None:
    """Model NAME's retraining policy: shown, or changed by the options given."""
    api: Api = ctx.obj["api"]
    policy = dict(api.call("GET", f"/models/{name}")["spec"]["retraining"])
    if off or triggers:
        policy["on_drift"], policy["on_live_below_gate"] = "drift" in triggers, "live" in triggers
    if cooldown is not None:
        policy["cooldown_minutes"] = cooldown
    if canary is not None:
        policy["canary"] = {**(policy["canary"] or {}), "percent": canary}
    if no_canary:
        policy["canary"] = None
    if (off or triggers or no_canary) or cooldown is not None or canary is not None:
        changed = api.call("PATCH", f"/models/{name}", json={"retraining": policy})
        policy = changed["spec"]["retraining"]
    emit(ctx, policy, f"{name} retrains {policy_line(policy)}")
