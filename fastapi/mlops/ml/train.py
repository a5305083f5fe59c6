"""Training: one fit of the pipeline, logged, registered and put through the promotion
gate, with its outcome and alert recorded in Redis.

It runs inside Ray, in the warm trainer actor (`mlops.ml.trainer`) that each training
job's entrypoint (`python -m mlops.ml.job`) calls, and its registration step also ends
a hyperparameter search (`mlops.ml.search`). TrainingSettings come from the job's MLOPS_*
variables over the Ray node's environment (which holds the secrets).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.contracts.champion import ChampionMove
from mlops.contracts.jobs import JobOutcome
from mlops.contracts.model_definition import Estimator, Task
from mlops.contracts.placement import TRAINER_RESOURCE
from mlops.contracts.version_card import (
    COMPILED_DIR,
    COMPILED_FILE,
    REFERENCE_DIR,
    REFERENCE_FILE,
    TAG_JOB,
    TAG_SEAL,
    TrainedOn,
    VersionCard,
)
from mlops.ml import data, drift, model, predictors, promotion, provenance
from mlops.ml.estimators import Family
from mlops.ml.phases import Phases
from mlops.ml.provenance import ForeignVersion
from mlops.ml.specs import TrainingSpec
from mlops.settings.training import TrainingSettings

if TYPE_CHECKING:
    from mlops.ml.tree_builders import TreeBuilders

log = logging.getLogger("mlops.train")


@dataclass(frozen=True)
class Fitted:
    pipeline: Any
    scores: dict[str, float]
    cpus: int
    seconds: float  # the fit alone


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    model_version: str
    scores: dict[str, float]  # every metric of the model's task, on the held-out rows
    decision: promotion.Decision
    champion: promotion.ChampionScore | None  # the champion it was compared with
    move: ChampionMove | None  # the alias move, when promoted
    extra: JobOutcome = field(default_factory=lambda: JobOutcome())  # more for the record

    @property
    def promoted(self) -> bool:
        return self.decision.promoted


def warm_up() -> None:
    """Import now what a training imports on first use (about 5 s in a fresh process),
    and run once, on a few rows, what a training runs on first use: a fit, its compiled
    form, a save and a load of the sealed format (another second, paid before any job
    waits on it)."""
    import boto3  # noqa: F401
    import mlflow.sklearn  # noqa: F401
    import onnxruntime  # noqa: F401
    import pandas as pd
    import skl2onnx  # noqa: F401
    import skops.io
    from mlflow.models import infer_signature  # noqa: F401

    features = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0] * 3, "b": [1.0, 0.0, 1.0, 0.0] * 3})
    labels = pd.Series(["x", "y"] * 6)
    forest = Family(Task.CLASSIFICATION, Estimator.RANDOM_FOREST)
    pipeline = model.build_pipeline(forest, {"n_estimators": 2}, default_max_depth=4)
    model.fit(pipeline, features, labels, cpus=1)
    predictors.compiled_form(pipeline, features, features, Task.CLASSIFICATION)
    saved = skops.io.dumps(pipeline)
    provenance.pipeline_from_skops(saved, expected_sha256=provenance.sha256(saved))


def load_split(
    settings: TrainingSettings, dataset_uri: str, target_column: str, task: Task
) -> model.Split:
    """The dataset, checked (data.py's policy) and split into train and held-out rows."""
    frame = data.read_dataset(dataset_uri, data.s3_config(settings), data.limits(settings))
    features, labels = data.split_features(frame, target_column, task)
    return model.split(
        features, labels, task=task, test_size=settings.test_size, seed=settings.random_seed
    )


@dataclass(frozen=True)
class FitLimits:
    """What a fit may take: its depth when none is given, and the CPUs worth its work."""

    default_max_depth: int
    max_cpus: int
    min_parallel_work: int  # rows × trees below which a fit runs on one CPU
    niceness: int  # of the tree builders a fit starts for itself

    @classmethod
    def of(cls, settings: TrainingSettings) -> FitLimits:
        return cls(
            settings.max_depth_limit,
            settings.training_max_cpus,
            settings.parallel_fit_min_work,
            settings.training_niceness,
        )


def fit(
    family: Family,
    hyperparameters: dict[str, Any],
    parts: model.Split,
    limits: FitLimits,
    phases: Phases | None = None,
    builders: TreeBuilders | None = None,
) -> Fitted:
    """Build and fit the pipeline, on as many of the cluster's free CPUs as it is worth
    (on `builders`, the trainer's warm ones, else builders started for this fit alone),
    and score it on the held-out rows."""
    phases = phases or Phases()
    pipeline = model.build_pipeline(
        family, hyperparameters, default_max_depth=limits.default_max_depth
    )
    cpus = model.fit_cpus(
        family,
        rows=len(parts.x_train),
        trees=family.size(hyperparameters),
        free_cpus=_free_cpus() + (builders.kept if builders else 0),
        cap=limits.max_cpus,
        min_work=limits.min_parallel_work,
        out_of_bag=bool(hyperparameters.get("oob_score")),
    )
    if cpus > 1 and builders is None:  # builders of its own, released as it ends
        from mlops.ml.tree_builders import TreeBuilders

        builders = TreeBuilders(idle_seconds=0, niceness=limits.niceness)
    started = time.perf_counter()
    with phases.timed("fit"):
        model.fit(pipeline, parts.x_train, parts.y_train, cpus=cpus, builders=builders)
    seconds = time.perf_counter() - started
    with phases.timed("evaluation"):
        scores = model.evaluate(pipeline, parts.x_test, parts.y_test, family.task)
    return Fitted(pipeline, scores, cpus, seconds)


def _free_cpus() -> float:
    """The cluster's free CPUs, at most those of its trainer nodes (where a fit's tree
    builders run; the serving nodes' CPUs are the replicas')."""
    import ray

    if not ray.is_initialized():
        return 1.0
    trainer_cpus = sum(
        node["Resources"].get("CPU", 0.0)
        for node in ray.nodes()
        if node["Alive"] and node["Resources"].get(TRAINER_RESOURCE)
    )
    return float(min(ray.available_resources().get("CPU", 1.0), trainer_cpus))


def train_and_register(
    settings: TrainingSettings,
    spec: TrainingSpec,
    champions: promotion.ChampionCache | None = None,
    phases: Phases | None = None,
    builders: TreeBuilders | None = None,
) -> TrainingResult:
    phases = phases or Phases()
    with phases.timed("data"):
        parts = load_split(settings, spec.dataset_uri, spec.target_column, spec.model.task)
    limits = FitLimits.of(settings)
    fitted = fit(Family.of(spec.model), spec.hyperparameters, parts, limits, phases, builders)
    shown = ", ".join(f"{name} {value:.4g}" for name, value in fitted.scores.items())
    log.info("job %s: %s, %d CPU(s)", spec.job_id, shown, fitted.cpus)
    result = register(settings, spec, fitted, parts, champions=champions, phases=phases)
    extra: JobOutcome = {"cpus": fitted.cpus, "fit_seconds": round(fitted.seconds, 3)}
    return dataclasses.replace(result, extra=extra)


def register(
    settings: TrainingSettings,
    spec: TrainingSpec,
    fitted: Fitted,
    parts: model.Split,
    *,
    run_id: str | None = None,
    champions: promotion.ChampionCache | None = None,
    phases: Phases | None = None,
) -> TrainingResult:
    """Compare with the champion on the same held-out rows, log and register the
    pipeline (into `run_id` when given: a search's parent run), tag the version, and
    move the champion alias when the gate says so."""
    import mlflow

    phases = phases or Phases()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    ref = spec.model
    with phases.timed("gate"):
        champion = promotion.score_champion(
            client,
            key=settings.signing_key(),
            model=ref,
            alias=settings.champion_alias,
            x_test=parts.x_test,
            y_test=parts.y_test,
            cache=champions,
        )
    scores = fitted.scores
    decision = promotion.decide(
        scores[ref.gate.metric], gate=ref.gate, champion=champion, test_rows=len(parts.x_test)
    )
    if not spec.promote:
        decision = decision.held_for_rollout()
    log.info("job %s: %s", spec.job_id, decision.reason)
    with phases.timed("compilation"):
        compiled = predictors.compiled_form(
            fitted.pipeline, parts.x_train, parts.x_test, spec.model.task
        )
    with phases.timed("registration"):
        run_id, version = _log_and_register(
            settings, spec, fitted, parts, decision, compiled, run_id=run_id
        )
        if decision.promoted:
            client.set_registered_model_alias(
                ref.registered_model, settings.champion_alias, version
            )
    move = None
    if decision.promoted:
        if champions is not None:  # the next job compares with it: no need to download it
            champions.keep(client.tracking_uri, ref.registered_model, version, fitted.pipeline)
        move = ChampionMove(
            model=ref.name,
            action="promote",
            from_version=champion.version if champion else None,
            to_version=version,
            at=datetime.now(UTC),
            by=spec.job_id,
            reason=decision.reason,
        )
    return TrainingResult(run_id, version, scores, decision, champion, move)


def _version_card(
    spec: TrainingSpec,
    fitted: Fitted,
    parts: model.Split,
    decision: promotion.Decision,
    *,
    compiled: bytes | None,
    compiled_reason: str,
    skops_sha256: str,
) -> VersionCard:
    """What the version's readers act on: features and classes, data, scores, the
    gate's decision, the compiled form and the digests of what they load."""
    return VersionCard(
        job_id=spec.job_id,
        task=spec.model.task,
        features=[str(c) for c in parts.x_train.columns],
        classes=_classes(fitted.pipeline),
        dataset=TrainedOn(uri=spec.dataset_uri, target=spec.target_column),
        scores=fitted.scores,
        promoted=decision.promoted,
        promotion_reason=decision.reason,
        held_for_rollout=decision.held,
        compiled="onnx" if compiled is not None else "none",
        compiled_reason=compiled_reason,
        skops_sha256=skops_sha256,
        onnx_sha256=provenance.sha256(compiled) if compiled is not None else None,
    )


def experiment_id(client: Any, name: str) -> str:
    """The experiment's id, created if new (never the process-wide `set_experiment`: one
    trainer serves jobs of several experiments at once)."""
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def _log_and_register(
    settings: TrainingSettings,
    spec: TrainingSpec,
    fitted: Fitted,
    parts: model.Split,
    decision: promotion.Decision,
    compiled_form: tuple[bytes | None, str],
    *,
    run_id: str | None,
) -> tuple[str, str]:
    """Log the run (parameters, scores, compiled form, drift reference) and register
    the pipeline with its tags, in one call; returns (run id, version)."""
    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.models import infer_signature

    key = signing_key(settings)
    pipeline = fitted.pipeline
    compiled, verification = compiled_form
    with mlflow.start_run(**_run_options(settings, spec, run_id)) as run:
        params = {
            **spec.hyperparameters,
            "test_size": settings.test_size,
            "dataset_uri": spec.dataset_uri,
            "target_column": spec.target_column,
            "cpus": fitted.cpus,
        }
        # One request for both (a search's parent run has its parameters already).
        mlflow.MlflowClient().log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in fitted.scores.items()],
            params=[Param(k, str(v)) for k, v in params.items()] if run_id is None else [],
        )
        _log_files(compiled, drift.profile(parts.x_train, seed=settings.random_seed))
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            # A signature and no input example: MLflow would load the model again to
            # check the example (a tenth of a second and more); the replicas load it.
            signature=infer_signature(parts.x_train, pipeline.predict(parts.x_train)),
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=provenance.SKOPS_TRUSTED_TYPES,
            # Given, not inferred: inference loads the model in a subprocess (seconds).
            pip_requirements=model.pip_requirements(),
            metadata={"task": spec.model.task.value, "classes": _classes(pipeline)},
        )
    card = _version_card(
        spec,
        fitted,
        parts,
        decision,
        compiled=compiled,
        compiled_reason=verification,
        # The file as MLflow stored it: what loaders will fetch and check.
        skops_sha256=provenance.sha256(provenance.fetch_skops(info.model_uri)),
    )
    all_tags = card.to_tags()
    name = spec.model.registered_model
    # Created ready by the tracking server: no polling for its status.
    registered = mlflow.register_model(
        info.model_uri, name, tags=all_tags, await_registration_for=0
    )
    version = str(registered.version)
    _seal(name, key, version, run.info.run_id, all_tags)
    return run.info.run_id, version


