"""The two forms a trained pipeline serves in: compiled (ONNX) and plain scikit-learn.

At registration the pipeline is compiled to ONNX and kept only if it predicts like
scikit-learn on every held-out row (a classifier: the same class; a regressor: the same
value within REGRESSION_TOLERANCE); serving then uses it (about 500 times cheaper per
row here) and falls back to scikit-learn when it is missing.

Either form answers `outputs(rows)`: a classifier's class probabilities (one column per
class, in the model's class order), a regressor's predictions (one column).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mlops.contracts.model_definition import Task
from mlops.contracts.serve import top_class

if TYPE_CHECKING:  # a replica serving compiled models never imports them (a second each)
    import pandas as pd
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)

# A compiled regressor's largest allowed difference from scikit-learn, relative to the
# size of the prediction (at least 1): float32 arithmetic stays far below it, and a tree
# split that float32 flips (a different leaf) goes far above.
REGRESSION_TOLERANCE = 1e-4


class Predictor(Protocol):
    kind: str

    def outputs(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities (classifier) or predictions (regressor, one column) per row."""
        ...


@dataclass
class SklearnPredictor:
    pipeline: Pipeline
    features: list[str]
    task: Task
    kind: str = "sklearn"

    def outputs(self, rows: np.ndarray) -> np.ndarray:
        import pandas as pd  # imported already: the pipeline's own modules need it

        # The frame carries the names the pipeline was fitted with.
        frame = pd.DataFrame(rows, columns=self.features)
        if self.task is Task.CLASSIFICATION:
            return self.pipeline.predict_proba(frame)
        return np.asarray(self.pipeline.predict(frame), dtype=np.float64).reshape(-1, 1)


class OnnxPredictor:
    kind = "onnx"

    def __init__(self, model: bytes, task: Task) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread per call: replicas scale by batching and by replicas, not threads.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._task = task

    def outputs(self, rows: np.ndarray) -> np.ndarray:
        results = self._session.run(None, {self._input: rows.astype(np.float32)})
        if self._task is Task.CLASSIFICATION:
            return results[1]  # (labels, probabilities)
        return np.asarray(results[0], dtype=np.float64).reshape(-1, 1)


# A reason is a tag of the version (MLflow caps a tag's value): a converter's error can
# carry whole weight arrays, so only its first line is kept, this long at most.
REASON_CHARS = 300


def compiled_form(
    pipeline: Pipeline, x_train: pd.DataFrame, x_test: pd.DataFrame, task: Task
) -> tuple[bytes | None, str]:
    """The ONNX form if it predicts like the pipeline on the held-out rows (None if not,
    or if it cannot be made), and why, in a sentence."""
    try:
        compiled = compile_to_onnx(pipeline, x_train, task)
        check = verify_compiled(compiled, pipeline, x_test, task)
    except Exception as exc:  # a converter gap must not fail training: serve sklearn
        log.warning("could not compile the pipeline: %s", exc)
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        return None, f"compilation failed: {first_line}"[:REASON_CHARS]
    if not check.matches:
        log.warning("compiled form rejected: %s", check.reason)
        return None, check.reason
    return compiled, check.reason


@functools.cache
def _boosting_leaves_written_as_integers() -> None:
    """skl2onnx 1.20 gives a HistGradientBoosting leaf's missing-value flag as False, in
    a list of integers that protobuf refuses to hold a boolean: no boosting model could
    be compiled, and each served with scikit-learn. Its node writer gets the flag as the
    integer the ONNX operator defines (once per process; harmless once fixed upstream)."""
    from skl2onnx.common import tree_ensemble

    add_node = tree_ensemble.add_node

    @functools.wraps(add_node)
    def with_integer_flag(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kw: Any):
        flag = int(nodes_missing_value_tracks_true)
        return add_node(*args, nodes_missing_value_tracks_true=flag, **kw)

    tree_ensemble.add_node = with_integer_flag


def compile_to_onnx(pipeline: Pipeline, x_reference: pd.DataFrame, task: Task) -> bytes:
    from skl2onnx import to_onnx

    _boosting_leaves_written_as_integers()
    options = {}
    if task is Task.CLASSIFICATION:  # probabilities as a plain tensor
        options = {id(pipeline.steps[-1][1]): {"zipmap": False}}
    onnx_model = to_onnx(
        pipeline,
        x_reference.to_numpy(np.float32)[:1],
        options=options,
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return onnx_model.SerializeToString()


@dataclass(frozen=True)
class Verification:
    matches: bool
    reason: str


def verify_compiled(
    model: bytes, pipeline: Pipeline, x_holdout: pd.DataFrame, task: Task
) -> Verification:
    """The compiled form is used only if it predicts like scikit-learn on every held-out
    row: the same class as served (`top_class`; probabilities may differ slightly: the
    compiled form runs in float32, so their largest difference is reported), or the same
    value within REGRESSION_TOLERANCE."""
    compiled = OnnxPredictor(model, task).outputs(x_holdout.to_numpy())
    expected = SklearnPredictor(pipeline, [str(c) for c in x_holdout.columns], task).outputs(
        x_holdout.to_numpy()
    )
    diff = np.abs(compiled - expected)
    if task is Task.CLASSIFICATION:  # the class as served (a tie: the first tied class)
        served = [top_class(row) for row in compiled.tolist()]
        mismatches = sum(c != top_class(e) for c, e in zip(served, expected.tolist(), strict=True))
        if mismatches:
            return Verification(False, f"{mismatches} held-out rows predicted differently")
        return Verification(
            True,
            f"same class for every held-out row; max probability difference {diff.max():.4f}",
        )
    relative = diff / np.maximum(np.abs(expected), 1.0)
    outside = int((relative > REGRESSION_TOLERANCE).sum())
    if outside:
        return Verification(
            False,
            f"{outside} held-out rows predicted beyond the tolerance of {REGRESSION_TOLERANCE:g} "
            f"(largest relative difference {relative.max():.2g})",
        )
    return Verification(
        True,
        f"every held-out row within {REGRESSION_TOLERANCE:g} of scikit-learn "
        f"(largest relative difference {relative.max():.2g})",
    )
