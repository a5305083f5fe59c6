"""The Ray Serve application that answers predictions for the registered model.

Deployed by name (`mlops.ml.model_server:app`) through Serve's REST API. Each replica:
- follows the champion alias and swaps in a new version once it is loaded, so a
  promotion never restarts the application or fails a request;
- loads pinned versions on demand through Serve's model multiplexing (kept warm,
  least recently used evicted);
- batches concurrent requests (@serve.batch) into one predict call per version.

What it is asked and answers is `mlops.contracts.serve`; a version the platform did not
seal is never loaded (`foreign_version`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from mlops.contracts.serve import FLOAT32_MAX, ServeErrorCode
from mlops.ml import promotion, provenance
from mlops.ml.predictors import OnnxPredictor, Predictor, SklearnPredictor
from mlops.ml.provenance import ForeignVersion
from mlops.ml.sampling import ServedRows
from mlops.settings.serving import ServingSettings

log = logging.getLogger("ray.serve")

MAX_BATCH = 64


class UnregisteredVersion(LookupError):
    pass


@dataclass(frozen=True)
class LoadedModel:
    version: str
    predictor: Predictor
    classes: list[str]
    features: list[str]


def load_version(settings: ServingSettings, version: str) -> LoadedModel:
    """Load one sealed version, compiled form first (blocking: call in a thread).

    Raises UnregisteredVersion, or ForeignVersion for a version the platform did not seal
    (nothing of it is loaded then)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    try:
        sealed = provenance.verified(client, settings.signing_key(), settings.model_name, version)
    except MlflowException as exc:
        raise UnregisteredVersion(f"{settings.model_name} has no version {version!r}") from exc
    card = sealed.card
    features, classes = card.features, card.classes
    predictor: Predictor
    if card.compiled == "onnx":
        compiled = provenance.load_compiled(sealed, settings.mlflow_tracking_uri)
        predictor = OnnxPredictor(compiled)
    else:
        log.warning("version %s serves with scikit-learn: %s", version, card.compiled_reason)
        pipeline = provenance.load_pipeline(sealed, settings.mlflow_tracking_uri)
        predictor = SklearnPredictor(pipeline, features)
    log.info("loaded version %s (%s)", version, predictor.kind)
    return LoadedModel(version, predictor, classes, features)


def _champion_version(settings: ServingSettings) -> str | None:
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    try:
        return promotion.alias_version(client, settings.model_name, settings.champion_alias)
    except MlflowException:
        return None


def _error(code: ServeErrorCode, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=code.status)


@dataclass(frozen=True)
class _Item:
    model: LoadedModel
    rows: np.ndarray


