"""The seal on registered versions and the loader that trusts only the platform's types."""

from __future__ import annotations

from typing import Any

import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from skops.io.exceptions import UntrustedTypesFoundException

from mlops.contracts.model_definition import Estimator, Task
from mlops.contracts.version_card import TAG_ACCURACY, TAG_FEATURES, TAG_SEAL
from mlops.ml import model, provenance
from mlops.ml.estimators import Family
from mlops.ml.provenance import ForeignVersion

KEY = b"k" * 32
TAGS = {TAG_FEATURES: '["a", "b"]', TAG_ACCURACY: "0.9"}


def _sealed(version: str = "3", run_id: str = "run-1") -> dict[str, str]:
    stamp = provenance.seal(KEY, model="iris", version=version, run_id=run_id, found=TAGS)
    return {**TAGS, TAG_SEAL: stamp}


def test_a_sealed_version_passes_the_check() -> None:
    provenance.check_seal(KEY, model="iris", version="3", run_id="run-1", found=_sealed())


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"version": "4"}, "does not match its seal"),
        ({"run_id": "run-2"}, "does not match its seal"),
        ({"model": "wine"}, "does not match its seal"),
        ({"found": {**_sealed(), TAG_ACCURACY: "1.0"}}, "does not match its seal"),
        ({"found": TAGS}, "has no seal"),
        ({"key": b"x" * 32}, "does not match its seal"),
        ({"key": None}, "no signing key is set"),
    ],
)
def test_any_change_to_a_sealed_version_makes_it_foreign(change: dict, expected: str) -> None:
    given: dict[str, Any] = {
        "key": KEY,
        "model": "iris",
        "version": "3",
        "run_id": "run-1",
        "found": _sealed(),
    }
    given.update(change)
    key = given.pop("key")

    with pytest.raises(ForeignVersion, match=expected):
        provenance.check_seal(key, **given)


def test_the_loader_refuses_bytes_other_than_the_sealed_ones() -> None:
    forest = Family(Task.CLASSIFICATION, Estimator.RANDOM_FOREST)
    data = sio.dumps(model.build_pipeline(forest, {"n_estimators": 2}, default_max_depth=4))

    with pytest.raises(ForeignVersion, match="SHA-256 differs"):
        provenance.pipeline_from_skops(data, provenance.sha256(data + b"\0"))


def test_the_loader_refuses_types_the_artifact_itself_trusts() -> None:
    data = sio.dumps(Pipeline([("eval", FunctionTransformer(eval))]))

    with pytest.raises(UntrustedTypesFoundException, match="builtins.eval"):
        provenance.pipeline_from_skops(data, provenance.sha256(data))
