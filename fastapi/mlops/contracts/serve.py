"""What the API and the Serve replicas say to each other about a prediction.

Request: POST {"rows": [[5.1, 3.5, 1.4, 0.2]], "version": "3" | null}
Reply:   {"version": "3", "predictor": "onnx", "classes": [...], "probabilities": [[...]]}
Errors:  {"error": <ServeErrorCode>, "detail": "..."} with the code's HTTP status.
"""

from __future__ import annotations

from enum import StrEnum

# The largest feature value a replica takes: its models compute in float32 (ONNX).
FLOAT32_MAX = 3.4028234663852886e38


class ServeErrorCode(StrEnum):
    NO_MODEL = "no_model"  # no champion yet
    UNKNOWN_VERSION = "unknown_version"
    FOREIGN_VERSION = "foreign_version"  # not sealed by the platform: never loaded
    BAD_INPUT = "bad_input"
    LOAD_FAILED = "load_failed"  # the version exists but could not be loaded

    @property
    def status(self) -> int:
        """The HTTP status a replica answers with, and the API passes on."""
        return _STATUS[self]


_STATUS = {
    ServeErrorCode.NO_MODEL: 503,
    ServeErrorCode.UNKNOWN_VERSION: 404,
    ServeErrorCode.FOREIGN_VERSION: 409,
    ServeErrorCode.BAD_INPUT: 422,
    ServeErrorCode.LOAD_FAILED: 503,
}
