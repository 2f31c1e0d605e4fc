"""The instance's supply phase: set by an admin with a reason, kept with its history, followed by
every service process on the database.

Each setting is one row of `supply_phases`, written by the audit store with the `supply_phase`
record that sets it and bound to it (a row forged or edited in the database fails its binding, is
never followed, and verify names it). The newest intact row is the phase; none: the rulebook's
default phase. Each process re-reads it at most once a second (CHECK_EVERY_SECONDS), as it
follows rulebook activations, so every instance on the database follows a change within a second;
the process that set it follows at once. Which phases exist is the rulebook's business: the caller
checks the phase against it before setting it.
"""

import logging
import threading
import time
import uuid

from sqlalchemy import select

from service import clock
from service.store.tables import supply_phases

log = logging.getLogger(__name__)
CHECK_EVERY_SECONDS = 1.0
_NEWEST = 20  # rows read to find the newest intact one (more broken rows than this: none is followed)
COLUMNS = ("id", "set_at", "phase", "reason", "set_by", "rulebook_version", "rulebook_digest", "record_id")


def set_phase(audit, phase: str, reason: str, by: str, rulebook_version: str, rulebook_digest: str) -> dict:
    """Record `phase` as the instance's supply phase, on the record; returns the row as kept."""
    row = {
        "id": str(uuid.uuid4()),
        "set_at": clock.utc_now(),
        "phase": phase,
        "reason": reason,
        "set_by": by,
        "rulebook_version": rulebook_version,
        "rulebook_digest": rulebook_digest,
    }
    record = audit.append(
        "supply_phase",
        {"supply_phase": row},
        bind=[(supply_phases, row)],
        created_at=row["set_at"],
        requester=by,
        status=201,
        rulebook_version=rulebook_version,
        rulebook_digest=rulebook_digest,
    )
    return {**row, "record_id": record["id"], "intact": True}


def _view(audit, row) -> dict:
    values = dict(row._mapping)
    return {**{name: values[name] for name in COLUMNS}, "intact": audit.row_intact(supply_phases, values)}


def history(engine, audit, limit: int = 100) -> list[dict]:
    """The settings, newest first, each saying whether it is intact (as the service wrote it)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(supply_phases).order_by(supply_phases.c.set_at.desc(), supply_phases.c.id.desc()).limit(limit)
        ).all()
    return [_view(audit, row) for row in rows]


def newest_intact(engine, audit) -> dict | None:
    """The phase in force: the newest setting whose row is intact; None when there is none."""
    for setting in history(engine, audit, _NEWEST):
        if setting["intact"]:
            return setting
        log.error("supply phase setting %s failed its integrity check and is not followed", setting["id"])
    return None


class PhaseFollower:
    """The supply phase one process follows: re-read from the database at most once a second."""

    def __init__(self, engine, audit):
        self._engine, self._audit = engine, audit
        self._lock = threading.Lock()
        self._current: dict | None = None
        self._read_at: float | None = None

    def current(self) -> dict | None:
        """The setting in force (None: never set), at most CHECK_EVERY_SECONDS old. Raises the
        database's error when it cannot be read and no reading is fresh enough."""
        with self._lock:
            if self._read_at is not None and time.monotonic() - self._read_at < CHECK_EVERY_SECONDS:
                return self._current
        setting = newest_intact(self._engine, self._audit)
        with self._lock:
            self._current, self._read_at = setting, time.monotonic()
        return setting

    def follow(self, setting: dict):
        """This process set the phase: follow it at once."""
        with self._lock:
            self._current, self._read_at = setting, time.monotonic()
