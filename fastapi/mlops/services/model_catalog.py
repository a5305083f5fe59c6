"""The models the platform knows: their definitions, created, changed and archived by
people, checked before they are stored; and the default model, defined from the
settings on first start so an upgraded platform keeps what it had."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from mlops.clients.dataset_headers import DatasetHeaders, HeaderUnreadable
from mlops.clients.redis import ChampionMoves
from mlops.clients.redis.model_definitions import Created, ModelDefinitions
from mlops.contracts.model_definition import (
    DefinitionChange,
    Gate,
    ModelDefinition,
    ModelIdentity,
    ModelSpec,
    Task,
    default_gate,
)
from mlops.ml.data import DatasetLocationError, check_location, dataset_format
from mlops.ml.estimators import Family, InvalidField
from mlops.model_schemas import ModelCreate, ModelPatch
from mlops.settings.api import ApiSettings

log = logging.getLogger(__name__)


class UnknownModel(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no model {name!r}; known models: {', '.join(known) or 'none'}")


class ModelExists(Exception):
    pass


class TooManyModels(Exception):
    pass


class ModelInUse(Exception):
    """The model cannot be archived: something still uses it (the message says what)."""


class ModelCatalog:
    """Definitions, read through a cache of CACHE_SECONDS: every prediction names its
    model, and a change made through another API replica is seen that much later."""

    CACHE_SECONDS = 2.0

    def __init__(
        self,
        *,
        settings: ApiSettings,
        definitions: ModelDefinitions,
        moves: ChampionMoves,
        headers: DatasetHeaders,
    ) -> None:
        self._settings = settings
        self._definitions = definitions
        self._moves = moves
        self._headers = headers
        self._cached: dict[str, tuple[float, ModelDefinition]] = {}

    @property
    def default_name(self) -> str:
        return self._settings.default_model

    async def ensure_default(self) -> ModelDefinition:
        """The default model, defined from the settings if it is not yet: it takes over
        the registered model, experiment and champion history of the settings, so what
        the platform served before models had names it serves still."""
        settings = self._settings
        found = await self._definitions.get(settings.default_model)
        if found is not None:
            return found
        definition = default_definition(settings, datetime.now(UTC))
        created = await self._definitions.create(definition, limit=settings.max_models + 1)
        if created is Created.CREATED:
            log.info("defined the default model %s from the settings", definition.name)
            if await self._moves.take_over(settings.model_name, definition.name):
                log.info(
                    "the champion history of %s is now %s's", settings.model_name, definition.name
                )
        return await self._definitions.get(settings.default_model) or definition

    async def get(self, name: str | None) -> ModelDefinition:
        """The model named so (the default one for None); UnknownModel lists the known."""
        wanted = name or self._settings.default_model
        cached = self._cached.get(wanted)
        if cached is not None and time.monotonic() - cached[0] < self.CACHE_SECONDS:
            return cached[1]
        try:
            found = await self._definitions.get(wanted)
        except (RedisError, OSError):
            if cached is None:
                raise
            # Redis is down: the definition last read stands (predictions go on), read
            # again once per CACHE_SECONDS.
            self._cached[wanted] = (time.monotonic(), cached[1])
            return cached[1]
        if found is None and wanted == self._settings.default_model:
            found = await self.ensure_default()
        if found is None:
            self._cached.pop(wanted, None)
            known = {*await self._definitions.names(), self._settings.default_model}
            raise UnknownModel(wanted, sorted(known))
        self._cached[wanted] = (time.monotonic(), found)
        return found

    async def including_archived(self, name: str | None) -> ModelDefinition | None:
        """The model named so (default: the default model), archived or not; None if
        there never was one (a job of an archived model still ends in its own model)."""
        try:
            return await self.get(name)
        except UnknownModel:
            return await self._definitions.archived(name or self._settings.default_model)

    async def all(self) -> list[ModelDefinition]:
        await self.get(None)  # the default model is always listed
        return await self._definitions.all()

    async def create(self, request: ModelCreate) -> ModelDefinition:
        """A new model; MLOPS_MAX_MODELS counts the default model, defined first."""
        await self.ensure_default()
        gate = request.gate or _default_gate(self._settings, request.task)
        spec = self.checked(request.model_dump(exclude={"name"}) | {"gate": gate.model_dump()})
        await self._check_dataset(spec)
        name = request.name
        identity = ModelIdentity(name=name, registered_model=name, experiment=name)
        definition = ModelDefinition.new(identity, spec, datetime.now(UTC))
        created = await self._definitions.create(definition, limit=self._settings.max_models)
        if created is Created.NAME_TAKEN:
            raise ModelExists(f"a model named {request.name!r} exists; change it with PATCH")
        if created is Created.LIMIT_REACHED:
            raise TooManyModels(
                f"{self._settings.max_models} models exist (MLOPS_MAX_MODELS); archive one first"
            )
        log.info("model %s created (%s, %s)", definition.name, spec.task, spec.estimator)
        return definition

    async def change(self, name: str, patch: ModelPatch, *, by: str) -> ModelDefinition:
        """The definition with the patch's fields; a change is recorded with what it was."""
        current = await self.get(name)
        given = patch.model_dump(exclude_unset=True)
        fields = current.spec.model_dump() | given
        if "task" in given and "gate" not in given:
            fields["gate"] = _default_gate(self._settings, fields["task"]).model_dump()
        spec = self.checked(fields)
        before, after = current.spec.model_dump(mode="json"), spec.model_dump(mode="json")
        changed = {k: (before[k], after[k]) for k in after if before[k] != after[k]}
        if not changed:
            return current
        if {"dataset_uri", "target_column"} & changed.keys():
            await self._check_dataset(spec)
        definition = current.changed(spec, datetime.now(UTC))
        change = DefinitionChange(at=definition.updated_at, by=by, fields=changed)
        await self._definitions.replace(definition, change)
        self._cached.pop(name, None)
        log.info("model %s changed: %s", name, ", ".join(changed))
        return definition

    async def archive(self, name: str, users: list[str]) -> ModelDefinition:
        """Take the model out of use; `users` are the schedules and watches on it."""
        definition = await self.get(name)
        if name == self._settings.default_model:
            raise ModelInUse(
                f"{name} is the default model (MLOPS_DEFAULT_MODEL): make another the default first"
            )
        if users:
            raise ModelInUse(
                f"{name} is used by {len(users)} schedule(s) and watch(es): {', '.join(users)}; "
                "remove them first"
            )
        archived = definition.model_copy(update={"archived_at": datetime.now(UTC)})
        await self._definitions.archive(archived)
        self._cached.pop(name, None)
        log.info("model %s archived", name)
        return archived

    async def changes(self, name: str, limit: int) -> list[DefinitionChange]:
        await self.get(name)
        return await self._definitions.changes(name, limit)

    def checked(self, fields: dict[str, Any]) -> ModelSpec:
        """A spec from fields, every one checked; InvalidField names the first wrong one."""
        try:
            spec = ModelSpec.model_validate(fields)
        except ValidationError as exc:
            error = exc.errors()[0]
            message = error["msg"].removeprefix("Value error, ")
            loc = tuple(str(part) for part in error["loc"]) or _named_by(message)
            raise InvalidField(loc, message) from None
        try:
            check_location(spec.dataset_uri, self._settings.dataset_locations)
        except DatasetLocationError as exc:
            raise InvalidField(("dataset_uri",), str(exc)) from exc
        checked_hyperparameters(self._settings, spec, spec.hyperparameters)
        return spec

    async def _check_dataset(self, spec: ModelSpec) -> None:
        """The dataset is there and has the target (its rows are the job's to check)."""
        uri = spec.dataset_uri
        try:
            columns = await self._headers.columns(uri, dataset_format(uri))
        except HeaderUnreadable as exc:
            raise InvalidField(("dataset_uri",), f"{exc}: put the dataset there first") from exc
        if spec.target_column not in columns:
            raise InvalidField(
                ("target_column",),
                f"{uri} has no column {spec.target_column!r}; its columns: {', '.join(columns)}",
            )