def _run_options(
    settings: TrainingSettings, spec: TrainingSpec, run_id: str | None
) -> dict[str, Any]:
    """The run to log into: `run_id` (a search's parent run), else a new one."""
    import mlflow

    if run_id:
        return {"run_id": run_id}
    return {
        "experiment_id": experiment_id(mlflow.MlflowClient(), spec.model.experiment),
        "run_name": spec.job_id,
        "tags": {TAG_JOB: spec.job_id},
    }


def _log_files(compiled: bytes | None, drift_reference: Any) -> None:
    """The run's compiled form (when there is one) and drift reference, as artifacts."""
    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        if compiled is not None:
            path = Path(folder) / COMPILED_FILE
            path.write_bytes(compiled)
            mlflow.log_artifact(str(path), artifact_path=COMPILED_DIR)
        reference = Path(folder) / REFERENCE_FILE
        reference.write_text(json.dumps(drift_reference))
        mlflow.log_artifact(str(reference), artifact_path=REFERENCE_DIR)


def signing_key(settings: TrainingSettings) -> bytes:
    """The key that seals what a job registers; checked before the job does any work."""
    key = settings.signing_key()
    if key is None:
        raise ForeignVersion("no signing key is set (MLOPS_MODEL_SIGNING_KEY): cannot seal")
    return key


def _seal(
    registered_model: str, key: bytes, version: str, run_id: str, version_tags: dict[str, str]
) -> None:
    """Put the platform's seal on the version just registered (before any alias moves
    to it: until then it is foreign, which is safe)."""
    import mlflow

    stamp = provenance.seal(
        key, model=registered_model, version=version, run_id=run_id, found=version_tags
    )
    mlflow.MlflowClient().set_model_version_tag(registered_model, version, TAG_SEAL, stamp)


def _classes(pipeline: Any) -> list[str]:
    """A classifier's classes in the order of its probability columns; none for regression."""
    return [str(c) for c in getattr(pipeline, "classes_", [])]
