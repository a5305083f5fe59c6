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
