"""The compiled (ONNX) form against the scikit-learn pipeline it came from: the same
class for a classifier, the same value within the stated tolerance for a regressor."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.datasets import load_diabetes, make_classification
from sklearn.pipeline import Pipeline

from mlops.contracts.model_definition import Estimator, Task
from mlops.contracts.serve import top_class
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


# Boosting too: skl2onnx 1.20 failed on it (a leaf's flag given as a boolean) until the
# platform gave its node writer an integer.
COMPILED = [Estimator.RANDOM_FOREST, Estimator.EXTRA_TREES, Estimator.HIST_GRADIENT_BOOSTING]


@pytest.mark.parametrize("estimator", [*COMPILED, Estimator.LOGISTIC_REGRESSION])
def test_verification_accepts_a_faithful_compiled_form(estimator: Estimator) -> None:
    pipeline, parts = _fit({"random_state": 0}, estimator)

    onnx = predictors.compile_to_onnx(pipeline, parts.x_train, CLASSIFICATION)
    check = predictors.verify_compiled(onnx, pipeline, parts.x_test, CLASSIFICATION)

    assert check.matches, check.reason
    assert "same class for every held-out row" in check.reason


def test_a_forests_tied_classes_are_served_as_scikit_learn_predicts_them() -> None:
    # 20 trees split 10/10 on a row: 0.5/0.5 in scikit-learn, 0.49999994/0.50000006 in
    # float32. Compared by plain argmax, such forests were refused their compiled form.
    x, y = make_classification(400, 8, n_informative=5, random_state=0)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)])
    parts = model.split(frame, pd.Series(y).map({0: "a", 1: "b"}), task=CLASSIFICATION,
                        test_size=0.2, seed=42)  # fmt: skip
    family = Family(CLASSIFICATION, Estimator.RANDOM_FOREST)
    hyperparameters = {"n_estimators": 20, "random_state": 0}
    pipeline = model.build_pipeline(family, hyperparameters, default_max_depth=64)
    pipeline.fit(parts.x_train, parts.y_train)
    onnx = predictors.compile_to_onnx(pipeline, parts.x_train, CLASSIFICATION)
    served = predictors.OnnxPredictor(onnx, CLASSIFICATION).outputs(parts.x_test.to_numpy())

    check = predictors.verify_compiled(onnx, pipeline, parts.x_test, CLASSIFICATION)
    classes = [pipeline.classes_[top_class(row)] for row in served.tolist()]

    assert (served.argmax(axis=1) != pipeline.predict_proba(parts.x_test).argmax(axis=1)).any()
    assert check.matches, check.reason
    assert classes == list(pipeline.predict(parts.x_test))


def test_the_served_class_is_the_first_of_tied_ones_at_six_decimals() -> None:
    assert top_class([0.4999999403953552, 0.5000000596046448]) == 0
    assert top_class([0.2, 0.3999999, 0.4000001]) == 1
    assert top_class([0.1, 0.2, 0.7]) == 2


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


class _Unconvertible(RegressorMixin, BaseEstimator):
    """A regressor skl2onnx has no converter for."""

    def fit(self, x, y):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, x):
        return np.full(len(x), self.mean_)


def test_a_form_that_cannot_be_compiled_is_said_in_a_sentence_that_fits_a_tag() -> None:
    # skl2onnx's message for it runs over several lines (a boosting model's once carried
    # its weights, 341,666 characters).
    _, parts = _fit_diabetes(Estimator.RIDGE, {})
    pipeline = Pipeline([("estimator", _Unconvertible())]).fit(parts.x_train, parts.y_train)

    compiled, reason = predictors.compiled_form(pipeline, parts.x_train, parts.x_test, REGRESSION)

    assert compiled is None
    assert reason.startswith("compilation failed: ")
    assert len(reason) <= predictors.REASON_CHARS and "\n" not in reason


def test_the_serving_module_does_not_import_scikit_learn() -> None:
    """Serve imports the replicas' module twice per deployment (to build the app, then
    in each replica): scikit-learn would add about a second and 80 MB to each, and a
    replica serving compiled models never needs it."""
    probe = "import sys, mlops.ml.model_server; print('sklearn' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)

    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "False"
