"""The stop switch: an admin suspends a model and every worker of every replica refuses to predict
with it (503 ``suspended``, with the reason) until it is resumed.

The state is one row per model in ``model_suspension``, changed in the transaction that writes its
audit row (``model_promotion``, actions ``suspend`` / ``resume``), so the switch and its audit never
disagree. Workers learn it from the database, not from the registry (the switch must work while the
registry is down): read once at start-up, before the reloader starts (so before the worker can
report ready), then every model poll interval; the worker that made the change applies it at once.
The prediction path reads one attribute (``ModelSlot.suspension``).

Repeating a switch is idempotent: suspending a suspended model (or resuming a running one) changes
nothing, keeps the original reason, time and actor, answers the current state and is audited with
the detail "unchanged" (who tried what stays on record).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import RowMapping, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.dialect import lock_until_commit
from app.db.session import read_only, unit_of_work
from app.db.tables import ModelSuspension
from app.errors import InvalidInput, ModelNotFound
from app.lifecycle.audit import AuditEntry, PromotionAudit
from app.metrics import ServiceMetrics
from app.serving.codecs.hygiene import text_problem
from app.serving.model_slot import ModelSlot, Suspension

log = logging.getLogger(__name__)

_UNAVAILABLE = "the database is unavailable, so the stop switch cannot change; retry shortly"
MAX_REASON = 500  # the API's bound too (app.api.schemas.suspension)
UNKNOWN = ("the stop switch's state could not be read from the database yet; "
           "no prediction until it is")


@dataclass(frozen=True)
class SwitchState:
    """The stored state of one model's switch (the last change, or never switched)."""

    model_name: str
    suspended: bool
    reason: str | None = None
    changed_by: str | None = None
    changed_at: datetime | None = None

    @property
    def suspension(self) -> Suspension | None:
        if not self.suspended:
            return None
        return Suspension(reason=self.reason or "", since=self.changed_at or datetime.now(UTC),
                          by=self.changed_by or "")


@dataclass(frozen=True)
class SwitchResult:
    state: SwitchState
    changed: bool  # False: the model already was in the state asked for


