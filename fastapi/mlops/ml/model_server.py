"""The Ray Serve application that answers predictions for every model.

Deployed by name (`mlops.ml.model_server:app`) through Serve's REST API. A call carries
rows of one or several models, each a registered model (its champion) or
`registered_model/version` (a pinned version); Serve's multiplexing header names the
first, so Serve routes the call to a replica that has it loaded. Each replica:
- loads what it is asked on demand, at most MLOPS_MODELS_PER_REPLICA at once (least
  recently used evicted);
- follows the champion alias of each model it holds and swaps in a new version once it
  is loaded, so a promotion never restarts the application or fails a request, of that
  model or any other;
- batches concurrent requests (@serve.batch) into one predict call per version;
- records the predictions the API asks it to (`ml/recording.py`).

What it is asked and answers is `mlops.contracts.serve`; each model's rows are answered
on their own. A version the platform did not seal is never loaded (`foreign_version`).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from mlops.contracts.model_definition import Task
from mlops.contracts.serve import (
    FLOAT32_MAX,
    ServeAnswer,
    ServedModel,
    ServeErrorCode,
    ServeGroup,
    ServeRefusal,
)
from mlops.ml import promotion, provenance
from mlops.ml.predictors import OnnxPredictor, Predictor, SklearnPredictor
from mlops.ml.provenance import ForeignVersion
from mlops.ml.recording import NotRecordable, PredictionRecorder, answered
from mlops.ml.sampling import ServedRows
from mlops.settings.serving import ServingSettings

log = logging.getLogger("ray.serve")

MAX_BATCH = 64


class UnregisteredVersion(LookupError):
    pass


class NoChampion(LookupError):
    pass


@dataclass(frozen=True)
class LoadedModel:
    registered_model: str
    version: str
    predictor: Predictor
    task: Task
    classes: list[str]  # none for regression
    features: list[str]


def load_version(settings: ServingSettings, registered_model: str, version: str) -> LoadedModel:
    """Load one sealed version, compiled form first (blocking: call in a thread).

    Raises UnregisteredVersion, or ForeignVersion for a version the platform did not seal
    (nothing of it is loaded then)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    try:
        found = client.get_model_version(registered_model, version)
    except MlflowException as exc:
        raise UnregisteredVersion(f"{registered_model} has no version {version!r}") from exc
    return load_sealed(settings, provenance.sealed(settings.signing_key(), registered_model, found))


def load_sealed(settings: ServingSettings, sealed: provenance.SealedVersion) -> LoadedModel:
    """Load a version whose seal holds, compiled form first (blocking)."""
    card, name, version = sealed.card, sealed.model, sealed.version
    predictor: Predictor
    if card.compiled == "onnx":
        compiled = provenance.load_compiled(sealed, settings.mlflow_tracking_uri)
        predictor = OnnxPredictor(compiled, card.task)
    else:
        log.warning(
            "%s version %s serves with scikit-learn: %s", name, version, card.compiled_reason
        )
        pipeline = provenance.load_pipeline(sealed, settings.mlflow_tracking_uri)
        predictor = SklearnPredictor(pipeline, card.features, card.task)
    log.info("loaded %s version %s (%s)", name, version, predictor.kind)
    return LoadedModel(name, version, predictor, card.task, card.classes, card.features)


def champion(settings: ServingSettings, registered_model: str) -> Any | None:
    """The model's champion as MLflow gives it (a ModelVersion, with its tags, in one
    request); None without one (blocking)."""
    import mlflow

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    return promotion.aliased(client, registered_model, settings.champion_alias)


class ChampionSlot:
    """A model's champion as a replica holds it: what Serve's multiplexing caches under
    the model's id, while the replica's follower swaps in each new champion."""

    def __init__(self, registered_model: str, loaded: LoadedModel) -> None:
        self.registered_model = registered_model
        self.loaded = loaded


