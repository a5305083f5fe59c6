"""Datasets: where they may come from, reading them (CSV or Parquet, a local path or an
s3:// URI), and what a dataset must hold to train on.

The policy, in one place (README, "Bring your own dataset"):
- every column but the target is a feature and must be numeric (the /inference contract
  is a list of floats);
- rows without a label are dropped; missing feature values are filled by the pipeline
  with the training median (`model.build_pipeline`), so serving fills them the same way;
- a feature column with no value at all, fewer than two classes, or too few rows to hold
  out a test set with every class fails the job with a message naming the problem;
- a target that looks made for the other task (`looks_like`: text or a few whole numbers
  are classes, other numbers a quantity) fails it too, saying which task it looks like.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pandas as pd

from mlops.contracts.model_definition import Task

if TYPE_CHECKING:
    from mlops.settings.training import TrainingSettings

IRIS_FEATURES = ["sepal.length", "sepal.width", "petal.length", "petal.width"]
IRIS_TARGET = "variety"


@dataclass(frozen=True)
class S3Config:
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None

    def client(self, timeout: float | None = None):
        """A boto3 client; `timeout` bounds each connection and read (one retry) for
        callers someone waits on, instead of boto's minutes."""
        import boto3  # imported here: only s3:// datasets need it
        from botocore.config import Config

        config = None
        if timeout is not None:
            config = Config(
                connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2}
            )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=config,
        )


@dataclass(frozen=True)
class Limits:
    """How large a dataset may be: what is read (bytes) and what it expands to."""

    max_bytes: int = 256 * 1024 * 1024
    max_rows: int = 5_000_000
    max_columns: int = 1_000


def limits(settings: TrainingSettings) -> Limits:
    return Limits(
        settings.dataset_max_bytes, settings.dataset_max_rows, settings.dataset_max_columns
    )


def s3_config(settings: TrainingSettings) -> S3Config:
    secret = settings.s3_secret_access_key
    return S3Config(
        endpoint_url=settings.s3_endpoint_url,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret else None,
    )


class DatasetError(Exception):
    """The dataset is missing, unreadable, or cannot be trained on (the message says why)."""


class DatasetLocationError(ValueError):
    """A dataset URI the platform may not read (outside the allowed locations, or a
    format it does not read); raised before anything is submitted."""


FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}

# Below this, a held-out fifth cannot hold every class with any meaning.
MIN_ROWS = 10
# A numeric target with at most this many distinct whole numbers is classes.
CLASSES_AT_MOST = 20


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


