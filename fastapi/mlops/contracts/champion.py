"""A move of the champion alias, as the trainer, the API and the reconciler record it
in the champion history and every reader shows it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class ChampionMove(BaseModel):
    """One move of the champion alias."""

    model: str | None = Field(
        None,
        description="The model whose champion moved (absent from moves recorded "
        "before models had names: those are the default model's).",
    )
    action: Literal["promote", "rollback"]
    from_version: str | None = Field(description="The champion before the move.")
    to_version: str
    at: datetime
    by: str = Field(
        description="A training job id, `api` for a person's call, or `rollout` for a "
        "rollout's decision."
    )
    reason: str