class StopSwitch:
    """Suspend, resume and follow the switch of the model this service serves."""

    def __init__(
        self, *, engine: AsyncEngine, audit: PromotionAudit, model_name: str, interval_s: float,
        slot: ModelSlot | None = None, metrics: ServiceMetrics | None = None,
    ) -> None:
        """``slot``: this worker's serving slot, which the switch stops (None in the CLI: the
        serving workers follow within their poll interval)."""
        self.engine = engine
        self.audit = audit
        self.model_name = model_name
        self.interval_s = interval_s
        self.slot = slot
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None
        # Bumped by each change made here: a read that started before it is stale, not applied.
        self._changes = 0

    # -- reads -----------------------------------------------------------------------------------
    async def state(self, name: str) -> SwitchState:
        self._check_name(name)
        async with read_only(self.engine, "the stop switch's state cannot be read; retry shortly") as conn:
            row = (await conn.execute(
                select(ModelSuspension.__table__).where(ModelSuspension.model_name == name)
            )).mappings().first()
        return _state_of(name, row)

    # -- changes ---------------------------------------------------------------------------------
    async def suspend(self, name: str, *, actor: str, reason: str) -> SwitchResult:
        return await self._switch(name, actor=actor, reason=reason, suspend=True)

    async def resume(self, name: str, *, actor: str, reason: str | None) -> SwitchResult:
        return await self._switch(name, actor=actor, reason=reason, suspend=False)

    async def _switch(self, name: str, *, actor: str, reason: str | None, suspend: bool) -> SwitchResult:
        self._check_name(name)
        _check_reason(reason, required=suspend)
        action = "suspend" if suspend else "resume"
        serving = self.slot.current if self.slot is not None else None
        now = datetime.now(UTC)
        async with unit_of_work(self.engine, _UNAVAILABLE) as conn:
            # Changes of one model's switch run one at a time across replicas (Postgres; SQLite
            # has a single writer).
            await lock_until_commit(conn, f"model_suspension:{name}")
            row = (await conn.execute(
                select(ModelSuspension.__table__).where(ModelSuspension.model_name == name)
            )).mappings().first()
            before = _state_of(name, row)
            changed = before.suspended != suspend
            if changed:
                values = {"suspended": suspend, "reason": reason, "changed_by": actor,
                          "changed_at": now}
                if row is None:
                    await conn.execute(insert(ModelSuspension).values(model_name=name, **values))
                else:
                    await conn.execute(update(ModelSuspension)
                                       .where(ModelSuspension.model_name == name).values(**values))
                after = SwitchState(name, suspend, reason, actor, now)
                detail = "suspended: predictions refused" if suspend else "resumed: predictions served"
            else:
                after = before
                detail = f"unchanged: already {'suspended' if suspend else 'serving'}"
            await self.audit.record_on(conn, AuditEntry(
                name, actor, action, serving.version if serving is not None else None, None, reason,
                "success", detail))
        log.warning("stop switch: %s %s by %s (%s)", name, action, actor, detail)
        self._changes += 1
        self._apply(after)  # this worker at once; the others within their poll interval
        return SwitchResult(after, changed)

    # -- following the switch (serving workers) --------------------------------------------------
    async def start(self) -> None:
        """Read the state before the worker can report ready, then follow it every interval."""
        await self.refresh(startup=True)
        self._task = asyncio.create_task(self._run(), name="stop-switch-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def refresh(self, *, startup: bool = False) -> None:
        """Apply the stored state. When it cannot be read, the last known state stays; at start-up
        there is none, so the worker refuses (fails closed) until a read succeeds."""
        changes = self._changes
        try:
            state = await self.state(self.model_name)
        except Exception as exc:  # an outage or a schema without the table: keep what is known
            known = self.slot is None or self.slot.suspension is None or self.slot.suspension.confirmed
            if startup or not known:
                log.error("stop switch: state unreadable (%s); refusing predictions until it is "
                          "read", type(exc).__name__)
                if self.slot is not None:
                    self.slot.suspension = Suspension(UNKNOWN, datetime.now(UTC), "startup",
                                                      confirmed=False)
            else:
                log.warning("stop switch: state unreadable (%s); keeping the last known state",
                            type(exc).__name__)
            return
        if changes == self._changes:  # else a change made here meanwhile is newer than this read
            self._apply(state)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.refresh()

    def _apply(self, state: SwitchState) -> None:
        if self.metrics is not None:
            self.metrics.model_suspended.labels(state.model_name).set(1 if state.suspended else 0)
        if self.slot is None or state.model_name != self.model_name:
            return
        before, after = self.slot.suspension, state.suspension
        if (before is None) != (after is None) or (before is not None and not before.confirmed):
            log.warning("stop switch: %s is %s", state.model_name,
                        f"suspended by {state.changed_by}" if after else "serving")
        self.slot.suspension = after

    def _check_name(self, name: str) -> None:
        if name != self.model_name:
            raise ModelNotFound(f"this service only serves {self.model_name!r}")


def _check_reason(reason: str | None, *, required: bool) -> None:
    """The API's schema says the same; the CLI gets its reason here (every refused caller sees it)."""
    if reason is None and not required:
        return
    problem = "must not be blank" if not (reason or "").strip() else text_problem(reason or "", MAX_REASON)
    if problem is not None:
        raise InvalidInput(f"the reason {problem}",
                           [{"field": "reason", "type": "invalid", "message": problem}])


def _state_of(name: str, row: RowMapping | None) -> SwitchState:
    if row is None:
        return SwitchState(name, suspended=False)
    return SwitchState(name, bool(row["suspended"]), row["reason"], row["changed_by"],
                       row["changed_at"])