@serve.deployment(name="ModelServer", max_ongoing_requests=MAX_BATCH)
class ModelServer:
    def __init__(self) -> None:
        self._settings = ServingSettings()
        self._champion: LoadedModel | None = None
        self._follower: asyncio.Task | None = None
        self._served = ServedRows()
        self._sampler: asyncio.Task | None = None

    def _ensure_follower(self) -> None:
        """The replica's background tasks: following the champion alias, and storing
        a sample of what it serves for drift checks."""
        loop = asyncio.get_running_loop()
        if self._follower is None or self._follower.done():
            self._follower = loop.create_task(self._follow_champion())
        if self._sampler is None or self._sampler.done():
            self._sampler = loop.create_task(self._sample_forever())

    async def _sample_forever(self) -> None:
        """Served rows to Redis for drift checks; the replica wires the store."""
        from mlops.clients.redis import DriftSamples, connect

        settings = self._settings
        redis = connect(settings)
        try:
            samples = DriftSamples(
                redis, model_name=settings.model_name, max_rows=settings.drift_sample_rows
            )
            await self._served.flush_forever(samples)
        finally:
            await redis.aclose()

    async def _follow_champion(self) -> None:
        """Poll the alias; load a new champion fully before it replaces the old one."""
        refused: str | None = None  # a foreign champion, logged once
        while True:
            try:
                version = await asyncio.to_thread(_champion_version, self._settings)
                if version and (self._champion is None or self._champion.version != version):
                    self._champion = await asyncio.to_thread(load_version, self._settings, version)
                    log.info("champion is now version %s", version)
            except ForeignVersion as exc:  # keep serving the platform's own champion
                if refused != version:
                    log.error("not serving the new champion: %s", exc)
                    refused = version
            except Exception:  # keep serving the current champion; try again next time
                log.exception("could not refresh the champion")
            await asyncio.sleep(self._settings.serve_reload_seconds)

    async def check_health(self) -> None:
        self._ensure_follower()

    @serve.multiplexed(max_num_models_per_replica=4)
    async def _pinned(self, version: str) -> LoadedModel:
        return await asyncio.to_thread(load_version, self._settings, version)

    async def __call__(self, request: Request) -> JSONResponse:
        self._ensure_follower()
        try:
            body = await request.json()
            rows = np.asarray(body["rows"], dtype=np.float64)
            version = body.get("version")
        except (ValueError, KeyError, TypeError) as exc:
            return _error(ServeErrorCode.BAD_INPUT, f"expected {{'rows': [[...]]}}: {exc}")
        if version is None:
            if self._champion is None:
                try:
                    self._champion = await self._load_champion()
                except ForeignVersion as exc:
                    return _error(
                        ServeErrorCode.FOREIGN_VERSION,
                        f"the {self._settings.champion_alias} is not served: {exc}",
                    )
            model = self._champion
            if model is None:
                return _error(
                    ServeErrorCode.NO_MODEL,
                    f"no {self._settings.champion_alias} version of {self._settings.model_name} "
                    "yet: train one with POST /trigger_training",
                )
        else:
            try:
                model = await self._pinned(str(version))
            except UnregisteredVersion as exc:
                return _error(ServeErrorCode.UNKNOWN_VERSION, str(exc))
            except ForeignVersion as exc:
                return _error(ServeErrorCode.FOREIGN_VERSION, str(exc))
            except Exception as exc:  # the version exists but cannot be loaded
                log.exception("could not load version %s", version)
                return _error(
                    ServeErrorCode.LOAD_FAILED, f"version {version} could not be loaded: {exc}"
                )
        if not np.all(np.abs(rows) <= FLOAT32_MAX):  # NaN fails this too
            return _error(
                ServeErrorCode.BAD_INPUT, f"features must be finite and within ±{FLOAT32_MAX:.4g}"
            )
        if rows.ndim != 2 or rows.shape[1] != len(model.features):
            got = rows.shape[-1] if rows.ndim else 0
            return _error(
                ServeErrorCode.BAD_INPUT,
                f"version {model.version} expects {len(model.features)} features "
                f"({', '.join(model.features)}), got {got}",
            )
        probabilities = await self._predict(_Item(model, rows))
        self._served.add(model.version, rows)
        return JSONResponse(
            {
                "version": model.version,
                "predictor": model.predictor.kind,
                "classes": model.classes,
                "probabilities": probabilities.tolist(),
            }
        )

    async def _load_champion(self) -> LoadedModel | None:
        version = await asyncio.to_thread(_champion_version, self._settings)
        if version is None:
            return None
        return await asyncio.to_thread(load_version, self._settings, version)

    # No wait for company: the API already coalesces concurrent requests into one call,
    # and requests that arrive while a batch runs form the next one.
    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=0.0)
    async def _predict(self, items: list[_Item]) -> list[np.ndarray]:
        """One predict call per model version for everything that arrived together."""
        results: list[np.ndarray | None] = [None] * len(items)
        by_version: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            by_version.setdefault(item.model.version, []).append(index)
        for indices in by_version.values():
            model = items[indices[0]].model
            stacked = np.vstack([items[i].rows for i in indices])
            probabilities = model.predictor.predict_proba(stacked)
            offset = 0
            for i in indices:
                count = len(items[i].rows)
                results[i] = probabilities[offset : offset + count]
                offset += count
        return results  # type: ignore[return-value]


# serve.deployment turns the class into a Deployment, which mypy cannot see.
app = ModelServer.bind()  # type: ignore[attr-defined]
