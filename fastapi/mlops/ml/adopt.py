"""Seal versions registered before the platform sealed its versions, after checking them.

A registry made by an earlier release holds versions without a seal, so the platform
would stop serving its own champion. An operator names the versions to keep; each is
sealed only if its artifact is a skops file whose types are all ones the platform
trusts, and it loads as a scikit-learn pipeline with class probabilities (a pickle, or
a skops file that needs other types, is refused and left foreign). Run it where the
signing key and MLflow's login are: in the cluster the API pod,

    kubectl exec deploy/mlops-api -n fastapi -- python -m mlops.ml.adopt 3 4

and locally `.venv/bin/python -m mlops.ml.adopt 3` beside `make up`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from mlops import logs
from mlops.contracts import version_card as tags
from mlops.ml import provenance
from mlops.ml.provenance import ForeignVersion
from mlops.settings.base import RuntimeSettings

log = logging.getLogger("mlops.adopt")


def checked_digests(
    settings: RuntimeSettings, version: str, found: dict[str, str], run_id: str | None
) -> dict:
    """The digest tags of a version whose artifacts pass the platform's checks."""
    import skops.io

    uri = settings.mlflow_tracking_uri
    data = provenance.fetch_version_skops(settings.model_name, version, uri)
    trusted = provenance.FOREST_TRUSTED_TYPES
    untrusted = set(skops.io.get_untrusted_types(data=data)) - set(trusted)
    if untrusted:
        raise ForeignVersion(f"its artifact needs types the platform does not trust: {untrusted}")
    pipeline = skops.io.loads(data, trusted=trusted)
    if not hasattr(pipeline, "predict_proba") or not hasattr(pipeline, "classes_"):
        raise ForeignVersion(f"its artifact is a {type(pipeline).__name__}, not a classifier")
    digests = {tags.TAG_SKOPS_SHA256: provenance.sha256(data)}
    if found.get(tags.TAG_COMPILED) == "onnx":
        compiled = provenance.fetch_compiled(run_id, uri)
        digests[tags.TAG_ONNX_SHA256] = provenance.sha256(compiled)
    return digests


def adopt(settings: RuntimeSettings, version: str) -> str:
    """Seal one version after checking it; what was done, in words."""
    import mlflow

    key = settings.signing_key()
    if key is None:
        raise ForeignVersion("no signing key is set (MLOPS_MODEL_SIGNING_KEY)")
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    name = settings.model_name
    found = client.get_model_version(name, version)
    current = dict(found.tags)
    if (
        provenance.why_foreign(key, model=name, version=version, run_id=found.run_id, found=current)
        is None
    ):
        return f"version {version} of {name} is already sealed"
    current.update(checked_digests(settings, version, current, found.run_id))
    for tag in (tags.TAG_SKOPS_SHA256, tags.TAG_ONNX_SHA256):
        if tag in current:
            client.set_model_version_tag(name, version, tag, current[tag])
    stamp = provenance.seal(key, model=name, version=version, run_id=found.run_id, found=current)
    client.set_model_version_tag(name, version, tags.TAG_SEAL, stamp)
    return f"version {version} of {name} checked and sealed"


def _sign_in(settings: RuntimeSettings) -> None:
    """The mlflow library signs in from its own variables; the API pod has ours."""
    credentials = settings.mlflow_credentials()
    if credentials and "MLFLOW_TRACKING_USERNAME" not in os.environ:
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = credentials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops.ml.adopt", description=__doc__)
    parser.add_argument("versions", nargs="+", help="version numbers of MLOPS_MODEL_NAME")
    args = parser.parse_args(argv)
    logs.configure("console")
    settings = RuntimeSettings()
    _sign_in(settings)
    refused = 0
    for version in args.versions:
        try:
            log.info("%s", adopt(settings, version))
        except ForeignVersion as exc:
            refused += 1
            log.error("version %s left foreign: %s", version, exc)
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
