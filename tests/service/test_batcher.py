"""The API's coalescer of predictions, in-process, against an HTTP server that answers
as a Serve replica does (`mlops.contracts.serve`): a stand-in, so these edge cases run in
a second; the platform tier sends the same calls to real replicas.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from helpers import free_port, run_async

from mlops.contracts.predictions import Arm
from mlops.contracts.serve import MULTIPLEX_HEADER, RecordingCounts, ServedModel, ServeErrorCode
from mlops.services.batching import Recorded, ServeBatcher, ServeVerdict, TransientServeError

IRIS = ServedModel("iris")  # its champion
IRIS_3 = ServedModel("iris", "3")


class Replica:
    """Answers each group with one probability row per input row, or with the refusal
    set for its model; records the calls."""

    def __init__(self, *, hold: asyncio.Event | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.hold = hold
        self.answer: tuple[int, dict[str, Any]] | None = None  # for the whole call
        self.refusals: dict[str, dict[str, Any]] = {}  # model id → its group's refusal
        self.recording: dict[str, Any] | None = None  # counts for the next reply

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append({**body, "header": request.headers.get(MULTIPLEX_HEADER)})
        if self.hold is not None:
            await self.hold.wait()
        if self.answer is not None:
            status, reply = self.answer
            return web.json_response(reply, status=status)
        answered: dict[str, Any] = {"groups": [self._answer(g) for g in body["groups"]]}
        if self.recording is not None:
            answered["recording"], self.recording = self.recording, None
        return web.json_response(answered)

    def _answer(self, group: dict[str, Any]) -> dict[str, Any]:
        if refusal := self.refusals.get(group["model"]):
            return refusal
        return {
            "version": ServedModel.parse(group["model"]).version or "1",
            "predictor": "onnx",
            "task": "classification",
            "classes": ["a", "b"],
            "outputs": [[row[0], 1 - row[0]] for row in group["rows"]],
        }


def _rows(call: dict[str, Any]) -> int:
    return sum(len(group["rows"]) for group in call["groups"])


async def _with_replica(
    replica: Replica,
    scenario: Callable[[ServeBatcher], Awaitable[Any]],
    on_recording: Callable[[RecordingCounts], None] | None = None,
) -> Any:
    app = web.Application()
    app.router.add_post("/", replica.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/"
            batcher = ServeBatcher(http, url, max_in_flight=1, on_recording=on_recording)
            try:
                return await scenario(batcher)
            finally:
                await batcher.aclose()
    finally:
        await runner.cleanup()


def test_requests_that_arrive_during_a_call_go_together_in_the_next() -> None:
    hold = asyncio.Event()
    replica = Replica(hold=hold)

    async def scenario(batcher: ServeBatcher) -> list[Any]:
        first = asyncio.ensure_future(batcher.predict([0.1], IRIS))
        while not replica.calls:  # the first call is in flight, held by the replica
            await asyncio.sleep(0.005)
        rest = [asyncio.ensure_future(batcher.predict([i / 10], IRIS)) for i in range(2, 6)]
        await asyncio.sleep(0.05)
        hold.set()
        return await asyncio.gather(first, *rest)

    replies = run_async(_with_replica(replica, scenario))

    assert [_rows(call) for call in replica.calls] == [1, 4]
    assert [reply["outputs"][0] for reply in replies] == [0.1, 0.2, 0.3, 0.4, 0.5]


def test_rows_of_several_models_share_a_call_a_group_per_model_and_width() -> None:
    # One Serve call per model made 20 models' batches a row or two each.
    hold = asyncio.Event()
    replica = Replica(hold=hold)

    async def scenario(batcher: ServeBatcher) -> list[Any]:
        first = asyncio.ensure_future(batcher.predict([0.9], IRIS))
        while not replica.calls:
            await asyncio.sleep(0.005)
        rest = [
            asyncio.ensure_future(batcher.predict(row, served))
            for row, served in (
                ([0.1, 0.2], IRIS_3),
                ([0.2], IRIS_3),
                ([0.3], IRIS),
                ([0.4], IRIS_3),
            )
        ]
        await asyncio.sleep(0.05)
        hold.set()
        return await asyncio.gather(first, *rest)

    replies = run_async(_with_replica(replica, scenario))

    assert len(replica.calls) == 2
    second = replica.calls[1]
    groups = [(g["model"], g["rows"]) for g in second["groups"]]
    assert groups == [("iris/3", [[0.2], [0.4]]), ("iris/3", [[0.1, 0.2]]), ("iris", [[0.3]])]
    assert second["header"] == "iris/3"  # the largest group's model routes the call
    assert [(r["version"], r["outputs"][0]) for r in replies] == [
        ("1", 0.9), ("3", 0.1), ("3", 0.2), ("1", 0.3), ("3", 0.4),
    ]  # fmt: skip


def test_rows_to_record_name_their_ids_and_arms_and_the_replicas_counts_come_back() -> None:
    hold = asyncio.Event()
    replica = Replica(hold=hold)
    told: list[RecordingCounts] = []

    async def scenario(batcher: ServeBatcher) -> None:
        first = asyncio.ensure_future(batcher.predict([0.9], IRIS))
        while not replica.calls:
            await asyncio.sleep(0.005)
        replica.recording = {"recorded": {"iris": 2}, "unrecorded": {"redis": 1}}
        rest = [
            asyncio.ensure_future(batcher.predict(row, served, recorded))
            for row, served, recorded in (
                ([0.1], IRIS_3, Recorded("iris", "p1", Arm.CANARY)),
                ([0.2], IRIS_3, Recorded("iris", "p2s", Arm.SHADOW)),
                ([0.3], IRIS_3, None),  # from an API that does not record
            )
        ]
        await asyncio.sleep(0.05)
        hold.set()
        await asyncio.gather(first, *rest)

    run_async(_with_replica(replica, scenario, on_recording=told.append))

    groups = replica.calls[1]["groups"]
    assert groups == [
        {
            "model": "iris/3",
            "rows": [[0.1], [0.2]],
            "record": {"model": "iris", "ids": ["p1", "p2s"], "arms": ["canary", "shadow"]},
        },
        {"model": "iris/3", "rows": [[0.3]]},
    ]
    assert "record" not in replica.calls[0]["groups"][0]
    assert told == [{"recorded": {"iris": 2}, "unrecorded": {"redis": 1}}]


def test_a_groups_refusal_is_its_own() -> None:
    replica = Replica()
    code = ServeErrorCode.NO_MODEL
    replica.refusals["wine"] = {"error": code, "detail": "no champion version of wine yet"}

    async def scenario(batcher: ServeBatcher) -> list[Any]:
        return await asyncio.gather(
            batcher.predict([0.1], ServedModel("wine")),
            batcher.predict([0.2], IRIS),
            return_exceptions=True,
        )

    wine, iris = run_async(_with_replica(replica, scenario))

    assert isinstance(wine, ServeVerdict)
    assert (wine.status, wine.detail) == (503, "no champion version of wine yet")
    assert iris["outputs"] == [0.2, 0.8]


def test_a_caller_that_gave_up_is_not_sent() -> None:
    hold = asyncio.Event()
    replica = Replica(hold=hold)

    async def scenario(batcher: ServeBatcher) -> None:
        first = asyncio.ensure_future(batcher.predict([0.9], IRIS))
        while not replica.calls:
            await asyncio.sleep(0.005)
        gave_up = asyncio.ensure_future(batcher.predict([0.1], IRIS))
        kept = asyncio.ensure_future(batcher.predict([0.2], IRIS))
        await asyncio.sleep(0.01)
        gave_up.cancel()
        hold.set()
        await asyncio.gather(first, kept)

    run_async(_with_replica(replica, scenario))

    assert [g["rows"] for g in replica.calls[1]["groups"]] == [[[0.2]]]


@pytest.mark.parametrize("code", list(ServeErrorCode))
def test_a_verdict_on_the_whole_call_reaches_the_caller_with_its_status(
    code: ServeErrorCode,
) -> None:
    replica = Replica()
    replica.answer = (code.status, {"error": code, "detail": f"because {code}"})

    async def scenario(batcher: ServeBatcher) -> Exception:
        with pytest.raises(ServeVerdict) as verdict:
            await batcher.predict([0.1], ServedModel("iris", "7"))
        return verdict.value

    verdict = run_async(_with_replica(replica, scenario))

    assert (verdict.status, verdict.detail) == (code.status, f"because {code}")


@pytest.mark.parametrize(
    "answer", [(502, {"error": ["not", "a", "code"]}), (503, {"detail": "a proxy's page"})]
)
def test_anything_else_is_transient(answer) -> None:
    replica = Replica()
    replica.answer = answer

    async def scenario(batcher: ServeBatcher) -> None:
        with pytest.raises(TransientServeError, match=f"Serve answered {answer[0]}"):
            await batcher.predict([0.1], IRIS)

    run_async(_with_replica(replica, scenario))


def test_serve_unreachable_is_transient_and_names_the_address() -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{free_port()}/"
            batcher = ServeBatcher(http, url)
            with pytest.raises(TransientServeError, match="not reachable"):
                await batcher.predict([0.1], IRIS)
            await batcher.aclose()

    run_async(scenario())
