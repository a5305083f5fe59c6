"""Read-only access to the MLflow tracking server's REST API for the web layer.

The API only reads the registry and runs, so it speaks REST with a pooled async client
and short timeouts instead of the blocking, long-retrying MlflowClient. Training (in a
Ray job) uses the mlflow library, which it needs to log models.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from mlops.retry import backoff


class MlflowUnavailable(Exception):
    """The tracking server could not be reached or answered with an error."""


class _MlflowBusy(MlflowUnavailable):
    """Unreachable or a 5xx: worth another try."""


class _MlflowRefused(MlflowUnavailable):
    """401 or 403: the Host check, the sign-in, or a model that does not exist (below)."""


@dataclass(frozen=True)
class ModelVersion:
    version: str
    run_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class TaggedVersion:
    version: str
    run_id: str | None
    created_at: datetime
    tags: dict[str, str]


@dataclass(frozen=True)
class RunScore:
    run_id: str
    started_at: datetime
    scores: dict[str, float]  # the run's metrics


def _is_missing(response: httpx.Response) -> bool:
    """MLflow's ways of saying "no such thing": 404, RESOURCE_DOES_NOT_EXIST, and a 400
    INVALID_PARAMETER_VALUE "… not found" for an alias no version carries."""
    if response.status_code == 404:
        return True
    if response.status_code != 400:
        return False
    try:
        error = response.json()
    except ValueError:
        return False
    code, message = error.get("error_code"), str(error.get("message", ""))
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and message.endswith("not found.")
    )


# MLflow ≥ 3.5's answer to a Host it does not list (its DNS-rebinding protection).
_HOST_REFUSED = "Invalid Host header"


def _refusal(response: httpx.Response, base: str) -> str:
    """Why MLflow said 401/403: the Host check, or the platform's sign-in."""
    if _HOST_REFUSED in response.text:
        host = response.request.headers.get("host", base)
        return (
            f"MLflow refused the Host header {host!r} ({response.status_code} "
            f"{_HOST_REFUSED!r}): the server must list it in MLFLOW_SERVER_ALLOWED_HOSTS "
            "(the chart's serverAllowedHosts in helm-values/mlflow.yaml)"
        )
    return (
        f"MLflow refused the platform's credentials ({response.status_code}): "
        "check MLOPS_MLFLOW_USERNAME and MLOPS_MLFLOW_PASSWORD"
    )


