"""What every `mlops` command shares: the API over HTTP, errors on one line, output."""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx

from mlops import sse
from mlops.retry import backoff_blocking
from mlops.settings.base import API_TOKEN_FILE

DEFAULT_API = "http://127.0.0.1:8888"
_NO_TOKEN_HINT = (
    "no token was found: set MLOPS_API_TOKEN, or MLOPS_DATA_DIR to the platform's data "
    "folder (`make up` keeps the token in its clone's .data/api-token)"
)


class ApiError(click.ClickException):
    """One line on stderr, exit code 1: what the API (or the network) said."""

    def show(self, file: Any = None) -> None:
        click.secho(f"error: {self.message}", err=True, fg="red")


def describe(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text.strip()[:200]
    if isinstance(detail, list):  # validation errors: field path and message each
        detail = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail
        )
    return f"{response.status_code} {detail or response.reason_phrase}"


class _AskAgain(Exception):
    """The API answered that asking again soon may succeed."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(describe(response))
        self.response = response


class Api:
    def __init__(self, url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.has_token = bool(token)
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def call(self, method: str, path: str, *, ready_within: float = 0, **kwargs: Any) -> Any:
        """The API's JSON answer. With `ready_within`, an answer that says to ask again
        (503 with Retry-After: serving being started) is asked again, for up to that
        many seconds, and the wait is said once on stderr."""
        if not ready_within:
            return self._answer(self._send(method, path, **kwargs))
        said = False
        try:
            for attempt in backoff_blocking(on=(_AskAgain,), first=0.5, cap=2, within=ready_within):
                with attempt:
                    response = self._send(method, path, **kwargs)
                    if response.status_code == 503 and "Retry-After" in response.headers:
                        if not said:
                            click.echo(f"{describe(response)} (asking again)", err=True)
                            said = True
                        raise _AskAgain(response)
        except _AskAgain as exc:
            response = exc.response
        return self._answer(response)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(
                f"cannot reach the API at {self.url} ({exc.__class__.__name__}); "
                "is the platform up? (`make up`, or set MLOPS_API_URL)"
            ) from None

    def _answer(self, response: httpx.Response) -> Any:
        if response.is_error:
            raise self._error(response)
        return response.json()

    def _error(self, response: httpx.Response) -> ApiError:
        if response.status_code == 401 and not self.has_token:
            return ApiError(f"{describe(response)}; {_NO_TOKEN_HINT}")
        return ApiError(describe(response))

    def events(self, last_id: str | None) -> Iterator[sse.SseEvent]:
        """The events of /webhook, until the stream ends."""
        headers = {"Last-Event-ID": last_id} if last_id else {}
        timeout = httpx.Timeout(10, read=None)
        with self.http.stream("GET", "/webhook", headers=headers, timeout=timeout) as response:
            if response.is_error:
                response.read()
                raise self._error(response)
            yield from sse.events(response.iter_lines())


def token(api_url: str) -> str | None:
    """MLOPS_API_TOKEN; else, for an API on this machine, the first token file that
    `make up` kept (`_token_files`). The local platform's token never goes elsewhere."""
    if token := os.environ.get("MLOPS_API_TOKEN"):
        return token
    if not _on_this_machine(api_url):
        return None
    for kept in _token_files():
        try:
            if kept.is_file():
                return kept.read_text().strip()
        except PermissionError:
            click.echo(
                f"warning: {kept} is not yours to read (another user's `make up`): writes will"
                " be refused; run mlops as that user, or set MLOPS_API_TOKEN",
                err=True,
            )
            return None
    return None


def _token_files() -> list[Path]:
    """Where `make up` may keep the API token: in MLOPS_DATA_DIR when it is set; else in
    the `.data` folder of this folder or the nearest folder above that has one (a clone,
    from anywhere inside it), then in that of the clone whose `.venv` runs `mlops`."""
    if data_dir := os.environ.get("MLOPS_DATA_DIR"):
        return [Path(data_dir) / API_TOKEN_FILE]
    here = Path.cwd()
    return [folder / ".data" / API_TOKEN_FILE for folder in (here, *here.parents, _venv_owner())]


def _venv_owner() -> Path:
    return Path(sys.prefix).parent


def _on_this_machine(url: str) -> bool:
    host = httpx.URL(url).host
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost
        return False


def params_of(pairs: tuple[str, ...]) -> dict[str, Any]:
    """k=v pairs; each v read as JSON when it is JSON (numbers, true, null), else text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--param")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def emit(ctx: click.Context, data: Any, human: str) -> None:
    click.echo(json.dumps(data, indent=2) if ctx.obj["json"] else human)


MODEL_OPTION = click.option(
    "--model", "-m", help="A model (mlops models); default: the platform's default model."
)


# A model named first, as in `mlops train wine`; --model says the same.
MODEL_ARGUMENT = click.argument("name", metavar="[MODEL]", required=False)


def one_model(name: str | None, model: str | None) -> str | None:
    """The model named by argument or by --model (the same if both)."""
    if name and model and name != model:
        raise click.UsageError(f"two models named: {name} and --model {model}")
    return name or model


def with_model(body: dict[str, Any], model: str | None) -> dict[str, Any]:
    """The request body, naming the model when one was given."""
    return {**body, "model": model} if model else body


def model_name(api: Api, model: str | None) -> str:
    """The model named, or the platform's default one (for routes that name it)."""
    return model or str(api.call("GET", "/models")["default_model"])


def scores_line(scores: dict[str, float] | None) -> str:
    """Held-out scores, e.g. "accuracy 0.9667, f1_macro 0.9666" or "rmse 52.1, r2 0.45"."""
    return ", ".join(f"{name} {value:.4g}" for name, value in (scores or {}).items()) or "-"


def when_options(command):
    """MINUTES, or --cron with --timezone: when a schedule or watch runs."""
    command = click.option(
        "--timezone", "-z", default="UTC", show_default=True, help="IANA zone of --cron."
    )(command)
    command = click.option(
        "--cron", metavar="EXPR", help='Crontab times instead of MINUTES, e.g. "0 2 * * *".'
    )(command)
    return click.argument("minutes", type=int, required=False)(command)


def when_of(minutes: int | None, cron: str | None, timezone: str) -> dict:
    if (minutes is None) == (cron is None):
        raise click.UsageError("give MINUTES or --cron: one of them")
    return {"minutes": minutes} if cron is None else {"cron": cron, "timezone": timezone}


def described(schedule: dict) -> str:
    if schedule.get("cron"):
        return f"at {schedule['cron']!r} {schedule['timezone']}"
    return f"every {schedule['minutes']} min"
