"""A prediction as the platform records it, and the label that comes back for it.

Written by the Serve replica that answered (every answer of /inference, its id drawn by
the API; `ml/recording.py`) and read by feedback and live metrics; a Redis stream entry
holds a hundred of a model's predictions at most (`clients/redis/predictions.py`).

A prediction id is time-ordered: 11 hex digits of the milliseconds since the epoch,
then 16 random ones. Its time tells a label for a prediction too old to be kept from
one for an id never seen.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from mlops.contracts.model_definition import Task

PREDICTION_ID_PATTERN = r"^[0-9a-f]{27}$"
_PREDICTION_ID = re.compile(PREDICTION_ID_PATTERN)
HOUR_MS = 3_600_000


class Arm(StrEnum):
    """Who answered: the champion, a version the request named (`pinned`), or a side of
    a rollout."""

    CHAMPION = "champion"
    PINNED = "pinned"
    CANARY = "canary"
    SHADOW = "shadow"  # answered no caller: recorded for comparison only


def new_prediction_id(now_ms: int | None = None) -> str:
    """Unique, not secret (feedback takes the API token): 64 bits from the process's
    pseudo-random generator, reseeded from the OS at start and in a forked child, at a
    third of the cost of the OS's random bytes on every prediction's path."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{ms:011x}{random.getrandbits(64):016x}"


def shadow_id(prediction_id: str) -> str:
    """The id of a shadow's answer to the request the champion answered as
    `prediction_id`: a label for one is a label for both."""
    return f"{prediction_id}s"


def is_prediction_id(text: str) -> bool:
    return bool(_PREDICTION_ID.match(text))


def prediction_ms(prediction_id: str) -> int:
    """When the prediction was made (ms since the epoch), from its id."""
    return int(prediction_id[:11], 16)


class Encoded(NamedTuple):
    """A record as the store writes it: its model, its id, its JSON (`to_json`)."""

    model: str
    prediction_id: str
    record: str


def encoded_record(
    model: str,
    prediction_id: str,
    version: str,
    arm: str,
    features: list[float],
    output: int | float,
    classes: list[str],
    probabilities: list[float] | None,
) -> Encoded:
    """A prediction as a stream entry lists it (`PredictionRecord` reads it back): one
    compact JSON object, by orjson (a quarter of the standard encoder's time). A
    replica encodes what it answered with this directly, thousands a second: building
    the record first took half as long again."""
    record = {
        "id": prediction_id,
        "version": version,
        "arm": arm,
        "features": features,
        "output": output,
        "classes": classes,
        "probabilities": probabilities,
    }
    return Encoded(model, prediction_id, orjson.dumps(record).decode())


@dataclass(slots=True)
class PredictionRecord:
    """One answer: `output` is the predicted class's index (classification, `classes`
    non-empty) or the predicted value (regression). Not frozen: thousands a second are
    made, and a frozen dataclass takes five times as long to build."""

    prediction_id: str
    model: str
    version: str
    arm: Arm
    features: list[float]
    output: int | float
    classes: list[str]
    probabilities: list[float] | None = None

    @property
    def task(self) -> Task:
        return Task.CLASSIFICATION if self.classes else Task.REGRESSION

    @property
    def predicted_at_ms(self) -> int:
        return prediction_ms(self.prediction_id)

    def encoded(self) -> Encoded:
        return encoded_record(
            self.model,
            self.prediction_id,
            self.version,
            self.arm.value,
            self.features,
            self.output,
            self.classes,
            self.probabilities,
        )

    def to_json(self) -> str:
        return self.encoded().record

    @classmethod
    def from_json(cls, model: str, text: str) -> PredictionRecord:
        """Raises KeyError, TypeError or ValueError for an entry not written by `to_json`."""
        return cls.from_object(model, orjson.loads(text))

    @classmethod
    def from_object(cls, model: str, found: dict[str, Any]) -> PredictionRecord:
        """`to_json`'s object, decoded (KeyError, TypeError or ValueError if it is not)."""
        output = found["output"]
        if not isinstance(output, int | float):
            raise ValueError(f"not a prediction: {output!r}")
        return cls(
            prediction_id=found["id"],
            model=model,
            version=found["version"],
            arm=Arm(found["arm"]),
            features=[float(v) for v in found["features"]],
            output=output,
            classes=[str(c) for c in found["classes"]],
            probabilities=found["probabilities"],
        )


@dataclass(frozen=True, slots=True)
class LabelledPrediction:
    """A prediction joined with its true outcome: what live metrics are computed from.
    `label` is a class index (classification) or a value (regression)."""

    prediction_id: str
    version: str
    arm: Arm
    output: int | float
    label: int | float
    labelled_at_ms: int

    def fields(self) -> dict[str, str]:
        return {
            "id": self.prediction_id,
            "version": self.version,
            "arm": self.arm.value,
            "output": json.dumps(self.output),
            "label": json.dumps(self.label),
        }

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, str]) -> LabelledPrediction:
        return cls(
            prediction_id=fields["id"],
            version=fields["version"],
            arm=Arm(fields["arm"]),
            output=orjson.loads(fields["output"]),
            label=orjson.loads(fields["label"]),
            labelled_at_ms=int(entry_id.split("-", 1)[0]),
        )
