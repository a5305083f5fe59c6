"""`mlops`: the platform from a terminal, over the API's HTTP interface.

\b
    mlops train --param n_estimators=200 --wait
    mlops tune -s max_depth=randint:2,12 -s n_estimators=choice:50,100 --trials 8 --wait
    mlops predict 5.1 3.5 1.4 0.2
    mlops models create wine --dataset /data/wine.csv --target target --estimator extra_trees
    mlops train wine --wait
    mlops predict --model wine 13 2 2.4 19 100 2.5 2.5 0.3 1.6 5 1 3 800
    mlops models show wine
    mlops feedback 19aef3c2d41… Virginica
    mlops rollout start wine 4 --mode canary --percent 10 --auto
    mlops alerts --follow

The API is MLOPS_API_URL (or --api), by default the local platform's. Writes send
MLOPS_API_TOKEN, or, to an API on this machine, the token `make up` keeps in
MLOPS_DATA_DIR/api-token (unset: the .data folder of the clone you are in, or of the
clone whose .venv runs mlops).
"""

from __future__ import annotations

import click

from mlops.cli import lifecycle, loop, models, operations
from mlops.cli.http import DEFAULT_API, Api, token


@click.group(help=__doc__, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--api", envvar="MLOPS_API_URL", default=DEFAULT_API, show_default=True,
              help="API base URL (MLOPS_API_URL).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answers.")
@click.pass_context
def main(ctx: click.Context, api: str, as_json: bool) -> None:
    needs_token = ctx.invoked_subcommand not in {"up", "down"}  # `make up`'s: none
    ctx.obj = {"api": Api(api, token(api) if needs_token else None), "json": as_json}


for command in (
    operations.train,
    operations.tune,
    operations.jobs,
    operations.predict,
    operations.schedule,
    operations.watch,
    operations.unschedule,
    operations.schedules,
    operations.metrics,
    operations.alerts,
    operations.up,
    operations.down,
    models.models,
    lifecycle.versions,
    lifecycle.promote,
    lifecycle.rollback,
    lifecycle.history,
    lifecycle.drift,
    lifecycle.watch_drift,
    loop.feedback,
    loop.performance,
    loop.rollout,
):
    main.add_command(command)

if __name__ == "__main__":
    main()
