"""The version card: what the trainer writes beside a version and every reader acts on,
one model with `to_tags`/`from_tags`; a misspelt field fails the type check."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy

from mlops.contracts.model_definition import Task
from mlops.contracts.version_card import (
    CARD_TAGS,
    CARD_TAGS_SINCE,
    TAG_CLASSES,
    TAG_FEATURES,
    TAG_JOB,
    MalformedCard,
    TrainedOn,
    VersionCard,
)

ROOT = Path(__file__).resolve().parents[2]

CARD = VersionCard(
    job_id="train-1",
    features=["sepal length", "sepal width"],
    classes=["Setosa", "Virginica"],
    dataset=TrainedOn(uri="s3://mlops/datasets/iris.csv", target="variety"),
    scores={"accuracy": 0.9667, "f1_macro": 0.9666},
    promoted=True,
    promotion_reason="first version",
    compiled="onnx",
    compiled_reason="predictions equal on 30 rows",
    skops_sha256="a" * 64,
    onnx_sha256="b" * 64,
)

# The tags a version registered by the release before the card carries (its trainer
# wrote them one by one): such versions must read the same.
WRITTEN_BEFORE = {
    "mlops.classes": '["Setosa", "Virginica"]',
    "mlops.features": '["sepal length", "sepal width"]',
    "mlops.feature_count": "2",
    "mlops.dataset": '{"uri": "s3://mlops/datasets/iris.csv", "target": "variety"}',
    "mlops.job_id": "train-1",
    "mlops.accuracy": "0.9667",
    "mlops.f1_macro": "0.9666",
    "mlops.promotion": "promoted",
    "mlops.promotion_reason": "first version",
    "mlops.compiled": "onnx",
    "mlops.compiled_reason": "predictions equal on 30 rows",
    "mlops.skops_sha256": "a" * 64,
    "mlops.onnx_sha256": "b" * 64,
}


@pytest.mark.parametrize(
    "card",
    [
        CARD,
        CARD.model_copy(update={"promoted": False}),
        CARD.model_copy(update={"promoted": False, "held_for_rollout": True}),
    ],
    ids=["promoted", "not promoted", "held for rollout"],
)
def test_a_card_reads_back_as_it_was_written(card: VersionCard) -> None:
    assert VersionCard.from_tags(card.to_tags()) == card
    assert card.to_tags()["mlops.promotion"] == card.promotion


def test_versions_registered_before_the_card_read_the_same() -> None:
    assert VersionCard.from_tags(WRITTEN_BEFORE) == CARD


def test_the_seal_covers_every_tag_the_card_writes() -> None:
    assert set(CARD.to_tags()) <= set(CARD_TAGS) | set(CARD_TAGS_SINCE)


def test_a_regression_card_has_its_scores_and_no_classes() -> None:
    card = CARD.model_copy(
        update={"task": Task.REGRESSION, "classes": [], "scores": {"rmse": 52.1, "r2": 0.4}}
    )
    tags = card.to_tags()

    assert VersionCard.from_tags(tags) == card
    assert "mlops.accuracy" not in tags and card.accuracy is None


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({TAG_JOB: None}, TAG_JOB),
        ({TAG_FEATURES: "not json"}, "do not make a card"),
        ({TAG_CLASSES: json.dumps({"a": 1})}, "do not make a card"),
        ({"mlops.promotion": "maybe"}, "mlops.promotion"),
        ({"mlops.accuracy": "high"}, "do not make a card"),
    ],
)
def test_tags_that_do_not_make_a_card_are_refused_with_the_reason(change, named) -> None:
    tags = {**WRITTEN_BEFORE, **change}
    tags = {k: v for k, v in tags.items() if v is not None}

    with pytest.raises(MalformedCard, match=named):
        VersionCard.from_tags(tags)
    assert VersionCard.read(tags) is None


def test_a_misspelt_field_fails_the_type_check(tmp_path: Path) -> None:
    reader = tmp_path / "reader.py"
    reader.write_text(
        textwrap.dedent(
            """
            from mlops.contracts.version_card import VersionCard

            def write(card: VersionCard) -> VersionCard:
                print(card.features, card.acuracy)
                return VersionCard(
                    job_id="j", features=[], clases=[], dataset=None, scores={},
                    promoted=True, promotion_reason="",
                )
            """
        )
    )

    out, _, status = mypy.run(["--config-file", str(ROOT / "mypy.ini"), str(reader)])

    assert status == 1
    assert '"VersionCard" has no attribute "acuracy"' in out
    assert 'Unexpected keyword argument "clases" for "VersionCard"' in out
