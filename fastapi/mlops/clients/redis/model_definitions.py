"""The models' definitions: one JSON value per model in a hash (those in use) and
another (archived ones), and per model a stream of how its definition changed."""

from __future__ import annotations

import logging
from enum import IntEnum

from pydantic import ValidationError
from redis.asyncio import Redis

from mlops.clients.redis.keys import (
    ARCHIVED_MODELS,
    MODEL_CHANGES_LENGTH,
    MODEL_DEFINITIONS,
    model_changes_key,
)
from mlops.clients.redis.records import newest_records
from mlops.clients.redis.scripts import CREATE_MODEL
from mlops.contracts.model_definition import DefinitionChange, ModelDefinition

log = logging.getLogger(__name__)


class MalformedDefinition(ValueError):
    """A stored definition that does not parse (written by hand, or by another release)."""


class Created(IntEnum):
    LIMIT_REACHED = -1
    NAME_TAKEN = 0
    CREATED = 1


class ModelDefinitions:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._create = redis.register_script(CREATE_MODEL)

    async def create(self, definition: ModelDefinition, *, limit: int) -> Created:
        """Store a new model, or take up an archived name again; never overwrites a
        model in use, nor goes past `limit` models in use."""
        keys = [MODEL_DEFINITIONS, ARCHIVED_MODELS]
        return Created(
            await self._create(keys=keys, args=[limit, definition.name, definition.to_json()])
        )

    async def get(self, name: str) -> ModelDefinition | None:
        """The model in use named so, or None; MalformedDefinition if it does not parse."""
        return _parsed(name, await self._redis.hget(MODEL_DEFINITIONS, name))

    async def archived(self, name: str) -> ModelDefinition | None:
        return _parsed(name, await self._redis.hget(ARCHIVED_MODELS, name))

    async def all(self) -> list[ModelDefinition]:
        """Every model in use, by name; one that does not parse is left out, logged."""
        found = []
        for name, text in sorted((await self._redis.hgetall(MODEL_DEFINITIONS)).items()):
            try:
                found.append(ModelDefinition.from_json(text))
            except ValidationError as exc:
                log.warning("left out the model %s: its definition does not parse: %s", name, exc)
        return found

    async def names(self) -> list[str]:
        return sorted(await self._redis.hkeys(MODEL_DEFINITIONS))

    async def replace(self, definition: ModelDefinition, change: DefinitionChange) -> None:
        """Store a changed definition and record the change, in one step."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(MODEL_DEFINITIONS, definition.name, definition.to_json())
            pipe.xadd(
                model_changes_key(definition.name),
                {"change": change.model_dump_json()},
                maxlen=MODEL_CHANGES_LENGTH,
            )
            await pipe.execute()

    async def archive(self, definition: ModelDefinition) -> None:
        """Move a model out of use (its versions stay in MLflow)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(MODEL_DEFINITIONS, definition.name)
            pipe.hset(ARCHIVED_MODELS, definition.name, definition.to_json())
            await pipe.execute()

    async def changes(self, name: str, limit: int = 100) -> list[DefinitionChange]:
        """How the model's definition changed, newest first."""
        key = model_changes_key(name)
        return await newest_records(self._redis, key, "change", DefinitionChange, limit)


def _parsed(name: str, text: str | None) -> ModelDefinition | None:
    if text is None:
        return None
    try:
        return ModelDefinition.from_json(text)
    except ValidationError as exc:
        first = str(exc).splitlines()[0]
        raise MalformedDefinition(
            f"the stored definition of {name} does not parse: {first}"
        ) from None
