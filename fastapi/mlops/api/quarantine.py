"""Records the background loops moved aside, for someone to mend or delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from mlops.api.deps import UNAUTHORIZED, QuarantineDep
from mlops.schemas import QuarantineList

router = APIRouter(tags=["health"], responses=UNAUTHORIZED)


@router.get("/quarantine", response_model=QuarantineList)
async def list_quarantined(
    quarantine: QuarantineDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> QuarantineList:
    """Job records and schedules that did not parse, or whose data made their loop
    fail, newest first, with the reason and the fields as they were in Redis. The
    loops go on without them."""
    return QuarantineList(records=await quarantine.entries(limit))
