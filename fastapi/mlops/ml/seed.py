"""Put the iris dataset at MLOPS_DATASET_URI unless a dataset is already there.

config/init.sh runs it once in the Ray head pod (`python -m mlops.ml.seed`), after MinIO
and before the first training; running it again changes nothing. Ray's own S3 key may
only read datasets, so init.sh passes the uploader's key with `--s3-credentials-from-stdin`
(two lines: access key id, secret key), which keeps it off every command line.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import SecretStr

from mlops import logs
from mlops.ml import data
from mlops.settings.training import TrainingSettings

log = logging.getLogger("mlops.seed")


def settings_for_seeding(*, credentials_from_stdin: bool) -> TrainingSettings:
    settings = TrainingSettings()
    if credentials_from_stdin:
        lines = sys.stdin.read().splitlines()
        if len(lines) < 2 or not lines[0] or not lines[1]:
            raise data.DatasetError("expected two lines on stdin: access key id, secret key")
        settings.s3_access_key_id = lines[0]
        settings.s3_secret_access_key = SecretStr(lines[1])
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops.ml.seed", description=__doc__)
    parser.add_argument(
        "--s3-credentials-from-stdin",
        action="store_true",
        help="read the S3 access key id and secret key (one per line) from stdin",
    )
    args = parser.parse_args(argv)
    logs.configure("console")
    try:
        settings = settings_for_seeding(credentials_from_stdin=args.s3_credentials_from_stdin)
        wrote = data.ensure_iris(settings.dataset_uri, data.s3_config(settings))
    except data.DatasetError as exc:
        log.error("%s", exc)
        return 1
    log.info("%s %s", "wrote iris to" if wrote else "a dataset is already at", settings.dataset_uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
