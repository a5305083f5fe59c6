"""What the API and the Serve replicas say to each other about predictions.

Request: POST {"groups": [{"model": "iris", "rows": [[5.1, 3.5, 1.4, 0.2]]},
                          {"model": "wine/3", "rows": [[...], [...]],
                           "record": {"model": "wine", "ids": [...], "arms": [...]}}]}
         Each group is one served model (`ServedModel.model_id`: a registered model,
         meaning its champion, or `registered_model/version`) and its rows; with
         "record", the replica records the answers as predictions of that platform
         model, each row's under its id and arm (`contracts.predictions`). Serve's
         multiplexing header (MULTIPLEX_HEADER) names the first group's model: Serve
         routes the call to a replica that holds it, which loads the others if it must.
Reply:   200 {"groups": [<answer or error>, ...], "recording": {...}}, one per request
         group, in order (and "recording", when there is news: the replica's
         RecordingCounts since its last reply that had them):
         answer {"version": "3", "predictor": "onnx", "task": "classification" |
                 "regression", "classes": [...], "outputs": [[...]]}, one output row
                 per request row: a classifier's class probabilities (in the order of
                 "classes"), a regressor's prediction (one value; "classes" is empty);
         error  {"error": <ServeErrorCode>, "detail": "..."}: that group's alone.
         A call that is not of this form: the error alone, with the code's HTTP status.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

# The largest feature value a replica takes: its models compute in float32 (ONNX).
FLOAT32_MAX = 3.4028234663852886e38
# Serve routes a request to a replica that holds the model named here.
MULTIPLEX_HEADER = "serve_multiplexed_model_id"
# Class probabilities are answered to this many decimals: the compiled form computes in
# float32 and knows no more.
PROBABILITY_DECIMALS = 6


def top_class(probabilities: Sequence[float]) -> int:
    """The predicted class: the most probable at PROBABILITY_DECIMALS, the first of tied
    ones as scikit-learn picks. So a forest's 0.5/0.5 tie, 0.49999994/0.50000006 in
    float32, is the class scikit-learn predicts."""
    return as_answered(probabilities)[0]


def as_answered(probabilities: Sequence[float]) -> tuple[int, list[float]]:
    """The predicted class (`top_class`) and the probabilities as answered, rounded to
    PROBABILITY_DECIMALS: both from one rounding, on every prediction's path."""
    rounded = [round(p, PROBABILITY_DECIMALS) for p in probabilities]
    return rounded.index(max(rounded)), rounded


@dataclass(frozen=True)
class ServedModel:
    """What a prediction is asked of: a registered model's champion (no version) or one
    of its versions."""

    registered_model: str
    version: str | None = None

    @property
    def model_id(self) -> str:
        if self.version is None:
            return self.registered_model
        return f"{self.registered_model}/{self.version}"

    @classmethod
    def parse(cls, model_id: str) -> ServedModel:
        name, _, version = model_id.partition("/")
        if not name or (_ and not version):
            raise ValueError(f"not a served model id: {model_id!r}")
        return cls(name, version or None)


class ServeErrorCode(StrEnum):
    NO_MODEL = "no_model"  # no champion yet
    UNKNOWN_VERSION = "unknown_version"
    FOREIGN_VERSION = "foreign_version"  # not sealed by the platform: never loaded
    BAD_INPUT = "bad_input"
    LOAD_FAILED = "load_failed"  # the version exists but could not be loaded

    @property
    def status(self) -> int:
        """The HTTP status a replica answers with, and the API passes on."""
        return _STATUS[self]


_STATUS = {
    ServeErrorCode.NO_MODEL: 503,
    ServeErrorCode.UNKNOWN_VERSION: 404,
    ServeErrorCode.FOREIGN_VERSION: 409,
    ServeErrorCode.BAD_INPUT: 422,
    ServeErrorCode.LOAD_FAILED: 503,
}


class RecordAs(TypedDict):
    """A group's rows to record once answered: the platform model they are predictions
    of, and each row's prediction id and arm (`contracts.predictions.Arm`)."""

    model: str
    ids: list[str]
    arms: list[str]


class ServeGroup(TypedDict):
    """One served model's rows in a call."""

    model: str  # ServedModel.model_id
    rows: list[list[float]]
    record: NotRequired[RecordAs]


class Unrecorded(StrEnum):
    """Why a replica skipped recording a prediction it answered."""

    REDIS = "redis"  # not reachable
    BACKLOG = "backlog"  # more waiting than it keeps


class RecordingCounts(TypedDict):
    """Predictions a replica recorded, by platform model, and skipped, by reason
    (`Unrecorded`), since it last said."""

    recorded: dict[str, int]
    unrecorded: dict[str, int]


class ServeAnswer(TypedDict):
    """A group's predictions."""

    version: str
    predictor: str
    task: str
    classes: list[str]
    outputs: list[Any]  # a list of probabilities, or one value, per row


def prediction_of(answer: ServeAnswer) -> tuple[int | float, list[float] | None]:
    """One row's answer as predicted: the class (`top_class`) and the probabilities as
    answered, or a regressor's value and None."""
    if answer["classes"]:
        return as_answered(answer["outputs"])
    return answer["outputs"][0], None


class ServeRefusal(TypedDict):
    """Why a group (or a whole call) has no predictions."""

    error: ServeErrorCode
    detail: str
