"""Dataset loading from a local path and from S3.

MinIO cannot be installed on the test machines, so the S3 test runs moto's standalone
server: a separate process that speaks the S3 protocol over HTTP, reached through the
same boto3 code path that reads from MinIO in the cluster.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from helpers import free_port, wait_for

from mlops.ml import data


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _s3_answers(endpoint), timeout=30, what="the S3 server")
        yield endpoint
    finally:
        server.terminate()
        server.wait(10)


def _s3_answers(endpoint: str) -> bool:
    try:
        _client(endpoint).list_buckets()
    except Exception:
        return False
    return True


def _client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )


def test_iris_has_the_platform_columns() -> None:
    frame = data.iris_frame()

    assert list(frame.columns) == [*data.IRIS_FEATURES, data.IRIS_TARGET]
    assert len(frame) == 150
    assert set(frame[data.IRIS_TARGET]) == {"Setosa", "Versicolor", "Virginica"}


def test_dataset_round_trips_through_a_local_file(tmp_path: Path) -> None:
    uri = str(tmp_path / "nested" / "iris.csv")

    data.write_csv(data.iris_frame(), uri)

    assert data.read_csv(uri).equals(data.iris_frame())


def test_dataset_loads_from_s3(s3_endpoint: str) -> None:
    _client(s3_endpoint).create_bucket(Bucket="mlops")
    config = data.S3Config(s3_endpoint, "test", "test")
    data.write_csv(data.iris_frame(), "s3://mlops/data/iris.csv", config)

    frame = data.read_csv("s3://mlops/data/iris.csv", config)

    assert frame.equals(data.iris_frame())


def test_missing_s3_object_is_a_dataset_error(s3_endpoint: str) -> None:
    config = data.S3Config(s3_endpoint, "test", "test")

    with pytest.raises(data.DatasetError, match="s3://mlops/absent.csv"):
        data.read_csv("s3://mlops/absent.csv", config)


def test_missing_local_file_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(data.DatasetError, match="nothing.csv"):
        data.read_csv(str(tmp_path / "nothing.csv"))


def test_missing_target_column_is_a_dataset_error() -> None:
    with pytest.raises(data.DatasetError, match="variety"):
        data.split_features(data.iris_frame().drop(columns=["variety"]), "variety")
