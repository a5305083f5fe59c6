"""The OpenAPI document builds without a running platform, and documents the SSE feed."""

from __future__ import annotations

from mlops.main import create_app
from mlops.settings.platform import PlatformSettings


def test_the_openapi_document_builds_and_documents_the_alert_stream() -> None:
    document = create_app(PlatformSettings()).openapi()

    webhook = document["paths"]["/webhook"]["get"]["responses"]
    assert "text/event-stream" in webhook["200"]["content"]
    assert "503" in webhook
    assert {"/trigger_training", "/inference", "/webhook", "/get_metrics"} <= set(document["paths"])
