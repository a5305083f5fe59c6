"""Dataset loading from a local path and from S3.

MinIO cannot be installed on the test machines, so the S3 test runs moto's standalone
server: a separate process that speaks the S3 protocol over HTTP, reached through the
same boto3 code path that reads from MinIO in the cluster.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import free_port, s3_client

from mlops.ml import data, seed


@pytest.fixture()
def s3_endpoint(s3_url: str) -> str:
    """The session's S3 server (conftest.s3_url), which already has the `mlops` bucket."""
    return s3_url


def _client(endpoint: str):
    return s3_client(endpoint)


def test_iris_has_the_platform_columns() -> None:
    frame = data.iris_frame()

    assert list(frame.columns) == [*data.IRIS_FEATURES, data.IRIS_TARGET]
    assert len(frame) == 150
    assert set(frame[data.IRIS_TARGET]) == {"Setosa", "Versicolor", "Virginica"}


def test_dataset_round_trips_through_a_local_file(tmp_path: Path) -> None:
    uri = str(tmp_path / "nested" / "iris.csv")

    data.write_csv(data.iris_frame(), uri)

    assert data.read_dataset(uri).equals(data.iris_frame())


def test_dataset_loads_from_s3(s3_endpoint: str) -> None:
    config = data.S3Config(s3_endpoint, "test", "test")
    data.write_csv(data.iris_frame(), "s3://mlops/data/iris.csv", config)

    frame = data.read_dataset("s3://mlops/data/iris.csv", config)

    assert frame.equals(data.iris_frame())


def test_missing_s3_object_is_a_dataset_error(s3_endpoint: str) -> None:
    config = data.S3Config(s3_endpoint, "test", "test")

    with pytest.raises(data.DatasetError, match="s3://mlops/absent.csv"):
        data.read_dataset("s3://mlops/absent.csv", config)


def test_missing_local_file_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(data.DatasetError, match="nothing.csv"):
        data.read_dataset(str(tmp_path / "nothing.csv"))


def test_missing_target_column_is_a_dataset_error() -> None:
    with pytest.raises(data.DatasetError, match="variety"):
        data.split_features(data.iris_frame().drop(columns=["variety"]), "variety")


def test_seeding_writes_iris_once_and_never_overwrites_a_dataset(s3_endpoint: str) -> None:
    client = _client(s3_endpoint)
    client.create_bucket(Bucket="seeded")
    env = {
        **os.environ,
        "MLOPS_DATASET_URI": "s3://seeded/datasets/iris.csv",
        "MLOPS_S3_ENDPOINT_URL": s3_endpoint,
        "MLOPS_S3_ACCESS_KEY_ID": "test",
        "MLOPS_S3_SECRET_ACCESS_KEY": "test",
    }

    def seed() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlops.ml.seed"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = seed()
    client.put_object(Bucket="seeded", Key="datasets/iris.csv", Body=b"a,variety\n1,x\n")
    second = seed()

    assert first.returncode == 0 and "wrote iris to s3://seeded" in first.stderr
    assert second.returncode == 0 and "already at" in second.stderr
    body = client.get_object(Bucket="seeded", Key="datasets/iris.csv")["Body"].read()
    assert body == b"a,variety\n1,x\n"


def test_seeding_takes_the_uploaders_key_from_stdin(s3_endpoint: str, tmp_path: Path) -> None:
    """As init.sh runs it: no key in the environment (Ray's own is read-only), the
    uploader's on stdin. Without it boto3 finds no credentials at all and fails."""
    _client(s3_endpoint).create_bucket(Bucket="uploads")
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MLOPS_S3_"))
    }
    env |= {
        "MLOPS_DATASET_URI": "s3://uploads/datasets/iris.csv",
        "MLOPS_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
    }

    def seed(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "mlops.ml.seed", *args]
        return subprocess.run(
            command, env=env, input=stdin, capture_output=True, text=True, timeout=120
        )

    without = seed()
    with_key = seed("--s3-credentials-from-stdin", stdin="datasets\nuploader-key\n")

    assert without.returncode == 1
    assert with_key.returncode == 0, with_key.stderr
    assert "wrote iris to s3://uploads/datasets/iris.csv" in with_key.stderr


