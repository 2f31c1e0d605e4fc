"""Supply phases: an admin sets the instance's phase (one the rulebook declares) with a reason,
decisions follow it (service/decide/supply.py), and the committee sees which active authorisations
each tier holds, so it knows what a phase would touch.

The phase is kept in the database (service/store/supply_phases.py), on the record, and every
service process on the database follows a change within a second.
"""

import datetime

from sqlalchemy import func, select

from service import clock
from service.decide import supply as phases
from service.decide.request import RequestError, visible
from service.rulebook.model import Rulebook
from service.store import supply_phases
from service.store.tables import authorisations
from service.workflow.cases import MAX_REASON, Conflict

NO_TIER = "none"  # how the tier count names authorisations whose rule has no tier or is not in the rulebook


class NoSupplyPhases(Conflict):
    """The rulebook served declares no supply phases, so none can be set."""

    code = "no_supply_phases"


def _read_setting(rulebook: Rulebook, body) -> tuple[str, str]:
    """The phase and reason of a POST /v1/supply body, checked against the rulebook's phases."""
    if rulebook.supply is None:
        raise NoSupplyPhases(
            f"rulebook {rulebook.version} declares no supply phases (supply: tiers and phases), so no phase can be set"
        )
    if not isinstance(body, dict):
        raise RequestError("wrong_type", "the body must be an object with phase and reason", "")
    for key in body:
        if key not in ("phase", "reason"):
            raise RequestError("unknown_field", f"{key} is not a known field (allowed: phase, reason)", key)
    declared = ", ".join(rulebook.supply.phases)
    phase = body.get("phase")
    if not isinstance(phase, str) or not phase.strip():
        raise RequestError("missing_field", f"phase is required: one of {declared}", "phase")
    if phase not in rulebook.supply.phases:
        raise RequestError(
            "unknown_value", f"phase must be one of {declared} (the rulebook's phases), found {phase[:40]!r}", "phase"
        )
    reason = body.get("reason")
    reason = visible(reason) if isinstance(reason, str) else ""
    if not reason:
        raise RequestError(
            "missing_field", "a reason is required (spaces and invisible characters do not count)", "reason"
        )
    if len(reason) > MAX_REASON:
        raise RequestError(
            "too_long", f"reason is {len(reason)} characters long; at most {MAX_REASON} are accepted", "reason"
        )
    return phase, reason


def set_phase(instance, rulebook: Rulebook, body, by: str) -> dict:
    """Set the instance's supply phase (POST /v1/supply), on the record; this process follows it
    at once, the others within a second. Returns the overview as GET /v1/supply answers it."""
    phase, reason = _read_setting(rulebook, body)
    setting = supply_phases.set_phase(instance.audit, phase, reason, by, rulebook.version, rulebook.digest)
    instance.supply_phase.follow(setting)
    return overview(instance, rulebook)


def overview(instance, rulebook: Rulebook, today: datetime.date | None = None) -> dict:
    """The phase in force with its reason, the rulebook's tiers and phases, the history of
    settings (newest first), and the active authorisations by tier."""
    history = supply_phases.history(instance.sql_engine, instance.audit)
    current = instance.supply_phase.current()
    supply = rulebook.supply
    phase = current["phase"] if current else (supply.default_phase if supply else None)
    return {
        "phase": phase,
        "shortage": phases.is_shortage(supply, phase),
        "declared": supply is not None and phase in supply.phases,
        "reason": current["reason"] if current else None,
        "set_at": current["set_at"] if current else None,
        "set_by": current["set_by"] if current else None,
        "default_phase": supply.default_phase if supply else None,
        "tiers": [{"tier": tier, "meaning": meaning} for tier, meaning in (supply.tiers if supply else {}).items()],
        "phases": [
            {"phase": p.id, "description": p.description, "tiers": dict(p.actions)}
            for p in (supply.phases.values() if supply else ())
        ],
        "source": supply.source if supply else None,
        "active_authorisations": tier_counts(instance, rulebook, phase, today),
        "history": history,
    }


def tier_counts(instance, rulebook: Rulebook, phase: str | None, today: datetime.date | None = None) -> list[dict]:
    """Authorisations valid today, by their rule's tier in the rulebook served (counted in the
    database by rule), each tier with what the phase in force does with it: what a phase touches."""
    day = (today or clock.utc_today()).isoformat()
    c = authorisations.c
    with instance.sql_engine.connect() as connection:
        rows = connection.execute(
            select(c.rule_id, func.count()).where(c.valid_from <= day, c.valid_until >= day).group_by(c.rule_id)
        ).all()
    supply = rulebook.supply
    order = list(supply.tiers) if supply else []
    counts = dict.fromkeys(order, 0)
    for rule_id, count in rows:
        rule = rulebook.rule(rule_id) if rule_id else None
        tier = rule.tier if rule is not None and rule.tier is not None else NO_TIER
        counts[tier] = counts.get(tier, 0) + count
    return [
        {
            "tier": tier,
            "authorisations": count,
            "action": phases.action_for(supply, phase, tier)
            if supply is not None and phase is not None and tier != NO_TIER
            else None,
        }
        for tier, count in counts.items()
    ]
