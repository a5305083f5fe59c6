"""The registry as people use it, per model: every version, moving the champion by hand
(promote, roll back) with a reason, and the history of every move.

Rolling back undoes the last promotion: the history is replayed as a stack (each
promotion pushes its version, each rollback pops one), so rolling back twice goes two
promotions back, not back and forth.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from mlops.clients.mlflow_registry import MlflowRegistry, TaggedVersion
from mlops.clients.redis import AlertStream, ChampionMoves
from mlops.contracts.alerts import AlertKind
from mlops.contracts.model_definition import ModelDefinition
from mlops.contracts.version_card import VersionCard
from mlops.ml import provenance
from mlops.ml.provenance import ForeignVersion
from mlops.model_schemas import ChampionSummary
from mlops.schemas import ChampionMove, ModelList, ModelVersionInfo
from mlops.settings.api import ApiSettings

log = logging.getLogger(__name__)


class UnknownVersion(LookupError):
    """No such version of the model."""


__all__ = ["ChampionConflict", "ForeignVersion", "Models", "UnknownVersion"]


class ChampionConflict(Exception):
    """The move asked for cannot be made (already the champion, nothing to go back to)."""


class Models:
    def __init__(
        self,
        *,
        settings: ApiSettings,
        registry: MlflowRegistry,
        history: ChampionMoves,
        alerts: AlertStream,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._history = history
        self._alerts = alerts

    async def versions(self, model: ModelDefinition) -> ModelList:
        name = model.registered_model
        versions = await self._registry.versions(name)
        aliases = await self._registry.aliases(name)
        champion = next(
            (v for v, names in aliases.items() if self._settings.champion_alias in names), None
        )
        key = self._settings.signing_key()
        return ModelList(
            model=model.name,
            champion_version=champion,
            versions=[
                _info(v, aliases.get(v.version, []), _why_foreign(key, name, v)) for v in versions
            ],
        )

    async def history(self, model: ModelDefinition, limit: int) -> list[ChampionMove]:
        return await self._history.moves(model.name, limit)

    async def champion(self, model: ModelDefinition) -> ChampionSummary | None:
        """The model's champion: its version, its score on the gate's metric, when trained."""
        name, metric = model.registered_model, model.spec.gate.metric
        found = await self._registry.aliased(name, self._settings.champion_alias)
        if found is None:
            return None
        card = VersionCard.read(found.tags)
        score = card.scores.get(metric) if card else None
        return ChampionSummary(
            version=found.version, metric=metric, score=score, trained_at=found.created_at
        )

    async def promote(
        self, model: ModelDefinition, version: str, *, reason: str, by: str = "api"
    ) -> ChampionMove:
        name, alias = model.registered_model, self._settings.champion_alias
        found = await self._registry.version(name, version)
        if found is None:
            raise UnknownVersion(f"{model.name} has no version {version!r}")
        if why := _why_foreign(self._settings.signing_key(), name, found):
            raise ForeignVersion(f"{why}: only versions the platform trained can be promoted")
        current = await self._registry.alias_version(name, alias)
        if current == version:
            raise ChampionConflict(f"version {version} is already the {alias}")
        return await self._move(model, "promote", current, version, reason, by)

    async def rollback(self, model: ModelDefinition, *, reason: str) -> ChampionMove:
        name, alias = model.registered_model, self._settings.champion_alias
        current = await self._registry.alias_version(name, alias)
        stack = _champions(await self._history.moves(model.name))
        if current is None:
            raise ChampionConflict(f"there is no {alias} to roll back")
        if not stack or stack[-1] != current:
            raise ChampionConflict(
                f"version {current} became {alias} outside the platform (no recorded move): "
                "promote the version you want instead"
            )
        if len(stack) < 2:
            raise ChampionConflict(f"version {current} is the first {alias}: none to go back to")
        return await self._move(model, "rollback", current, stack[-2], reason, "api")

    async def _move(
        self,
        model: ModelDefinition,
        action: str,
        current: str | None,
        target: str,
        reason: str,
        by: str,
    ) -> ChampionMove:
        settings = self._settings
        await self._registry.set_alias(model.registered_model, settings.champion_alias, target)
        move = ChampionMove.model_validate(
            {
                "model": model.name,
                "action": action,
                "from_version": current,
                "to_version": target,
                "at": datetime.now(UTC),
                "by": by,
                "reason": reason,
            }
        )
        await self._history.record(model.name, move)
        verb = "promoted" if action == "promote" else "rolled back"
        was = f" from version {current}" if current else ""
        await self._alerts.publish(
            "warning",
            f"Champion {verb} {'by hand' if by == 'api' else f'by {by}'}{was} to version "
            f"{target} of {model.name}: {reason}",
            kind=AlertKind.CHAMPION,
            data=move.model_dump(mode="json"),
        )
        log.info("%s champion %s%s to version %s: %s", model.name, verb, was, target, reason)
        return move


def _champions(moves_newest_first: list[ChampionMove]) -> list[str]:
    """The stack of champions that the recorded moves leave, oldest at the bottom."""
    stack: list[str] = []
    for move in reversed(moves_newest_first):
        if move.action == "promote":
            stack.append(move.to_version)
        elif stack:
            stack.pop()
            if not stack or stack[-1] != move.to_version:
                stack.append(move.to_version)
    return stack


def _why_foreign(key: bytes | None, model: str, version: TaggedVersion) -> str | None:
    return provenance.why_foreign(
        key, model=model, version=version.version, run_id=version.run_id, found=version.tags
    )


def _info(version: TaggedVersion, aliases: list[str], foreign: str | None) -> ModelVersionInfo:
    """A version as listed; one whose tags make no card (registered by hand) shows
    what MLflow knows of it, and why it is foreign."""
    card = VersionCard.read(version.tags)
    return ModelVersionInfo(
        version=version.version,
        created_at=version.created_at,
        scores=card.scores if card else {},
        accuracy=card.accuracy if card else None,
        f1_macro=card.f1_macro if card else None,
        job_id=card.job_id if card else None,
        aliases=sorted(aliases),
        promotion=card.promotion if card else None,
        promotion_reason=card.promotion_reason if card else None,
        features=card.features if card else [],
        classes=card.classes if card else [],
        foreign=foreign,
    )
