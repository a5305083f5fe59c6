"""The compiled (ONNX) form against the scikit-learn pipeline it came from."""

from __future__ import annotations

import numpy as np

from mlops.ml import data, model, predictors


def _fit(hyperparameters: dict):
    features, labels = data.split_features(data.iris_frame(), data.IRIS_TARGET)
    parts = model.split(features, labels, test_size=0.2, seed=42)
    return model.build_pipeline(hyperparameters, default_max_depth=64).fit(
        parts.x_train, parts.y_train
    ), parts


def test_compiled_and_sklearn_forms_predict_the_same_class_for_every_iris_row() -> None:
    pipeline, parts = _fit({"random_state": 0})
    compiled = predictors.OnnxPredictor(predictors.compile_to_onnx(pipeline, parts.x_train))
    plain = predictors.SklearnPredictor(pipeline, list(parts.x_train.columns))
    every_row = data.split_features(data.iris_frame(), data.IRIS_TARGET)[0].to_numpy()

    onnx_classes = compiled.predict_proba(every_row).argmax(axis=1)
    sklearn_classes = plain.predict_proba(every_row).argmax(axis=1)

    assert np.array_equal(onnx_classes, sklearn_classes)


def test_verification_accepts_a_faithful_compiled_form() -> None:
    pipeline, parts = _fit({"random_state": 0})

    check = predictors.verify_compiled(
        predictors.compile_to_onnx(pipeline, parts.x_train), pipeline, parts.x_test
    )

    assert check.matches
    assert check.max_probability_diff < 0.05


def test_verification_rejects_a_compiled_form_that_predicts_differently() -> None:
    pipeline, parts = _fit({"random_state": 0})
    stump, _ = _fit({"n_estimators": 1, "max_depth": 1, "random_state": 0})

    check = predictors.verify_compiled(
        predictors.compile_to_onnx(stump, parts.x_train), pipeline, parts.x_test
    )

    assert not check.matches
    assert "predicted differently" in check.reason
