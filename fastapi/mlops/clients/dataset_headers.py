"""The column names of datasets, read from their headers, for the checks the API makes
before it stores a model or submits a job (a training's dataset must have its model's
features): a CSV's first line or a Parquet file's footer, never the rows. On S3 these
are ranged reads of those bytes only."""

from __future__ import annotations

import asyncio
import functools
import io
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pandas as pd

# A CSV header longer than this is refused rather than read in pieces.
CSV_HEADER_BYTES = 1 << 16
_S3_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


class HeaderUnreadable(Exception):
    """The dataset is there but its header cannot be read (the message says why)."""


class DatasetMissing(HeaderUnreadable):
    """Nothing is at the dataset's location."""


class StorageUnavailable(Exception):
    """The dataset's storage (S3) did not answer, or the API has no key for it."""


class DatasetHeaders:
    def __init__(self, s3_client: Callable[[], Any]) -> None:
        """`s3_client` makes a boto3 S3 client (with timeouts someone can wait on); it is
        made once, on the first s3:// dataset."""
        self._s3 = functools.cache(s3_client)

    async def columns(self, uri: str, kind: str) -> list[str]:
        """The column names of the dataset at `uri`, of `kind` "csv" or "parquet".
        Raises DatasetMissing, HeaderUnreadable or StorageUnavailable."""
        return await asyncio.to_thread(self._columns, uri, kind)

    def _columns(self, uri: str, kind: str) -> list[str]:
        try:
            if uri.startswith("s3://"):
                source: io.BytesIO | str = self._s3_header(uri, kind)
            else:
                source = uri.removeprefix("file://")
            if kind == "parquet":
                return _parquet_columns(source)
            return [str(column) for column in pd.read_csv(source, nrows=0).columns]
        except HeaderUnreadable:
            raise
        except FileNotFoundError as exc:
            raise DatasetMissing(f"no dataset at {uri}") from exc
        except Exception as exc:  # boto, OS and parser errors
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in _S3_MISSING:
                raise DatasetMissing(f"no dataset at {uri}") from exc
            if "Credentials" in type(exc).__name__:  # botocore's NoCredentialsError & co
                raise StorageUnavailable(
                    f"the API has no S3 key to read {uri} with (MLOPS_S3_ACCESS_KEY_ID, "
                    f"MLOPS_S3_SECRET_ACCESS_KEY): {exc}"
                ) from exc
            if code is None and type(exc).__module__.startswith("botocore"):
                raise StorageUnavailable(f"cannot reach the storage of {uri}: {exc}") from exc
            raise HeaderUnreadable(f"cannot read the header of dataset {uri}: {exc}") from exc

    def _s3_header(self, uri: str, kind: str) -> io.BytesIO:
        """The bytes a header is parsed from: a CSV's first line, or a Parquet file's
        footer behind its magic number (all pyarrow reads for the schema)."""
        parsed = urlparse(uri)
        bucket, key = parsed.netloc, parsed.path.lstrip("/")

        def read(span: str) -> bytes:
            answer = self._s3().get_object(Bucket=bucket, Key=key, Range=f"bytes={span}")
            return answer["Body"].read()

        if kind == "parquet":
            length = int.from_bytes(read("-8")[:4], "little")
            return io.BytesIO(b"PAR1" + read(f"-{length + 8}"))
        head = read(f"0-{CSV_HEADER_BYTES - 1}")
        if b"\n" not in head and len(head) == CSV_HEADER_BYTES:
            raise HeaderUnreadable(
                f"dataset {uri}: its header is longer than {CSV_HEADER_BYTES:,} bytes"
            )
        return io.BytesIO(head.split(b"\n", 1)[0])


def _parquet_columns(source: io.BytesIO | str) -> list[str]:
    """The schema's columns but an index pandas stored as columns."""
    import pyarrow.parquet as pq  # imported here: most datasets are CSV

    schema = pq.ParquetFile(source).schema_arrow
    stored_index = (schema.pandas_metadata or {}).get("index_columns", [])
    return [name for name in schema.names if name not in stored_index]
