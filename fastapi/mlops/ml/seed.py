"""Put the iris dataset at MLOPS_DATASET_URI unless a dataset is already there.

config/init.sh runs it once in the Ray head pod (`python -m mlops.ml.seed`), after MinIO
and before the first training; running it again changes nothing.
"""

from __future__ import annotations

import logging
import sys

from mlops import logs
from mlops.ml import data
from mlops.settings import Settings

log = logging.getLogger("mlops.seed")


def main() -> int:
    logs.configure("console")
    settings = Settings()
    try:
        wrote = data.ensure_iris(settings.dataset_uri, data.s3_config(settings))
    except data.DatasetError as exc:
        log.error("%s", exc)
        return 1
    log.info("%s %s", "wrote iris to" if wrote else "a dataset is already at", settings.dataset_uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