def _from_ms(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def _tagged(raw: dict[str, Any]) -> TaggedVersion:
    return TaggedVersion(
        version=str(raw["version"]),
        run_id=raw.get("run_id"),
        created_at=_from_ms(raw["creation_timestamp"]),
        tags={t["key"]: t["value"] for t in raw.get("tags", [])},
    )


class MlflowRegistry:
    def __init__(
        self,
        http: httpx.AsyncClient,
        tracking_uri: str,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self._http = http
        self._base = tracking_uri.rstrip("/")
        # Basic authentication, where the server has it (MLflow's basic-auth app).
        self._auth = httpx.BasicAuth(*credentials) if credentials else None

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any] | None:
        """The JSON reply, or None for RESOURCE_DOES_NOT_EXIST.

        Reads are retried twice on a server error or a dropped connection: MLflow on
        SQLite answers 5xx while a training run holds the database for a moment.
        """
        url = f"{self._base}/api/2.0/mlflow{path}"
        async for attempt in backoff(on=(_MlflowBusy,), first=0.2, cap=1.0, attempts=3):
            with attempt:
                try:
                    response = await self._http.request(method, url, auth=self._auth, **kwargs)
                except httpx.HTTPError as exc:
                    raise _MlflowBusy(f"MLflow at {self._base} is unreachable: {exc}") from exc
                if _is_missing(response):
                    return None
                if response.status_code < 400:
                    return response.json()
                if response.status_code in {401, 403}:
                    raise _MlflowRefused(_refusal(response, self._base))
                failure = f"MLflow answered {response.status_code}: {response.text[:200]}"
                if response.status_code >= 500:
                    raise _MlflowBusy(failure)
                raise MlflowUnavailable(failure)
        raise AssertionError("unreachable: backoff re-raises the last error")

    async def health(self) -> None:
        """One read of the registry, not MLflow's /health: that one is exempt from the
        server's Host check and sign-in, so it answers 200 while every real call fails."""
        await self._call("GET", "/registered-models/search", params={"max_results": 1})

    async def latest_version(self, model_name: str) -> ModelVersion | None:
        reply = await self._call(
            "GET",
            "/model-versions/search",
            params={
                "filter": f"name='{model_name}'",
                "order_by": "version_number DESC",
                "max_results": 1,
            },
        )
        versions = (reply or {}).get("model_versions", [])
        if not versions:
            return None
        found = versions[0]
        return ModelVersion(
            version=str(found["version"]),
            run_id=found.get("run_id"),
            created_at=_from_ms(found["creation_timestamp"]),
        )

    async def versions(self, model_name: str) -> list[TaggedVersion]:
        """Every version of the model with its tags, newest first."""
        found: list[TaggedVersion] = []
        page_token: str | None = None
        while True:
            params: dict[str, Any] = {
                "filter": f"name='{model_name}'",
                "order_by": "version_number DESC",
                "max_results": 200,
            }
            if page_token:
                params["page_token"] = page_token
            reply = await self._call("GET", "/model-versions/search", params=params) or {}
            found += [_tagged(raw) for raw in reply.get("model_versions", [])]
            page_token = reply.get("next_page_token")
            if not page_token:
                return found

    async def _about_model(self, model_name: str, path: str, **params: str) -> dict | None:
        """A read about one registered model; None when it does not exist.

        MLflow's basic-auth app answers 403, not 404, about a model that does not exist
        (it tells nobody what exists beyond their grants), so a refusal is checked with a
        search, which lists only the models the user may read: absent there, it is absent.
        """
        try:
            return await self._call("GET", path, params={"name": model_name, **params})
        except _MlflowRefused:
            if await self._exists(model_name):
                raise
            return None

    async def _exists(self, model_name: str) -> bool:
        reply = await self._call(
            "GET", "/registered-models/search", params={"filter": f"name='{model_name}'"}
        )
        return bool((reply or {}).get("registered_models"))

    async def version(self, model_name: str, version: str) -> TaggedVersion | None:
        reply = await self._about_model(model_name, "/model-versions/get", version=version)
        return _tagged(reply["model_version"]) if reply else None

    async def aliases(self, model_name: str) -> dict[str, list[str]]:
        """version -> the aliases it carries."""
        reply = await self._about_model(model_name, "/registered-models/get")
        carried: dict[str, list[str]] = {}
        for alias in (reply or {}).get("registered_model", {}).get("aliases", []):
            carried.setdefault(str(alias["version"]), []).append(alias["alias"])
        return carried

    async def set_alias(self, model_name: str, alias: str, version: str) -> None:
        await self._call(
            "POST",
            "/registered-models/alias",
            json={"name": model_name, "alias": alias, "version": version},
        )

    async def run_artifact_json(self, run_id: str, path: str) -> Any | None:
        """A JSON artifact of a run (served by the tracking server), or None if absent."""
        try:
            response = await self._http.get(
                f"{self._base}/get-artifact",
                params={"run_id": run_id, "path": path},
                auth=self._auth,
            )
        except httpx.HTTPError as exc:
            raise MlflowUnavailable(f"MLflow at {self._base} is unreachable: {exc}") from exc
        if _is_missing(response):  # no such run, or no such artifact: 404
            return None
        if response.status_code != 200:
            raise MlflowUnavailable(
                f"MLflow answered {response.status_code}: {response.text[:200]}"
            )
        return response.json()

    async def alias_version(self, model_name: str, alias: str) -> str | None:
        found = await self.aliased(model_name, alias)
        return found.version if found else None

    async def aliased(self, model_name: str, alias: str) -> TaggedVersion | None:
        """The version `alias` names, with its tags, in one call; None without one."""
        reply = await self._about_model(model_name, "/registered-models/alias", alias=alias)
        return _tagged(reply["model_version"]) if reply else None

    async def run_metrics(self, run_id: str) -> dict[str, float]:
        reply = await self._call("GET", "/runs/get", params={"run_id": run_id})
        metrics = ((reply or {}).get("run", {}).get("data", {}) or {}).get("metrics", [])
        return {m["key"]: float(m["value"]) for m in metrics}

    async def runs_since(
        self, experiment_name: str, since: datetime, metric: str
    ) -> list[RunScore]:
        """Runs with the metric started at or after `since`, oldest first."""
        experiment = await self._call(
            "GET", "/experiments/get-by-name", params={"experiment_name": experiment_name}
        )
        if experiment is None:
            return []
        since_ms = int(since.timestamp() * 1000)
        runs: list[RunScore] = []
        page_token: str | None = None
        while True:
            body: dict[str, Any] = {
                "experiment_ids": [experiment["experiment"]["experiment_id"]],
                "filter": f"attributes.start_time >= {since_ms}",
                "order_by": ["attributes.start_time ASC"],
                "max_results": 1000,
            }
            if page_token:
                body["page_token"] = page_token
            reply = await self._call("POST", "/runs/search", json=body) or {}
            for run in reply.get("runs", []):
                metrics = {m["key"]: m["value"] for m in run.get("data", {}).get("metrics", [])}
                if metric not in metrics:
                    continue
                runs.append(
                    RunScore(
                        run_id=run["info"]["run_id"],
                        started_at=_from_ms(run["info"]["start_time"]),
                        scores={key: float(value) for key, value in metrics.items()},
                    )
                )
            page_token = reply.get("next_page_token")
            if not page_token:
                return runs
