"""The floor of serving one row: the registered version's compiled (ONNX) form behind a
bare ASGI endpoint, in one process, with no framework, batching or second hop.

    MLOPS_FLOOR_MODEL=/path/model.onnx MLOPS_FLOOR_CLASSES='["a","b"]' \
        python -m uvicorn --app-dir bench --factory onnx_floor:create_app --port 9000

POST {"input_data": [...]} → {"label": ..., "probabilities": {...}}. bench/inference.py
starts it on the same version as ours and the peer, so the distance to it is a ratio.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlops.contracts.model_definition import Task
from mlops.ml.predictors import OnnxPredictor

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def create_app() -> ASGIApp:
    predictor = OnnxPredictor(
        Path(os.environ["MLOPS_FLOOR_MODEL"]).read_bytes(), Task.CLASSIFICATION
    )
    classes: list[str] = json.loads(os.environ["MLOPS_FLOOR_CLASSES"])

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":  # a health check
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        row = np.asarray([json.loads(body)["input_data"]], dtype=np.float32)
        probabilities = predictor.outputs(row)[0]
        best = int(np.argmax(probabilities))
        reply = {
            "label": classes[best],
            "probabilities": dict(zip(classes, map(float, probabilities), strict=True)),
        }
        start = {"type": "http.response.start", "status": 200,
                 "headers": [(b"content-type", b"application/json")]}  # fmt: skip
        await send(start)
        await send({"type": "http.response.body", "body": json.dumps(reply).encode()})

    return app
