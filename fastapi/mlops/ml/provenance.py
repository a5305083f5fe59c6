"""Which registered versions the platform produced, and loading only those.

Anyone who can reach MLflow can register a version, and MLflow loads a scikit-learn
model the way its own artifact says (a cloudpickle artifact runs code when loaded; a
skops artifact lists the types it wants trusted). So the trainer seals every version it
registers: an HMAC-SHA256, with a key MLflow users do not hold, over the version's
identity (model, version number, run), the tags serving reads, and the SHA-256 of each
artifact that is loaded. Replicas, the trainer's champion scoring and the API's
promotion check the seal first, then load the artifact themselves (skops with the
platform's own trusted types, never MLflow's loader) after checking its digest.

A version without a valid seal is foreign: listed as such, never served, scored or
promoted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.contracts.version_card import (
    CARD_TAGS,
    CARD_TAGS_SINCE,
    COMPILED_DIR,
    COMPILED_FILE,
    TAG_SEAL,
    MalformedCard,
    VersionCard,
)

# The one file of the scikit-learn flavour that holds the pipeline (skops format).
SKOPS_FILE = "model.skops"

# Types skops must trust to load the platform's pipelines; everything else in them is
# safe by default. The platform's lists, never the one an artifact carries. Versions from
# before seals were forests: adopting one (ml/adopt.py) trusts no more than a forest needs.
FOREST_TRUSTED_TYPES = ["sklearn.tree._tree.Tree", "numpy.dtype"]
# Boosting's TreePredictor holds node indices that predict does not bounds-check, so a
# crafted file could read out of bounds: it is trusted only where the seal and the digest
# were checked first (pipeline_from_skops), that is in files the trainer wrote.
SKOPS_TRUSTED_TYPES = [
    *FOREST_TRUSTED_TYPES,
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]

# What the seal covers besides the identity: every tag of the version card (those added
# since the first release only when present: see CARD_TAGS_SINCE).
SEALED_TAGS = CARD_TAGS


class ForeignVersion(Exception):
    """A version the platform did not produce, or one altered since: never loaded."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _message(model: str, version: str, run_id: str | None, found: Mapping[str, str]) -> bytes:
    sealed = {key: found.get(key) for key in SEALED_TAGS}
    sealed |= {key: found[key] for key in CARD_TAGS_SINCE if key in found}
    identity = {"model": model, "version": str(version), "run_id": run_id, "tags": sealed}
    return json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()


def seal(
    key: bytes, *, model: str, version: str, run_id: str | None, found: Mapping[str, str]
) -> str:
    """The seal of a version whose tags are `found`."""
    return hmac.new(key, _message(model, version, run_id, found), hashlib.sha256).hexdigest()


def check_seal(
    key: bytes | None, *, model: str, version: str, run_id: str | None, found: Mapping[str, str]
) -> None:
    """Raise ForeignVersion unless the version carries the platform's seal."""
    name = f"version {version} of {model}"
    if key is None:
        raise ForeignVersion(
            f"{name} cannot be verified: no signing key is set (MLOPS_MODEL_SIGNING_KEY)"
        )
    given = found.get(TAG_SEAL)
    if not given:
        raise ForeignVersion(f"{name} was not registered by the platform (it has no seal)")
    expected = seal(key, model=model, version=version, run_id=run_id, found=found)
    if not hmac.compare_digest(given, expected):
        raise ForeignVersion(
            f"{name} does not match its seal: its tags or identity changed after the "
            "platform registered it, or another key sealed it"
        )


def why_foreign(
    key: bytes | None, *, model: str, version: str, run_id: str | None, found: Mapping[str, str]
) -> str | None:
    """None for a sealed version, else the reason it is foreign."""
    try:
        check_seal(key, model=model, version=version, run_id=run_id, found=found)
    except ForeignVersion as exc:
        return str(exc)
    return None


