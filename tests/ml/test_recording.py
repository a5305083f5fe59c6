"""A replica's records of what it answered: the same numbers the API answers with."""

from __future__ import annotations

import pytest

from mlops.contracts.predictions import Arm, PredictionRecord, new_prediction_id, shadow_id
from mlops.contracts.serve import RecordAs, ServeAnswer, prediction_of
from mlops.ml.recording import NotRecordable, PredictionRecorder, answered, records_of

IRIS = ["Setosa", "Versicolor", "Virginica"]


def _record_as(count: int, arm: str = "champion") -> RecordAs:
    return RecordAs(
        model="iris", ids=[new_prediction_id() for _ in range(count)], arms=[arm] * count
    )


def test_a_classifiers_record_holds_the_class_and_probabilities_as_answered() -> None:
    # float32 ties and noise, as ONNX answers: the record rounds as the reply does
    outputs = [[0.49999994, 0.50000006, 0.0], [0.1000000015, 0.2999999985, 0.6]]
    rows = [[6.7, 3.0, 5.2, 2.3], [5.1, 3.5, 1.4, 0.2]]
    record_as = _record_as(2)

    recorded = records_of(answered(record_as, "3", IRIS, rows, outputs))

    for encoded, output, row, prediction_id in zip(
        recorded, outputs, rows, record_as["ids"], strict=True
    ):
        record = PredictionRecord.from_json(encoded.model, encoded.record)
        answer = ServeAnswer(
            version="3", predictor="onnx", task="classification", classes=IRIS, outputs=output
        )
        assert (record.output, record.probabilities) == prediction_of(answer)
        assert (record.prediction_id, record.version, record.arm) == (
            prediction_id,
            "3",
            "champion",
        )
        assert (record.model, record.features, record.classes) == ("iris", row, IRIS)


def test_a_regressors_record_holds_its_value() -> None:
    record_as = RecordAs(model="diabetes", ids=[shadow_id(new_prediction_id())], arms=["shadow"])

    (encoded,) = records_of(answered(record_as, "2", [], [[0.1, 0.2]], [[151.5]]))

    record = PredictionRecord.from_json("diabetes", encoded.record)
    assert (record.output, record.probabilities, record.arm) == (151.5, None, Arm.SHADOW)


@pytest.mark.parametrize(
    "record_as",
    [
        RecordAs(model="iris", ids=["a"], arms=["champion", "champion"]),  # an id short
        RecordAs(model="iris", ids=["a", "b"], arms=["champion", "everyone"]),  # no such arm
    ],
)
def test_a_record_that_does_not_fit_its_rows_is_refused(record_as: RecordAs) -> None:
    with pytest.raises(NotRecordable):
        answered(record_as, "1", IRIS, [[1.0] * 4] * 2, [[1.0, 0.0, 0.0]] * 2)


def test_beyond_the_backlog_groups_are_counted_not_kept() -> None:
    recorder = PredictionRecorder(max_waiting=3, flush_seconds=1)
    for _ in range(3):  # the third finds 4 rows waiting
        recorder.keep(answered(_record_as(2), "1", IRIS, [[1.0] * 4] * 2, [[1.0, 0.0, 0.0]] * 2))

    assert recorder.counts() == {"recorded": {}, "unrecorded": {"backlog": 2}}
    assert recorder.counts() is None