def checked_hyperparameters(
    settings: ApiSettings, spec: ModelSpec, hyperparameters: dict[str, Any]
) -> dict[str, Any]:
    """Hyperparameters checked against the model's estimator and the platform's caps
    (HyperparameterError names the key)."""
    return Family.of(spec).check(
        hyperparameters,
        max_size=settings.max_n_estimators,
        max_depth_limit=settings.max_depth_limit,
    )


def default_definition(settings: ApiSettings, now: datetime) -> ModelDefinition:
    """The default model as the settings define it: today's dataset, a random forest
    classifier, the accuracy gate, the registered model and experiment of the settings."""
    spec = ModelSpec(
        dataset_uri=settings.dataset_uri,
        target_column=settings.target_column,
        task=Task.CLASSIFICATION,
        gate=_default_gate(settings, Task.CLASSIFICATION),
    )
    identity = ModelIdentity(
        name=settings.default_model,
        registered_model=settings.model_name,
        experiment=settings.experiment_name,
    )
    return ModelDefinition.new(identity, spec, now)


def _default_gate(settings: ApiSettings, task: Task) -> Gate:
    """The gate of a model defined without one, from the platform's settings."""
    return default_gate(
        task,
        accuracy_threshold=settings.accuracy_threshold,
        tolerance=settings.promotion_tolerance,
    )


def _named_by(message: str) -> tuple[str, ...]:
    """The field a whole-spec check's message is about (ModelSpec's own wording)."""
    if message.startswith("retraining"):
        return ("retraining", "on_live_below_gate")
    return ("estimator",) if message.startswith("estimator") else ("gate", "metric")