def test_seeding_refuses_a_key_of_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("datasets\n"))

    with pytest.raises(data.DatasetError, match="expected two lines on stdin"):
        seed.settings_for_seeding(credentials_from_stdin=True)


def test_seeding_an_unreachable_store_fails_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    unreachable = data.S3Config(f"http://127.0.0.1:{free_port()}", "test", "test")

    with pytest.raises(data.DatasetError, match="cannot check dataset s3://nowhere/iris.csv"):
        data.ensure_iris("s3://nowhere/iris.csv", unreachable)


@pytest.mark.parametrize(
    ("uri", "allowed", "expected"),
    [
        ("{d}/iris.csv", ["{d}"], "{d}/iris.csv"),
        ("file://{d}/x/iris.parquet", ["{d}"], "{d}/x/iris.parquet"),
        ("s3://mlops/datasets/wine.pq", ["s3://mlops/datasets/"], "s3://mlops/datasets/wine.pq"),
    ],
)
def test_a_dataset_inside_the_allowed_locations_is_accepted(
    tmp_path: Path, uri: str, allowed: list[str], expected: str
) -> None:
    d = str(tmp_path.resolve())

    checked = data.check_location(uri.format(d=d), [a.format(d=d) for a in allowed])

    assert checked == expected.format(d=d)


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("{d}/../outside.csv", "outside the allowed"),
        ("{d}/link/secret.csv", "outside the allowed"),  # a symlink out of the folder
        ("s3://mlops/datasets/../mlflow/x.csv", "not an s3://bucket/key"),
        ("s3://mlops/datasetsX/x.csv", "outside the allowed"),
        ("{d}/iris.xlsx", "unsupported dataset format"),
        ("{d}/iris", "unsupported dataset format"),
    ],
)
def test_a_dataset_outside_the_allowed_locations_is_refused(
    tmp_path: Path, uri: str, words: str
) -> None:
    d = tmp_path / "data"
    d.mkdir()
    (d / "link").symlink_to("/etc")

    with pytest.raises(data.DatasetLocationError, match=words):
        data.check_location(uri.format(d=d), [str(d), "s3://mlops/datasets/"])


def test_parquet_and_csv_read_the_same_frame(tmp_path: Path) -> None:
    frame = data.iris_frame()
    frame.to_parquet(tmp_path / "iris.parquet")
    frame.to_csv(tmp_path / "iris.csv", index=False)

    assert data.read_dataset(str(tmp_path / "iris.parquet")).equals(frame)
    assert data.read_dataset(str(tmp_path / "iris.csv")).equals(frame)


def test_a_dataset_over_the_byte_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "iris.csv"
    data.iris_frame().to_csv(path, index=False)

    size = f"{path.stat().st_size:,}"

    with pytest.raises(data.DatasetError, match=f"is {size} bytes; the limit is 1,024"):
        data.read_dataset(str(path), cap=data.Limits(max_bytes=1024))


def test_an_s3_object_over_the_byte_cap_is_refused_from_its_head(s3_endpoint: str) -> None:
    config = data.S3Config(s3_endpoint, "test", "test")
    data.write_csv(data.iris_frame(), "s3://mlops/data/big.csv", config)

    with pytest.raises(data.DatasetError, match="MLOPS_DATASET_MAX_BYTES"):
        data.read_dataset("s3://mlops/data/big.csv", config, data.Limits(max_bytes=1024))


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_rows_and_columns_over_their_caps_are_refused(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"iris.{suffix}"
    frame = data.iris_frame()
    frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path)

    with pytest.raises(data.DatasetError, match="has more than 100 rows"):
        data.read_dataset(str(path), cap=data.Limits(max_rows=100))
    with pytest.raises(data.DatasetError, match="has 5 columns; the limit is 4"):
        data.read_dataset(str(path), cap=data.Limits(max_columns=4))


def test_a_small_parquet_file_that_unpacks_past_the_cap_is_refused(tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "zeros.parquet"
    pd.DataFrame({"x": [0.0] * 200_000, "y": ["a"] * 200_000}).to_parquet(path)
    small = path.stat().st_size

    with pytest.raises(data.DatasetError, match="unpacks to about 3,200,000 bytes"):
        data.read_dataset(str(path), cap=data.Limits(max_bytes=small * 10, max_rows=10**6))
