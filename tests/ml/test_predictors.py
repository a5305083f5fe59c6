"""The compiled (ONNX) form against the scikit-learn pipeline it came from: the same
class for a classifier, the same value within the stated tolerance for a regressor."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from mlops.contracts.model_definition import Estimator, Task
from mlops.ml import data, model, predictors
from mlops.ml.estimators import Family

CLASSIFICATION, REGRESSION = Task.CLASSIFICATION, Task.REGRESSION


def _fit(hyperparameters: dict, estimator: Estimator = Estimator.RANDOM_FOREST):
    features, labels = data.split_features(data.iris_frame(), data.IRIS_TARGET)
    parts = model.split(features, labels, task=CLASSIFICATION, test_size=0.2, seed=42)
    family = Family(CLASSIFICATION, estimator)
    pipeline = model.build_pipeline(family, hyperparameters, default_max_depth=64)
    return pipeline.fit(parts.x_train, parts.y_train), parts


def _fit_diabetes(estimator: Estimator, hyperparameters: dict):
    frame = load_diabetes(as_frame=True).frame
    features, target = data.split_features(frame, "target", REGRESSION)
    parts = model.split(features, target, task=REGRESSION, test_size=0.2, seed=42)
    family = Family(REGRESSION, estimator)
    pipeline = model.build_pipeline(family, hyperparameters, default_max_depth=64)
    return pipeline.fit(parts.x_train, parts.y_train), parts


def test_compiled_and_sklearn_forms_predict_the_same_class_for_every_iris_row() -> None:
    pipeline, parts = _fit({"random_state": 0})
    onnx = predictors.compile_to_onnx(pipeline, parts.x_train, CLASSIFICATION)
    compiled = predictors.OnnxPredictor(onnx, CLASSIFICATION)
    plain = predictors.SklearnPredictor(pipeline, list(parts.x_train.columns), CLASSIFICATION)
    every_row = data.split_features(data.iris_frame(), data.IRIS_TARGET)[0].to_numpy()

    onnx_classes = compiled.outputs(every_row).argmax(axis=1)
    sklearn_classes = plain.outputs(every_row).argmax(axis=1)

    assert np.array_equal(onnx_classes, sklearn_classes)


# skl2onnx 1.20 cannot convert scikit-learn 1.9's HistGradientBoosting (it fails on a
# boolean attribute): those versions serve with scikit-learn, and their card says why.
COMPILED = [Estimator.RANDOM_FOREST, Estimator.EXTRA_TREES]


@pytest.mark.parametrize("estimator", [*COMPILED, Estimator.LOGISTIC_REGRESSION])
def test_verification_accepts_a_faithful_compiled_form(estimator: Estimator) -> None:
    pipeline, parts = _fit({"random_state": 0}, estimator)

    onnx = predictors.compile_to_onnx(pipeline, parts.x_train, CLASSIFICATION)
    check = predictors.verify_compiled(onnx, pipeline, parts.x_test, CLASSIFICATION)

    assert check.matches, check.reason
    assert "same class for every held-out row" in check.reason


def test_verification_rejects_a_compiled_form_that_predicts_differently() -> None:
    pipeline, parts = _fit({"random_state": 0})
    stump, _ = _fit({"n_estimators": 1, "max_depth": 1, "random_state": 0})

    onnx = predictors.compile_to_onnx(stump, parts.x_train, CLASSIFICATION)
    check = predictors.verify_compiled(onnx, pipeline, parts.x_test, CLASSIFICATION)

    assert not check.matches
    assert "predicted differently" in check.reason


@pytest.mark.parametrize("estimator", [*COMPILED, Estimator.RIDGE])
def test_a_compiled_regressor_matches_within_the_tolerance_on_every_held_out_row(
    estimator: Estimator,
) -> None:
    pipeline, parts = _fit_diabetes(estimator, {"random_state": 0} if estimator != "ridge" else {})

    onnx = predictors.compile_to_onnx(pipeline, parts.x_train, REGRESSION)
    check = predictors.verify_compiled(onnx, pipeline, parts.x_test, REGRESSION)
    served = predictors.OnnxPredictor(onnx, REGRESSION).outputs(parts.x_test.to_numpy())

    assert check.matches, check.reason
    assert served.shape == (len(parts.x_test), 1)
    expected = pipeline.predict(parts.x_test)
    assert np.all(np.abs(served[:, 0] - expected) <= 1e-4 * np.maximum(np.abs(expected), 1))


def test_a_compiled_regressor_that_predicts_other_values_is_rejected() -> None:
    pipeline, parts = _fit_diabetes(Estimator.RIDGE, {})
    other, _ = _fit_diabetes(Estimator.RIDGE, {"alpha": 1000.0})

    onnx = predictors.compile_to_onnx(other, parts.x_train, REGRESSION)
    check = predictors.verify_compiled(onnx, pipeline, parts.x_test, REGRESSION)

    assert not check.matches
    assert "beyond the tolerance" in check.reason


def test_a_form_that_cannot_be_compiled_is_said_in_a_sentence_that_fits_a_tag() -> None:
    # skl2onnx fails on this boosting model with a message that carries its weights.
    pipeline, parts = _fit_diabetes(Estimator.HIST_GRADIENT_BOOSTING, {"max_iter": 50})

    compiled, reason = predictors.compiled_form(pipeline, parts.x_train, parts.x_test, REGRESSION)

    assert compiled is None
    assert reason.startswith("compilation failed: ")
    assert len(reason) <= predictors.REASON_CHARS and "\n" not in reason
