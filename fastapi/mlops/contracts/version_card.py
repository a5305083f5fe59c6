"""The version card: what the trainer writes beside each model version it registers, as
MLflow tags, and what every reader acts on (the replicas, the gate, the API's model
list, the reconciler's recovery). Written with `to_tags`, read with `from_tags`; nothing
else parses these tags. The seal (`ml/provenance.py`) covers every tag of the card."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from mlops.contracts.model_definition import Task

# The tags, as MLflow stores them (names kept from the first release: versions
# registered then read the same).
TAG_COMPILED = "mlops.compiled"  # "onnx" or "none"
TAG_COMPILED_REASON = "mlops.compiled_reason"
TAG_CLASSES = "mlops.classes"  # JSON list, in the order of the probability columns
TAG_FEATURES = "mlops.features"  # JSON list, the input columns in order
TAG_FEATURE_COUNT = "mlops.feature_count"
TAG_DATASET = "mlops.dataset"  # JSON {"uri", "target"}: what it was trained on
TAG_JOB = "mlops.job_id"  # the training job that registered the version (also a run tag)
TAG_ACCURACY = "mlops.accuracy"  # held-out accuracy, as text
TAG_F1 = "mlops.f1_macro"
TAG_PROMOTION = "mlops.promotion"  # "promoted", "not promoted" or "held for rollout"
_PROMOTIONS = ("promoted", "not promoted", "held for rollout")
TAG_PROMOTION_REASON = "mlops.promotion_reason"
TAG_SKOPS_SHA256 = "mlops.skops_sha256"  # digest of the pipeline's skops file
TAG_ONNX_SHA256 = "mlops.onnx_sha256"  # digest of the compiled form, when there is one
TAG_SEAL = "mlops.seal"  # the platform's HMAC over the card (mlops.ml.provenance)
TAG_TASK = "mlops.task"  # "classification" or "regression"; absent: classification
TAG_SCORES = "mlops.scores"  # JSON {metric: held-out score}, every metric of the task

# The card's tags of the first release: what the seal covers besides the version's
# identity, present or not.
CARD_TAGS = (
    TAG_CLASSES,
    TAG_FEATURES,
    TAG_FEATURE_COUNT,
    TAG_DATASET,
    TAG_JOB,
    TAG_ACCURACY,
    TAG_F1,
    TAG_PROMOTION,
    TAG_PROMOTION_REASON,
    TAG_COMPILED,
    TAG_COMPILED_REASON,
    TAG_SKOPS_SHA256,
    TAG_ONNX_SHA256,
)
# Tags added since: sealed when present, so the seals of older versions still verify,
# and adding or removing one breaks the seal all the same.
CARD_TAGS_SINCE = (TAG_TASK, TAG_SCORES)

# Artifacts of a version's run, beside the model.
COMPILED_DIR = "compiled"
COMPILED_FILE = "model.onnx"
REFERENCE_DIR = "drift"
REFERENCE_FILE = "reference.json"  # the training features' profile (mlops.ml.drift)

_NOT_COMPILED = "no compiled form was registered"


class MalformedCard(ValueError):
    """A version's tags do not make a card (a version the platform did not write)."""


class TrainedOn(BaseModel):
    model_config = ConfigDict(frozen=True)

    uri: str
    target: str


class VersionCard(BaseModel):
    model_config = ConfigDict(frozen=True)

    job_id: str
    task: Task = Task.CLASSIFICATION
    features: list[str]
    classes: list[str]  # none for regression
    dataset: TrainedOn | None
    scores: dict[str, float]  # every metric of the task on the held-out rows
    promoted: bool
    promotion_reason: str
    held_for_rollout: bool = False  # passed the gate, left for a canary rollout
    compiled: Literal["onnx", "none"] = "none"
    compiled_reason: str = _NOT_COMPILED
    skops_sha256: str | None = None
    onnx_sha256: str | None = None

    @property
    def promotion(self) -> str:
        """What the gate's decision did, in the version's tag."""
        if self.promoted:
            return "promoted"
        return "held for rollout" if self.held_for_rollout else "not promoted"

    @property
    def accuracy(self) -> float | None:
        return self.scores.get("accuracy")

    @property
    def f1_macro(self) -> float | None:
        return self.scores.get("f1_macro")

    def to_tags(self) -> dict[str, str]:
        tags = {
            TAG_TASK: self.task.value,
            TAG_SCORES: json.dumps(self.scores, sort_keys=True),
            TAG_CLASSES: json.dumps(self.classes),
            TAG_FEATURES: json.dumps(self.features),
            TAG_FEATURE_COUNT: str(len(self.features)),
            TAG_JOB: self.job_id,
            TAG_PROMOTION: self.promotion,
            TAG_PROMOTION_REASON: self.promotion_reason,
            TAG_COMPILED: self.compiled,
            TAG_COMPILED_REASON: self.compiled_reason,
        }
        if self.accuracy is not None and self.f1_macro is not None:  # as the first release
            tags[TAG_ACCURACY] = str(self.accuracy)
            tags[TAG_F1] = str(self.f1_macro)
        if self.dataset is not None:
            tags[TAG_DATASET] = self.dataset.model_dump_json()
        if self.skops_sha256 is not None:
            tags[TAG_SKOPS_SHA256] = self.skops_sha256
        if self.onnx_sha256 is not None:
            tags[TAG_ONNX_SHA256] = self.onnx_sha256
        return tags

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> VersionCard:
        """The card of a version's tags; MalformedCard naming what is missing or wrong."""
        try:
            promotion = tags[TAG_PROMOTION]
            if promotion not in _PROMOTIONS:
                raise ValueError(f"{TAG_PROMOTION} is {promotion!r}")
            dataset = tags.get(TAG_DATASET)
            return cls(
                job_id=tags[TAG_JOB],
                task=Task(tags.get(TAG_TASK, Task.CLASSIFICATION)),
                features=json.loads(tags[TAG_FEATURES]),
                classes=json.loads(tags[TAG_CLASSES]),
                dataset=TrainedOn.model_validate_json(dataset) if dataset else None,
                scores=_scores(tags),
                promoted=promotion == "promoted",
                held_for_rollout=promotion == "held for rollout",
                promotion_reason=tags.get(TAG_PROMOTION_REASON, ""),
                compiled=tags.get(TAG_COMPILED, "none"),
                compiled_reason=tags.get(TAG_COMPILED_REASON, _NOT_COMPILED),
                skops_sha256=tags.get(TAG_SKOPS_SHA256),
                onnx_sha256=tags.get(TAG_ONNX_SHA256),
            )
        except KeyError as exc:
            raise MalformedCard(f"the version has no {exc.args[0]} tag") from None
        except (ValueError, TypeError, ValidationError) as exc:
            first = str(exc).splitlines()[0]
            raise MalformedCard(f"the version's tags do not make a card: {first}") from None

    @classmethod
    def read(cls, tags: Mapping[str, str]) -> VersionCard | None:
        """The card, or None for tags that do not make one (a listing shows what it can)."""
        try:
            return cls.from_tags(tags)
        except MalformedCard:
            return None


def _scores(tags: Mapping[str, str]) -> dict[str, float]:
    """The held-out scores: the scores tag, or (versions of the first release) the
    accuracy and macro F1 tags."""
    if TAG_SCORES in tags:
        scores = json.loads(tags[TAG_SCORES])
        if not isinstance(scores, dict):
            raise ValueError(f"{TAG_SCORES} is not an object")
        return {str(k): float(v) for k, v in scores.items()}
    return {"accuracy": float(tags[TAG_ACCURACY]), "f1_macro": float(tags[TAG_F1])}