def check_digest(data: bytes, expected: str | None, what: str) -> None:
    if not expected or not hmac.compare_digest(sha256(data), expected):
        raise ForeignVersion(f"the {what} is not the one the platform sealed (SHA-256 differs)")


def pipeline_from_skops(data: bytes, expected_sha256: str | None) -> Any:
    """The pipeline in a sealed skops file, trusting only the platform's types."""
    import skops.io

    check_digest(data, expected_sha256, "scikit-learn artifact")
    return skops.io.loads(data, trusted=SKOPS_TRUSTED_TYPES)


@dataclass(frozen=True)
class SealedVersion:
    """A registered version whose seal holds: its card can be trusted."""

    model: str
    version: str
    run_id: str | None
    card: VersionCard


def verified(client: Any, key: bytes | None, model: str, version: str) -> SealedVersion:
    """The version from MLflow (`client`: an MlflowClient), seal checked; raises
    MlflowException when it does not exist and ForeignVersion when it is not sealed."""
    return sealed(key, model, client.get_model_version(model, version))


def sealed(key: bytes | None, model: str, found: Any) -> SealedVersion:
    """A version as MLflow gave it (a ModelVersion, with its tags), seal checked; raises
    ForeignVersion when it is not sealed."""
    check_seal(key, model=model, version=str(found.version), run_id=found.run_id, found=found.tags)
    try:
        card = VersionCard.from_tags(found.tags)
    except MalformedCard as exc:  # sealed, yet not a card: never load it
        raise ForeignVersion(f"version {found.version} of {model}: {exc}") from None
    return SealedVersion(model, str(found.version), found.run_id, card)


def fetch_skops(model_uri: str, tracking_uri: str | None = None) -> bytes:
    """The skops file of a model folder in MLflow (`models:/name/version`, or a logged
    model's URI), as stored."""
    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        model_dir = mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=folder, tracking_uri=tracking_uri
        )
        return skops_bytes(model_dir)


def fetch_version_skops(model: str, version: str, tracking_uri: str) -> bytes:
    """The skops file of a registered version. Resolved through the registry at
    `tracking_uri`: a `models:/` URI would go to the process's default registry, which
    outside a training (replicas, the API) is a local file, not the platform's."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    return fetch_skops(client.get_model_version_download_uri(model, version), tracking_uri)


class ArtifactUnavailable(Exception):
    """The tracking server did not give an artifact the version's card names."""


def fetch_compiled(run_id: str | None, tracking_uri: str) -> bytes:
    """A run's compiled (ONNX) form, as stored: one request to the tracking server's
    artifact endpoint, with MLflow's credentials and retries (its download resolves the
    run and lists the folder first: three requests, a third of a cold load)."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    path = f"{COMPILED_DIR}/{COMPILED_FILE}"
    response = http_request(
        get_default_host_creds(tracking_uri),
        "/get-artifact",
        "GET",
        params={"run_id": run_id, "path": path},
    )
    if response.status_code != 200:
        raise ArtifactUnavailable(
            f"MLflow answered {response.status_code} for {path} of run {run_id}"
        )
    return bytes(response.content)


def skops_bytes(model_dir: str) -> bytes:
    """The skops file of a downloaded scikit-learn model folder."""
    path = Path(model_dir) / SKOPS_FILE
    if not path.is_file():
        raise ForeignVersion(f"the model has no {SKOPS_FILE}: the platform loads skops files only")
    return path.read_bytes()


def load_pipeline(sealed: SealedVersion, tracking_uri: str) -> Any:
    """The scikit-learn pipeline of a sealed version, its digest checked before loading."""
    data = fetch_version_skops(sealed.model, sealed.version, tracking_uri)
    return pipeline_from_skops(data, sealed.card.skops_sha256)


def load_compiled(sealed: SealedVersion, tracking_uri: str) -> bytes:
    """The ONNX form of a sealed version, its digest checked."""
    data = fetch_compiled(sealed.run_id, tracking_uri)
    check_digest(data, sealed.card.onnx_sha256, "compiled (ONNX) artifact")
    return data