def dataset_format(uri: str) -> str:
    """ "csv" or "parquet", from the URI's extension."""
    suffix = Path(urlparse(uri).path if uri.startswith("s3://") else uri).suffix.lower()
    if suffix not in FORMATS:
        raise DatasetLocationError(
            f"{uri!r}: unsupported dataset format {suffix or '(none)'!r};"
            f" use one of {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[suffix]


def check_location(uri: str, allowed: list[str]) -> str:
    """The URI, normalised, if it is a dataset the platform may read; else
    DatasetLocationError. Local paths are resolved (symlinks, `..`) before the check, so
    a request cannot read a file of the host outside the allowed folders."""
    dataset_format(uri)
    if uri.startswith("s3://"):
        bucket, key = _split_s3(uri) if urlparse(uri).netloc else ("", "")
        if not bucket or ".." in key.split("/"):
            raise DatasetLocationError(f"{uri!r} is not an s3://bucket/key URI")
        normalised = f"s3://{bucket}/{key}"
        inside = any(
            place.startswith("s3://") and normalised.startswith(place.rstrip("/") + "/")
            for place in allowed
        )
    elif "://" in uri and not uri.startswith("file://"):
        raise DatasetLocationError(f"{uri!r}: only local paths and s3:// URIs are read")
    else:
        path = Path(uri.removeprefix("file://")).expanduser()
        if not path.is_absolute():
            raise DatasetLocationError(f"{uri!r}: a local dataset path must be absolute")
        normalised = str(path.resolve())
        inside = any(
            not place.startswith("s3://") and Path(normalised).is_relative_to(Path(place).resolve())
            for place in allowed
        )
    if not inside:
        raise DatasetLocationError(
            f"{uri!r} is outside the allowed dataset locations ({', '.join(allowed)};"
            " MLOPS_DATASET_LOCATIONS)"
        )
    return normalised


def read_dataset(uri: str, s3: S3Config | None = None, cap: Limits = Limits()) -> pd.DataFrame:
    """Read a CSV or Parquet dataset from a local path, a file:// URI or an s3:// URI,
    within `cap`: its size is checked before it is read (stat, S3 HEAD), a Parquet
    file's rows, columns and unpacked size from its metadata, a CSV's columns from its
    header, and its rows while reading."""
    kind = dataset_format(uri)
    try:
        if uri.startswith("s3://"):
            bucket, key = _split_s3(uri)
            client = (s3 or S3Config()).client()
            _check_bytes(uri, client.head_object(Bucket=bucket, Key=key)["ContentLength"], cap)
            source: io.BytesIO | str = io.BytesIO(
                client.get_object(Bucket=bucket, Key=key)["Body"].read()
            )
        else:
            source = uri.removeprefix("file://")
            _check_bytes(uri, Path(source).stat().st_size, cap)
        if kind == "parquet":
            return _read_parquet(uri, source, cap)
        return _read_csv(uri, source, cap)
    except DatasetError:
        raise
    except Exception as exc:  # boto, OS and parser errors all mean "cannot read it"
        raise DatasetError(f"cannot read dataset {uri}: {exc}") from exc


def _check_bytes(uri: str, size: int, cap: Limits) -> None:
    if size > cap.max_bytes:
        raise DatasetError(
            f"dataset {uri} is {size:,} bytes; the limit is {cap.max_bytes:,}"
            " (MLOPS_DATASET_MAX_BYTES)"
        )


def _check_shape(uri: str, rows: int, columns: int, cap: Limits, *, counted: bool) -> None:
    """`counted`: `rows` is the whole count (Parquet's metadata), not a partial read."""
    if columns > cap.max_columns:
        raise DatasetError(
            f"dataset {uri} has {columns:,} columns; the limit is {cap.max_columns:,}"
            " (MLOPS_DATASET_MAX_COLUMNS)"
        )
    if rows > cap.max_rows:
        count = f"{rows:,}; " if counted else ""
        raise DatasetError(
            f"dataset {uri} has more than {cap.max_rows:,} rows ({count}MLOPS_DATASET_MAX_ROWS)"
        )


def _read_parquet(uri: str, source: io.BytesIO | str, cap: Limits) -> pd.DataFrame:
    """Its metadata first: a small compressed file can unpack to gigabytes (every value
    becomes at least eight bytes in the frame the job trains on)."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(source).metadata
    _check_shape(uri, metadata.num_rows, metadata.num_columns, cap, counted=True)
    encoded = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    unpacked = max(encoded, metadata.num_rows * metadata.num_columns * 8)
    if unpacked > cap.max_bytes:
        raise DatasetError(
            f"dataset {uri} unpacks to about {unpacked:,} bytes; the limit is "
            f"{cap.max_bytes:,} (MLOPS_DATASET_MAX_BYTES)"
        )
    if isinstance(source, io.BytesIO):
        source.seek(0)
    return pd.read_parquet(source)


def _read_csv(uri: str, source: io.BytesIO | str, cap: Limits) -> pd.DataFrame:
    header = pd.read_csv(source, nrows=0)
    _check_shape(uri, 0, len(header.columns), cap, counted=False)
    if isinstance(source, io.BytesIO):
        source.seek(0)
    frame = pd.read_csv(source, nrows=cap.max_rows + 1)
    _check_shape(uri, len(frame), len(frame.columns), cap, counted=False)
    return frame


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


def split_features(
    frame: pd.DataFrame, target: str, task: Task = Task.CLASSIFICATION
) -> tuple[pd.DataFrame, pd.Series]:
    """Features as float64 columns (the model's input schema) and the labels (class names
    as text, or numbers for regression), by the policy of this module's docstring;
    DatasetError names what is wrong."""
    if target not in frame.columns:
        columns = ", ".join(map(str, frame.columns[:20]))
        raise DatasetError(f"dataset has no target column {target!r} (its columns: {columns})")
    labelled = frame[frame[target].notna()]
    features = labelled.drop(columns=[target])
    if len(features.columns) == 0:
        raise DatasetError("dataset has no feature columns")
    not_numeric = [
        str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])
    ]
    if not_numeric:
        raise DatasetError(
            f"feature columns must be numeric; not numeric: {', '.join(not_numeric)}"
        )
    features = features.astype("float64")
    empty = [str(c) for c in features.columns if features[c].isna().all()]
    if empty:
        raise DatasetError(f"feature columns with no value at all: {', '.join(empty)}")
    _check_task(labelled[target], target, task)
    if task is Task.REGRESSION:
        return features, _regression_targets(labelled[target])
    return features, _classes(labelled[target], target)


def _classes(target_values: pd.Series, target: str) -> pd.Series:
    labels = target_values.astype(str)
    counts = labels.value_counts()
    if len(counts) < 2:
        raise DatasetError(
            f"target column {target!r} needs at least two classes; it has {len(counts)}"
        )
    if len(labels) < MIN_ROWS or counts.min() < 2:
        raise DatasetError(
            f"too few rows: {len(labels)} labelled, smallest class {counts.idxmin()!r} with"
            f" {counts.min()} (need at least {MIN_ROWS} rows and 2 of every class)"
        )
    return labels


def _regression_targets(target_values: pd.Series) -> pd.Series:
    if len(target_values) < MIN_ROWS:
        raise DatasetError(f"too few rows: {len(target_values)} labelled (need {MIN_ROWS})")
    return target_values.astype("float64")


def looks_like(target_values: pd.Series) -> tuple[Task, str]:
    """Which task a target column looks made for, and why in words.

    Text, or whole numbers with few distinct values (at most CLASSES_AT_MOST, or under
    5 % of the rows), are classes; other numbers are a quantity to regress.
    """
    distinct = target_values.nunique()
    examples = ", ".join(map(str, target_values.drop_duplicates().head(3)))
    if not pd.api.types.is_numeric_dtype(target_values):
        return Task.CLASSIFICATION, f"its values are text ({examples}, …)"
    whole = bool((target_values == target_values.round()).all())
    if whole and (distinct <= CLASSES_AT_MOST or distinct < 0.05 * len(target_values)):
        return Task.CLASSIFICATION, f"it has {distinct} distinct whole numbers ({examples}, …)"
    return Task.REGRESSION, f"it has {distinct} distinct numbers ({examples}, …)"


def _check_task(target_values: pd.Series, target: str, task: Task) -> None:
    seems, why = looks_like(target_values)
    if seems is not task:
        raise DatasetError(
            f"target column {target!r} looks like {seems}, not {task}: {why}; "
            f"make the model's task {seems}, or choose another target"
        )
