"""Replay: every recorded decision request in a window decided again on a candidate rulebook,
through the same decision path, writing nothing; what would change, before it is live.

Each request is read as it was recorded (the patient identifier only as its hash, which the
rules never read) and decided as of the day it was decided, so an observation's freshness is
judged as it was then. Facts a request did not give stay missing: a rulebook that now asks for
them sends the request to review, and the report counts those. A continuation is replayed by its
rules alone: its benefit judgement compared measurements that are not in the request.

`continuations` looks ahead instead: each active authorisation's next continuation, decided today
on the rulebook served and on the candidate as the service would decide it (its request, and its
benefit judged on the measurements recorded so far), and those that would be decided differently.
"""

import datetime
from collections import Counter
from collections.abc import Callable

from sqlalchemy import exists, select
from sqlalchemy.orm import aliased

from service import clock
from service.decide import continuation
from service.decide.formulary import Formulary
from service.decide.request import RequestError, parse_request
from service.rulebook.model import POSITIVE_OUTCOMES
from service.store.audit import Filters
from service.store.tables import authorisations
from service.workflow import authorisations as granted
from service.workflow.usage import Window

CHANGES_SHOWN = 1000


def replay(instance, candidate: Formulary, window: Window, progress: Callable[[int], None] | None = None) -> dict:
    """The outcome change matrix (old outcome -> new outcome -> count), each changed decision (the
    first CHANGES_SHOWN), the positive decisions that would become not_supported, the requests
    the candidate cannot read, and how many newly miss facts they did not give."""
    filters = Filters(
        since=clock.day_start(window.since) if window.since else None,
        until=clock.day_start(window.until) if window.until else None,
    )
    matrix: dict[str, Counter] = {}
    changed: list[dict] = []
    refused_positive: list[dict] = []
    unreadable: list[dict] = []
    newly_missing = 0
    replayed = 0
    changed_total = 0
    for record in instance.audit.stream(filters):
        if progress is not None:
            progress(1)
        if record["kind"] != "decision":
            continue
        body = record["body"]
        request, old = body.get("request"), body.get("decision") or {}
        if not isinstance(request, dict) or "outcome" not in old:
            continue
        replayed += 1
        day = datetime.date.fromisoformat(record["created_at"][:10])
        try:
            new = candidate.decide(_as_sent(request), as_of=day).to_dict()
        except RequestError as error:
            unreadable.append({"decision_id": record["decision_id"], "field": error.field, "message": error.message})
            continue
        matrix.setdefault(old["outcome"], Counter())[new["outcome"]] += 1
        old_rule = (old.get("rule") or {}).get("id")
        new_rule = (new.get("rule") or {}).get("id")
        if (old["outcome"], old_rule) == (new["outcome"], new_rule):
            continue
        changed_total += 1
        if new["missing"] and not old.get("missing"):
            newly_missing += 1
        item = {
            "decision_id": record["decision_id"],
            "decided_at": record["created_at"],
            "code": (new.get("diagnosis") or {}).get("code") or (old.get("diagnosis") or {}).get("code"),
            "old": {"outcome": old["outcome"], "rule": old_rule},
            "new": {"outcome": new["outcome"], "rule": new_rule, "missing": new["missing"]},
        }
        if len(changed) < CHANGES_SHOWN:
            changed.append(item)
        if old["outcome"] in POSITIVE_OUTCOMES and new["outcome"] == "not_supported":
            refused_positive.append(item)
    rulebook = candidate.rulebook
    return {
        "candidate": {"name": rulebook.name, "version": rulebook.version, "digest": rulebook.digest},
        "since": window.since.isoformat() if window.since else None,
        "until": window.until.isoformat() if window.until else None,
        "replayed": replayed,
        "matrix": {old: dict(sorted(new.items())) for old, new in sorted(matrix.items())},
        "changed": changed,
        "changed_total": changed_total,
        "positive_to_not_supported": refused_positive,
        "newly_missing_facts": newly_missing,
        "unreadable": unreadable,
    }


def continuations(instance, serving: Formulary, candidate: Formulary) -> dict:
    """The active authorisations (valid today or later, not continued yet) whose next continuation,
    decided today, would have another outcome or rule on the candidate: {considered, changed
    (the first CHANGES_SHOWN), changed_total, unreadable}."""
    today = clock.utc_today()
    c = authorisations.c
    later = aliased(authorisations)
    with instance.sql_engine.connect() as connection:
        active = connection.execute(
            select(c.id, c.code, c.valid_until)
            .where(c.valid_until >= today.isoformat(), ~exists().where(later.c.previous_id == c.id))
            .order_by(c.valid_until, c.id)
        ).all()
    changed: list[dict] = []
    unreadable: list[dict] = []
    changed_total = 0
    for row in active:
        try:
            old, new = (_next_continuation(instance, formulary, row.id, today) for formulary in (serving, candidate))
        except (RequestError, granted.Tampered, granted.AlreadyContinued, granted.NoSuchAuthorisation) as error:
            unreadable.append({"authorisation_id": row.id, "message": getattr(error, "message", str(error))})
            continue
        if (old["outcome"], old["rule"]) == (new["outcome"], new["rule"]):
            continue
        changed_total += 1
        if len(changed) < CHANGES_SHOWN:
            changed.append(
                {"authorisation_id": row.id, "code": row.code, "valid_until": row.valid_until, "old": old, "new": new}
            )
    return {"considered": len(active), "changed": changed, "changed_total": changed_total, "unreadable": unreadable}


def _next_continuation(instance, formulary: Formulary, authorisation_id: str, today: datetime.date) -> dict:
    """How a continuation of the authorisation asked today would be decided on `formulary`."""
    payload, continuing = granted.continuation_request(instance, formulary.vocabulary, authorisation_id, {})
    decision = continuation.judge(
        formulary.rulebook,
        formulary.decide_request(parse_request(payload, formulary.vocabulary)),
        authorisation_id,
        continuing.baseline,
        continuing.current,
        today,
    )
    return {
        "outcome": decision.outcome,
        "rule": (decision.rule or {}).get("id"),
        "benefit": (decision.continuation or {}).get("benefit"),
        "missing": list(decision.missing),
    }


def _as_sent(recorded: dict) -> dict:
    """A recorded request as the API takes it: the patient's identifier hash left out (the rules
    never read it, and the candidate must not see a field a request cannot send)."""
    patient = recorded.get("patient")
    if not isinstance(patient, dict) or "ref_hash" not in patient:
        return recorded
    return {**recorded, "patient": {k: v for k, v in patient.items() if k != "ref_hash"}}
