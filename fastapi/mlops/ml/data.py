"""Reading and writing the training dataset, from a local path or an s3:// URI."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pandas as pd

if TYPE_CHECKING:
    from mlops.settings import Settings

IRIS_FEATURES = ["sepal.length", "sepal.width", "petal.length", "petal.width"]
IRIS_TARGET = "variety"


@dataclass(frozen=True)
class S3Config:
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None

    def client(self):
        import boto3  # imported here: only s3:// datasets need it

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )


def s3_config(settings: Settings) -> S3Config:
    secret = settings.s3_secret_access_key
    return S3Config(
        endpoint_url=settings.s3_endpoint_url,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret else None,
    )


class DatasetError(Exception):
    """The dataset is missing, unreadable or lacks the target column."""


def iris_frame() -> pd.DataFrame:
    """Iris from scikit-learn's bundled copy, with the platform's column names."""
    from sklearn.datasets import load_iris  # only the local set-up writes iris

    bunch = load_iris(as_frame=True)
    frame = bunch.data.copy()
    frame.columns = IRIS_FEATURES
    frame[IRIS_TARGET] = [str(bunch.target_names[i]).capitalize() for i in bunch.target]
    return frame


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if not parsed.netloc or not parsed.path.strip("/"):
        raise DatasetError(f"{uri!r} is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


def read_csv(uri: str, s3: S3Config | None = None) -> pd.DataFrame:
    """Read a CSV from a local path, a file:// URI or an s3:// URI."""
    try:
        if uri.startswith("s3://"):
            bucket, key = _split_s3(uri)
            body = (s3 or S3Config()).client().get_object(Bucket=bucket, Key=key)["Body"]
            return pd.read_csv(io.BytesIO(body.read()))
        return pd.read_csv(uri.removeprefix("file://"))
    except DatasetError:
        raise
    except Exception as exc:  # boto, OS and parser errors all mean "cannot read it"
        raise DatasetError(f"cannot read dataset {uri}: {exc}") from exc


def write_csv(frame: pd.DataFrame, uri: str, s3: S3Config | None = None) -> None:
    if uri.startswith("s3://"):
        bucket, key = _split_s3(uri)
        body = frame.to_csv(index=False).encode()
        (s3 or S3Config()).client().put_object(Bucket=bucket, Key=key, Body=body)
        return
    path = Path(uri.removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def exists(uri: str, s3: S3Config | None = None) -> bool:
    """True if a dataset object or file is at `uri`."""
    if not uri.startswith("s3://"):
        return Path(uri.removeprefix("file://")).exists()
    bucket, key = _split_s3(uri)
    try:
        (s3 or S3Config()).client().head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # botocore's errors: a 404 answer, or no answer at all
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise DatasetError(f"cannot check dataset {uri}: {exc}") from exc
    return True


def ensure_iris(uri: str, s3: S3Config | None = None) -> bool:
    """Write iris to `uri` unless a dataset is already there; True if it wrote."""
    if exists(uri, s3):
        return False
    write_csv(iris_frame(), uri, s3)
    return True


def split_features(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, pd.Series]:
    """Features as float64 columns (the model's input schema) and the label column."""
    if target not in frame.columns:
        raise DatasetError(f"dataset has no target column {target!r}")
    features = frame.drop(columns=[target])
    if features.empty or len(features.columns) == 0:
        raise DatasetError("dataset has no feature columns")
    try:
        features = features.astype("float64")
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"feature columns must be numeric: {exc}") from exc
    return features, frame[target].astype(str)
