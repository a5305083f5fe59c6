"""Reading a dataset's column names from its header alone, locally and from S3 (moto's
S3 server over HTTP, the boto3 path that reads MinIO in the cluster)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pandas as pd
import pytest
from helpers import free_port, s3_client

from mlops.clients.dataset_headers import (
    CSV_HEADER_BYTES,
    DatasetHeaders,
    DatasetMissing,
    HeaderUnreadable,
    StorageUnavailable,
)
from mlops.ml.data import S3Config

FRAME = pd.DataFrame({"a": [1.0, 2.0], "b b": [3, 4], "target": ["x", "y"]})


def _headers(endpoint: str) -> DatasetHeaders:
    return DatasetHeaders(lambda: S3Config(endpoint, "test", "test").client(timeout=2))


def _columns(headers: DatasetHeaders, uri: str, kind: str) -> list[str]:
    return asyncio.run(headers.columns(uri, kind))


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_columns_come_from_the_header_of_a_local_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"data.{kind}"
    if kind == "csv":
        FRAME.to_csv(path, index=False)
    else:
        FRAME.set_index("a").to_parquet(path)  # an index pandas stores as a column

    columns = _columns(_headers("http://127.0.0.1:1"), str(path), kind)

    assert columns == (["a", "b b", "target"] if kind == "csv" else ["b b", "target"])


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_columns_come_from_ranged_reads_of_an_s3_object(s3_url: str, kind: str) -> None:
    body = io.BytesIO()
    big = pd.concat([FRAME] * 50_000, ignore_index=True)  # megabytes, of which a header is read
    big.to_csv(body, index=False) if kind == "csv" else big.to_parquet(body)
    s3_client(s3_url).put_object(Bucket="mlops", Key=f"headers/big.{kind}", Body=body.getvalue())

    columns = _columns(_headers(s3_url), f"s3://mlops/headers/big.{kind}", kind)

    assert columns == ["a", "b b", "target"]


def test_a_missing_dataset_is_named(s3_url: str, tmp_path: Path) -> None:
    headers = _headers(s3_url)

    with pytest.raises(DatasetMissing, match="no dataset at s3://mlops/headers/absent.csv"):
        _columns(headers, "s3://mlops/headers/absent.csv", "csv")
    with pytest.raises(DatasetMissing, match="absent.parquet"):
        _columns(headers, str(tmp_path / "absent.parquet"), "parquet")


def test_a_header_too_long_or_a_file_that_is_not_parquet_is_unreadable(
    s3_url: str, tmp_path: Path
) -> None:
    client = s3_client(s3_url)
    client.put_object(Bucket="mlops", Key="headers/wide.csv", Body=b"x" * (CSV_HEADER_BYTES + 10))
    not_parquet = tmp_path / "text.parquet"
    not_parquet.write_text("a,b\n1,2\n")

    with pytest.raises(HeaderUnreadable, match="longer than 65,536 bytes"):
        _columns(_headers(s3_url), "s3://mlops/headers/wide.csv", "csv")
    with pytest.raises(HeaderUnreadable, match="cannot read the header"):
        _columns(_headers(s3_url), str(not_parquet), "parquet")


def test_storage_that_does_not_answer_is_unreachable_not_missing() -> None:
    closed = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(StorageUnavailable, match="cannot reach the storage"):
        _columns(_headers(closed), "s3://mlops/headers/any.csv", "csv")


def test_an_api_without_the_s3_secret_says_which_settings_to_give(s3_url: str) -> None:
    headers = DatasetHeaders(lambda: S3Config(s3_url, "api", None).client(timeout=2))

    with pytest.raises(StorageUnavailable, match="MLOPS_S3_SECRET_ACCESS_KEY"):
        _columns(headers, "s3://mlops/headers/any.csv", "csv")
