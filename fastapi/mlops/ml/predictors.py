"""The two forms a trained pipeline serves in: compiled (ONNX) and plain scikit-learn.

At registration the pipeline is compiled to ONNX and kept only if it predicts the same
class as scikit-learn for every held-out row; serving then uses it (about 500 times
cheaper per row here) and falls back to scikit-learn when it is missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)


class Predictor(Protocol):
    kind: str

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Class probabilities, one column per class in the model's class order."""
        ...


@dataclass
class SklearnPredictor:
    pipeline: Pipeline
    features: list[str]
    kind: str = "sklearn"

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        # The frame carries the names the pipeline was fitted with.
        return self.pipeline.predict_proba(pd.DataFrame(rows, columns=self.features))


class OnnxPredictor:
    kind = "onnx"

    def __init__(self, model: bytes) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread per call: replicas scale by batching and by replicas, not threads.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        _, probabilities = self._session.run(None, {self._input: rows.astype(np.float32)})
        return probabilities


def compile_to_onnx(pipeline: Pipeline, x_reference: pd.DataFrame) -> bytes:
    from skl2onnx import to_onnx

    forest = pipeline.steps[-1][1]
    onnx_model = to_onnx(
        pipeline,
        x_reference.to_numpy(np.float32)[:1],
        options={id(forest): {"zipmap": False}},  # probabilities as a plain tensor
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return onnx_model.SerializeToString()


@dataclass(frozen=True)
class Verification:
    matches: bool
    max_probability_diff: float
    reason: str


def verify_compiled(model: bytes, pipeline: Pipeline, x_holdout: pd.DataFrame) -> Verification:
    """Same predicted class for every held-out row, or the compiled form is not used.

    Probabilities may differ slightly (the compiled scaler runs in float32), so their
    largest difference is reported, not required to be zero.
    """
    compiled = OnnxPredictor(model).predict_proba(x_holdout.to_numpy())
    expected = pipeline.predict_proba(x_holdout)
    diff = float(np.abs(compiled - expected).max())
    mismatches = int((compiled.argmax(axis=1) != expected.argmax(axis=1)).sum())
    if mismatches:
        return Verification(False, diff, f"{mismatches} held-out rows predicted differently")
    return Verification(True, diff, "same class for every held-out row")