def _json(body: Any, *, status: int = 200) -> Response:
    """orjson both ways: several times the standard library's speed on every call, and
    the same numbers (a float's shortest exact form)."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _refusal(code: ServeErrorCode, detail: str) -> ServeRefusal:
    return ServeRefusal(error=code, detail=detail)


@dataclass(frozen=True)
class _Item:
    model: LoadedModel
    rows: np.ndarray


@serve.deployment(name="ModelServer", max_ongoing_requests=MAX_BATCH)
class ModelServer:
    def __init__(self) -> None:
        self._settings = ServingSettings()
        self._champions: weakref.WeakSet[ChampionSlot] = weakref.WeakSet()
        self._follower: asyncio.Task | None = None
        self._served = ServedRows()
        self._recorder = PredictionRecorder(
            max_waiting=self._settings.prediction_backlog,
            flush_seconds=self._settings.prediction_flush_seconds,
        )
        self._storing: asyncio.Task | None = None

    def _ensure_background(self) -> None:
        """The replica's background tasks: following the champions it holds, and storing
        what it serves (a sample for drift checks) and answers (the predictions asked to
        be recorded)."""
        loop = asyncio.get_running_loop()
        if self._follower is None or self._follower.done():
            self._follower = loop.create_task(self._follow_champions())
        if self._storing is None or self._storing.done():
            self._storing = loop.create_task(self._store_forever())

    async def __del__(self) -> None:
        """Serve's graceful shutdown (a redeploy, a scale-down): the predictions that
        wait are written before the replica goes."""
        if self._storing is not None and not self._storing.done():
            self._storing.cancel()
            await asyncio.gather(self._storing, return_exceptions=True)

    async def _store_forever(self) -> None:
        """Served rows and answered predictions to Redis, through one client; the
        replica wires the stores. One failing stops both, to be started again."""
        from mlops.clients.redis import DriftSamples, PredictionWriter, connect

        settings = self._settings
        redis = connect(settings)
        try:
            samples = DriftSamples(redis, max_rows=settings.drift_sample_rows)
            predictions = PredictionWriter(
                redis,
                max_predictions=settings.prediction_history,
                max_age_hours=settings.prediction_max_age_hours,
            )
            async with asyncio.TaskGroup() as group:
                group.create_task(self._served.flush_forever(samples))
                group.create_task(self._recorder.flush_forever(predictions))
        finally:
            await redis.aclose()

    async def _follow_champions(self) -> None:
        """Poll each held model's alias; load a new champion fully before it replaces
        the old one. A model's failure is its own: the others are followed all the same."""
        refused: dict[str, str | None] = {}  # a foreign champion, logged once
        while True:
            for slot in list(self._champions):
                name = slot.registered_model
                version = None
                try:
                    found = await asyncio.to_thread(champion, self._settings, name)
                    version = str(found.version) if found else None
                    if found and version != slot.loaded.version:
                        sealed = provenance.sealed(self._settings.signing_key(), name, found)
                        slot.loaded = await asyncio.to_thread(load_sealed, self._settings, sealed)
                        log.info("the champion of %s is now version %s", name, version)
                except ForeignVersion as exc:  # keep serving the platform's own champion
                    if refused.get(name) != version:
                        log.error("not serving the new champion of %s: %s", name, exc)
                        refused[name] = version
                except Exception:  # keep serving the current champion; try again next time
                    log.exception("could not refresh the champion of %s", name)
            await asyncio.sleep(self._settings.serve_reload_seconds)

    async def check_health(self) -> None:
        self._ensure_background()

    @serve.multiplexed(max_num_models_per_replica=ServingSettings().models_per_replica)
    async def _held(self, model_id: str) -> ChampionSlot | LoadedModel:
        """A model's champion (id: the registered model) or one version (`name/version`)."""
        served = ServedModel.parse(model_id)
        if served.version is not None:
            return await asyncio.to_thread(
                load_version, self._settings, served.registered_model, served.version
            )
        name = served.registered_model
        found = await asyncio.to_thread(champion, self._settings, name)
        if found is None:
            raise NoChampion(name)
        sealed = provenance.sealed(self._settings.signing_key(), name, found)
        loaded = await asyncio.to_thread(load_sealed, self._settings, sealed)
        slot = ChampionSlot(name, loaded)
        self._champions.add(slot)
        return slot

    async def __call__(self, request: Request) -> Response:
        """A call of the API's: every group's answer, each group on its own (one group's
        bad rows or missing model never fail another's)."""
        self._ensure_background()
        try:
            groups = orjson.loads(await request.body())["groups"]
            if not isinstance(groups, list):
                raise TypeError("groups must be a list")
        except (ValueError, KeyError, TypeError) as exc:
            expected = "{'groups': [{'model': 'name[/version]', 'rows': [[...]]}]}"
            refusal = _refusal(ServeErrorCode.BAD_INPUT, f"expected {expected}: {exc}")
            return _json(refusal, status=ServeErrorCode.BAD_INPUT.status)
        answers = await asyncio.gather(*(self._answer(group) for group in groups))
        counts = self._recorder.counts()
        reply = {"groups": answers} if counts is None else {"groups": answers, "recording": counts}
        return _json(reply)

    async def _answer(self, group: ServeGroup) -> ServeAnswer | ServeRefusal:
        try:
            served = ServedModel.parse(group["model"])
            rows = np.asarray(group["rows"], dtype=np.float64)
        except (ValueError, KeyError, TypeError) as exc:
            return _refusal(ServeErrorCode.BAD_INPUT, f"a group is {{'model', 'rows'}}: {exc}")
        model = await self._model(served)
        if not isinstance(model, LoadedModel):
            return model
        if not np.all(np.abs(rows) <= FLOAT32_MAX):  # NaN fails this too
            return _refusal(
                ServeErrorCode.BAD_INPUT, f"features must be finite and within ±{FLOAT32_MAX:.4g}"
            )
        if rows.ndim != 2 or rows.shape[1] != len(model.features):
            got = rows.shape[-1] if rows.ndim else 0
            return _refusal(
                ServeErrorCode.BAD_INPUT,
                f"version {model.version} expects {len(model.features)} features "
                f"({', '.join(model.features)}), got {got}",
            )
        outputs = (await self._predict(_Item(model, rows))).tolist()
        self._served.add(model.registered_model, model.version, rows)
        if (record_as := group.get("record")) is not None:
            try:
                kept = answered(record_as, model.version, model.classes, rows.tolist(), outputs)
            except (NotRecordable, KeyError, TypeError) as exc:
                return _refusal(ServeErrorCode.BAD_INPUT, str(exc))
            self._recorder.keep(kept)
        return ServeAnswer(
            version=model.version,
            predictor=model.predictor.kind,
            task=model.task.value,
            classes=model.classes,
            outputs=outputs,
        )

    async def _model(self, served: ServedModel) -> LoadedModel | ServeRefusal:
        """What the request asked for, loaded; or the replica's verdict why not."""
        name, version = served.registered_model, served.version
        try:
            held = await self._held(served.model_id)
        except NoChampion:
            return _refusal(
                ServeErrorCode.NO_MODEL,
                f"no {self._settings.champion_alias} version of {name} yet: train one",
            )
        except UnregisteredVersion as exc:
            return _refusal(ServeErrorCode.UNKNOWN_VERSION, str(exc))
        except ForeignVersion as exc:
            return _refusal(ServeErrorCode.FOREIGN_VERSION, str(exc))
        except Exception as exc:  # the version exists but cannot be loaded
            log.exception("could not load %s", served.model_id)
            what = f"version {version} of {name}" if version else f"the champion of {name}"
            return _refusal(ServeErrorCode.LOAD_FAILED, f"{what} could not be loaded: {exc}")
        return held.loaded if isinstance(held, ChampionSlot) else held

    # No wait for company: the API already coalesces concurrent requests into one call,
    # and requests that arrive while a batch runs form the next one.
    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=0.0)
    async def _predict(self, items: list[_Item]) -> list[np.ndarray]:
        """One predict call per model version for everything that arrived together."""
        results: list[np.ndarray | None] = [None] * len(items)
        by_version: dict[int, list[int]] = {}
        for index, item in enumerate(items):
            by_version.setdefault(id(item.model), []).append(index)
        for indices in by_version.values():
            model = items[indices[0]].model
            stacked = np.vstack([items[i].rows for i in indices])
            outputs = model.predictor.outputs(stacked)
            offset = 0
            for i in indices:
                count = len(items[i].rows)
                results[i] = outputs[offset : offset + count]
                offset += count
        return results  # type: ignore[return-value]


# serve.deployment turns the class into a Deployment, which mypy cannot see.
app = ModelServer.bind()  # type: ignore[attr-defined]
