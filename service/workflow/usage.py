"""Rule usage: how often each rule decided in a window, the rules never reached, and the codes
requests came with that no rule decided (what the committee should write next).

Counted in the database from the audit records' indexed columns (kind, created_at, rule_id,
outcome, code, matched_by); no patient data is read.
"""

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select

from service import clock
from service.decide.request import RequestError, known_arguments
from service.rulebook import icd10
from service.rulebook.model import OUTCOMES, Rulebook
from service.store.tables import audit_records

DEFAULT_DAYS = 90
UNMATCHED_SHOWN = 50
# A diagnosis the request named exactly: an approximate (fuzzy) match only proposes a code, so
# "no rule matched" counts only these.
_EXACT = ("code", "synonym", "text")
USAGE_ARGUMENTS = ("since", "until")


@dataclass(frozen=True)
class Window:
    """Days from `since` (None: from the first record) to before `until` (None: up to now)."""

    since: datetime.date | None = None
    until: datetime.date | None = None

    def conditions(self) -> list:
        """The window as conditions on the audit records' creation time."""
        created = audit_records.c.created_at
        return [
            *([created >= clock.day_start(self.since)] if self.since else []),
            *([created < clock.day_start(self.until)] if self.until else []),
        ]


def window_from(args: Mapping[str, str], today: datetime.date) -> Window:
    """`since` and `until` (YYYY-MM-DD, until exclusive) as the API and console give them; the
    last DEFAULT_DAYS days by default."""
    known_arguments(args, USAGE_ARGUMENTS, "a usage argument")
    dates = {}
    for name in USAGE_ARGUMENTS:
        value = (args.get(name) or "").strip()
        if value:
            try:
                dates[name] = datetime.date.fromisoformat(value)
            except ValueError:
                raise RequestError(
                    "invalid_value", f"{name} must be a date, YYYY-MM-DD, found {value[:20]!r}", name
                ) from None
    since = dates.get("since", today - datetime.timedelta(days=DEFAULT_DAYS))
    until = dates.get("until")
    if until is not None and until <= since:
        raise RequestError("conflicting_values", "until must be after since", "until")
    return Window(since, until)


def rule_usage(instance, rulebook: Rulebook, window: Window) -> dict:
    """Decisions per rule of `rulebook` (by outcome), its rules never reached, rules of earlier
    versions that decided in the window, and the codes no rule decided, most frequent first."""
    a = audit_records.c
    conditions = [a.kind == "decision", *window.conditions()]
    with instance.sql_engine.connect() as connection:
        by_rule = connection.execute(
            select(a.rule_id, a.outcome, func.count())
            .where(*conditions, a.rule_id.is_not(None))
            .group_by(a.rule_id, a.outcome)
        ).all()
        unmatched = connection.execute(
            select(a.code, func.count().label("requests"))
            .where(*conditions, a.rule_id.is_(None), a.code.is_not(None), a.matched_by.in_(_EXACT))
            .group_by(a.code)
            .order_by(func.count().desc(), a.code)
            .limit(UNMATCHED_SHOWN)
        ).all()
        unclear = connection.execute(
            select(func.count()).where(*conditions, a.rule_id.is_(None), a.code.is_(None))
        ).scalar_one()
    counts: dict[str, dict[str, int]] = {}
    for rule_id, outcome, count in by_rule:
        counts.setdefault(rule_id, {})[outcome] = count
    known = {rule.id for rule in rulebook.rules}
    return {
        "rulebook": {"name": rulebook.name, "version": rulebook.version},
        "since": window.since.isoformat() if window.since else None,
        "until": window.until.isoformat() if window.until else None,
        "rules": [
            {
                "id": rule.id,
                "title": rule.title,
                "decisions": sum(counts.get(rule.id, {}).values()),
                "outcomes": {o: counts[rule.id][o] for o in OUTCOMES if o in counts.get(rule.id, {})},
            }
            for rule in rulebook.rules
        ],
        "never_reached": [rule.id for rule in rulebook.rules if rule.id not in counts],
        "other_versions_rules": sorted(
            (
                {"id": rule_id, "decisions": sum(outcomes.values())}
                for rule_id, outcomes in counts.items()
                if rule_id not in known
            ),
            key=lambda item: item["id"],
        ),
        "no_rule": [
            {"code": icd10.dotted(code), "description": icd10.description(code), "requests": requests}
            for code, requests in unmatched
        ],
        "unclear_diagnosis": unclear,
    }
