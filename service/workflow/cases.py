"""What a decision sets in motion: review cases and their resolutions, and the authorisations
they grant (service/workflow/authorisations.py).

- A needs_review decision opens a review case (or, re-decided with more facts, updates its case).
- An approved or off_label_with_evidence decision for an identified patient, or an approved
  review, grants an authorisation for that patient and diagnosis until a date: the rule's period
  (the rulebook's default otherwise) or the reviewer's `valid_days`. It carries the dosing profile
  and rulebook version it was granted under; a new rulebook applies at the next continuation.
- Every step is one audit record, committed in the same transaction as the rows it creates.
"""

import base64
import binascii
import datetime
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import bindparam, func, insert, select, tuple_, update

from service import clock
from service.decide import continuation, questionnaire, urgent
from service.decide import supply as supply_phase
from service.decide.formulary import Formulary
from service.decide.request import RequestError, known_arguments, parse_request, visible, whole_argument
from service.rulebook import icd10
from service.rulebook.model import POSITIVE_OUTCOMES
from service.store.tables import authorisations as authorisation_rows
from service.store.tables import review_cases, review_resolutions
from service.workflow import authorisations

RESOLUTIONS = ("approved", "denied", "more_information")
OPEN_STATUSES = ("open", "pending_information")
STATUSES = (*OPEN_STATUSES, "approved", "denied", "closed_by_rules")
MAX_REASON = 2000
# Built once: it runs inside the audit writer's transaction, where every microsecond holds the lock.
_INSERT_CASE = insert(review_cases)
# Built once, like the history read: every needs_review decision with a patient runs it twice.
_OPEN_CASE_TO_JOIN = (
    select(review_cases)
    .where(
        review_cases.c.patient_ref_hash == bindparam("patient_ref_hash"),
        review_cases.c.code == bindparam("code"),
        review_cases.c.requester == bindparam("requester"),
        review_cases.c.status.in_(OPEN_STATUSES),
    )
    .order_by(review_cases.c.opened_at, review_cases.c.id)
    .limit(1)
)
# Built once too: the statements a re-decided or joined case, and a continuation, run in the writer's transaction.
_JOIN_CASE = (
    update(review_cases)
    .where(review_cases.c.id == bindparam("case_id"), review_cases.c.status.in_(OPEN_STATUSES))
    .values(
        status=bindparam("new_status"),
        updated_at=bindparam("new_updated_at"),
        latest_decision_id=bindparam("new_latest_decision_id"),
        code=bindparam("new_code"),
        request=bindparam("new_request"),
        version=review_cases.c.version + 1,
        reason=func.coalesce(bindparam("new_reason", type_=review_cases.c.reason.type), review_cases.c.reason),
        due_at=func.coalesce(bindparam("new_due_at", type_=review_cases.c.due_at.type), review_cases.c.due_at),
    )
)
_UPDATE_CASE_AS_READ = _JOIN_CASE.where(review_cases.c.version == bindparam("read_version"))
_CONTINUED_BY = select(authorisation_rows.c.id).where(authorisation_rows.c.previous_id == bindparam("previous_id"))


class Conflict(Exception):
    """The request contradicts the case's state (e.g. resolving a closed case)."""

    code = "conflict"


class CaseChanged(Conflict):
    """The case changed between being read and the transition being applied (another resolution,
    added facts, a resubmission joining it): nothing of this request was applied or recorded."""

    code = "case_changed"


class NoSuchCase(Exception):
    """No such case."""


def sanitised(payload: dict, patient_hash: str | None) -> dict:
    """The request as recorded: the patient identifier replaced by its keyed hash."""
    patient = payload.get("patient")
    if not isinstance(patient, dict) or "ref" not in patient:
        return payload
    patient = {name: value for name, value in patient.items() if name != "ref"}
    patient["ref_hash"] = patient_hash
    return {**payload, "patient": patient}  # a new top level and patient; the rest is shared, never changed


def review_reason(decision: dict) -> str:
    """Why a decision needs review, as the queue filters it."""
    if (decision.get("continuation") or {}).get("benefit") == "not_shown":
        return "no_benefit"
    if (decision.get("supply") or {}).get("changed"):
        return "supply_phase"
    if decision["missing"]:
        return "missing_facts"
    if decision["candidates"]:
        return "unclear_diagnosis"
    return "no_rule" if decision["rule"] is None else "rule_review"


def record_decision(
    instance,
    formulary: Formulary,
    payload,
    requester: str,
    case: dict | None = None,
    continuing: authorisations.Continuing | None = None,
    origin: dict | None = None,
) -> dict:
    """Decide, then record the decision with the case or authorisation it creates, atomically.

    Returns the decision as the API answers it: the decision object plus its id, time, and the
    review case or authorisation it created. Raises RequestError for bad input.

    With `case` (the case as read, re-decided with added facts), the new decision is applied only
    if the case is still open and unchanged since it was read (its version), checked in the
    transaction that applies it; otherwise CaseChanged, and nothing is recorded. Without it, a
    needs_review decision from the same requester for the same patient and diagnosis as an open
    case joins that case (it becomes the case's latest decision) instead of opening another.

    With `continuing`, the decision is a continuation of that authorisation: kept only when the
    rule's review criteria find benefit (service/decide/continuation.py); a positive one grants
    the next authorisation, and one refused for no benefit opens a review case.

    `origin`, when given, says where the request came from other than this API (an EHR's CDS
    Hooks call: the hook, its instance, the client and user, the order) and is kept in the record.
    """
    request = parse_request(payload, formulary.vocabulary)
    decision = formulary.decide_request(request)
    rulebook = formulary.rulebook
    if case is not None:
        patient_hash = case["patient_ref_hash"]
    elif continuing is not None:
        patient_hash = continuing.previous["patient_ref_hash"]
    else:
        patient_hash = instance.audit.patient_hash(request.patient_ref)
    rule = rulebook.rule(decision.rule["id"]) if decision.rule else None
    if continuing is not None:
        decision = continuation.judge(
            rulebook, decision, continuing.previous["id"], continuing.baseline, continuing.current, clock.utc_today()
        )
    if rulebook.supply is not None:  # a shortage: the phase makes the decision more cautious, never less
        phase, why = phase_in_force(instance, rulebook)
        decision = supply_phase.in_phase(decision, rule, rulebook.supply, phase, why)
    code = decision.diagnosis.plain_code
    # A case decided again keeps its own urgency as it was; only a new request may ask for it.
    urgent_reason = request.urgent_reason if continuing is None and case is None else None
    looked_up = _history_lookup(rulebook, rule, urgent_reason) if continuing is None and patient_hash else None
    decided = decision

    def with_past(connection) -> tuple:
        """The decision with the patient's history applied, and the history it was decided with."""
        if looked_up is None:
            return decided, None
        past = authorisations.history(connection, patient_hash, *looked_up)
        now = _with_history(rulebook, decided, rule, past)
        return now, _Past(looked_up, past, held=now is not decided)

    if case is not None:
        with instance.sql_engine.connect() as connection:
            now, past = with_past(connection)
        return _record(
            instance, formulary, payload, requester, now, patient_hash, case, False, continuing, None, past, origin
        )

    def record_joining_an_open_case():
        now, past, joined = decided, None, None
        if looked_up is not None or (_opens_case(decided) and patient_hash and code):  # else no read at all
            with instance.sql_engine.connect() as connection:
                now, past = with_past(connection)
                if _opens_case(now) and patient_hash and code:
                    joined = _open_case_to_join(connection, requester, patient_hash, code)
        return _record(
            instance,
            formulary,
            payload,
            requester,
            now,
            patient_hash,
            joined,
            True,
            continuing,
            urgent_reason,
            past,
            origin,
        )

    try:
        return record_joining_an_open_case()
    except CaseChanged:  # the case it would join, or open, changed meanwhile: look again, once
        return record_joining_an_open_case()


def phase_in_force(instance, rulebook) -> tuple[str | None, str]:
    """The supply phase decisions are made in now and why it was set: (None, "") when it was never
    set or the rulebook declares no phases (decisions are then as the rules make them). Read from
    the database at most once a second (service/store/supply_phases.py)."""
    if rulebook.supply is None:
        return None, ""
    setting = instance.supply_phase.current()
    return (setting["phase"], setting["reason"]) if setting else (None, "")


@dataclass(frozen=True)
class _Past:
    """The patient's history a new request was decided with: how to read it again (`lookup`),
    what it was, and whether it sent the request to review (`held`)."""

    lookup: tuple
    history: authorisations.History
    held: bool


def _history_lookup(rulebook, rule, urgent_reason: str | None) -> tuple | None:
    """How to read the history a rule's decision depends on: (diagnosis, course period, how far back
    an authorisation to continue may have ended); None when it depends on none (most decisions:
    no read at all)."""
    if rule is None:
        return None
    maintenance = rule.outcome in POSITIVE_OUTCOMES and rulebook.is_maintenance(rule)
    if rule.courses is None and not maintenance and not (rule.urgent and urgent_reason):
        return None
    return (
        rule.diagnosis,
        rule.courses.per_days if rule.courses else None,
        rulebook.authorisation_days_for(rule, continuing=True),
    )


def _with_history(rulebook, decision, rule, past: "authorisations.History | None"):
    """The decision once the patient's history is applied: a course limit reached, or an
    authorisation to continue instead, sends it to review (service/decide/continuation.py)."""
    if past is None:
        return decision
    decision = continuation.limit_courses(decision, rule, past.courses_given)
    return continuation.continue_instead(decision, rule, rulebook, past.to_continue)


def _check_not_continued(connection, authorisation_id: str):
    """Each authorisation is continued once: checked in the writer's transaction, so two
    continuations racing cannot both grant one."""
    later = connection.execute(_CONTINUED_BY, {"previous_id": authorisation_id}).scalar()
    if later is not None:
        raise Conflict(f"authorisation {authorisation_id} is already continued by authorisation {later}")


def _opens_case(decision) -> bool:
    """needs_review opens a case; so does a continuation refused for no benefit, so that the
    treating clinician can argue the exception."""
    return decision.outcome == "needs_review" or (decision.continuation or {}).get("benefit") == "not_shown"


def _open_case_to_join(connection, requester: str, patient_hash: str, code: str) -> dict | None:
    """The open case a new request from this requester for this patient and diagnosis joins, if any."""
    row = connection.execute(
        _OPEN_CASE_TO_JOIN, {"patient_ref_hash": patient_hash, "code": code, "requester": requester}
    ).first()
    return None if row is None else dict(row._mapping)


def _changed(connection, case_id: str) -> CaseChanged:
    now = connection.execute(select(review_cases.c.status).where(review_cases.c.id == case_id)).scalar()
    return CaseChanged(
        f"case {case_id} changed while this request was being handled (it is now {now}); nothing was "
        "applied or recorded: read the case again and resend if it still applies"
    )


def _record(
    instance,
    formulary: Formulary,
    payload,
    requester: str,
    decision,
    patient_hash,
    case: dict | None,
    joins: bool,
    continuing: authorisations.Continuing | None = None,
    urgent_reason: str | None = None,
    past: _Past | None = None,
    origin: dict | None = None,
) -> dict:
    """Record a decision; `case` is the case it updates (as read), `joins` whether it is a new
    request joining it, `continuing` the authorisation a continuation continues, `urgent_reason`
    the reason an urgent request gave (the urgent pathway: service/decide/urgent.py), `past` the
    patient's history it was decided with (read again in the transaction: if it changed
    meanwhile, CaseChanged, and the caller decides again)."""
    audit = instance.audit
    code = decision.diagnosis.plain_code
    moment = clock.now()
    decided_at = clock.stamp(moment)
    decision_id = str(uuid.uuid4())
    rulebook = formulary.rulebook
    rule = rulebook.rule(decision.rule["id"]) if decision.rule else None
    diagnosis_id = formulary.terminology.diagnosis_of(code) if code else None
    case_id = (case["id"] if case else str(uuid.uuid4())) if _opens_case(decision) else None
    grant = None
    due_at = None
    why_not = None
    if urgent_reason is not None:
        identified = bool(patient_hash and code)
        why_not = urgent.why_not_provisional(
            rulebook,
            decision,
            rule,
            identified,
            bool(case and case.get("due_at")) or bool(past and past.history.provisional_active),
            bool(past and past.held),
        )
    if urgent_reason is not None and why_not is None:
        provisional = rulebook.authorisations.provisional
        assert provisional is not None and case_id is not None  # why_not_provisional checked both
        due_at = clock.stamp(moment + datetime.timedelta(hours=provisional.review_within_hours))
        grant = authorisations.grant(
            patient_hash,
            code,
            diagnosis_id,
            "provisional",
            rule,
            rulebook,
            (),
            provisional.days,
            decision_id=decision_id,
            case_id=case_id,
            one_course=True,
        )
    elif formulary.rulebook.grants_authorisation(decision.outcome) and patient_hash and code:
        grant = authorisations.grant(
            patient_hash,
            code,
            diagnosis_id,
            decision.outcome,
            rule,
            formulary.rulebook,
            decision.labelled_products if decision.outcome == "approved" else (),
            formulary.rulebook.authorisation_days_for(rule, continuing=continuing is not None),
            decision_id=decision_id,
            case_id=case["id"] if case else None,
            previous_id=continuing.previous["id"] if continuing else None,
        )
    response = {
        "decision_id": decision_id,
        "decided_at": decided_at,
        **decision.to_dict(),
        "review_case_id": case_id,
        "joined_case": case is not None and joins,
        "authorisation_id": grant["id"] if grant else None,
        "urgent": None
        if urgent_reason is None
        else {
            "provisional": due_at is not None,
            "why": why_not or f"a provisional authorisation for one course is given; the review is due by {due_at}",
            "review_due_at": due_at,
        },
    }
    recorded_request = sanitised(payload, patient_hash)
    if continuing is not None and patient_hash:  # the patient is the authorisation's: no identifier was sent
        recorded_request = {
            **recorded_request,
            "patient": {**(recorded_request.get("patient") or {}), "ref_hash": patient_hash},
        }
    reason = review_reason(response) if case_id is not None else None

    def effects(connection):
        if grant is not None and grant["previous_id"] is not None:
            _check_not_continued(connection, grant["previous_id"])
        if past is not None and authorisations.history(connection, patient_hash, *past.lookup) != past.history:
            raise CaseChanged("the patient's authorisations for this diagnosis changed while this request was decided")
        if case is not None:
            status = "open" if case_id is not None else "closed_by_rules"
            # Added facts apply to the case as read; a new request joins it as it is now, if still open.
            changed = connection.execute(
                _JOIN_CASE if joins else _UPDATE_CASE_AS_READ,
                {
                    "case_id": case["id"],
                    "read_version": case["version"],
                    "new_status": status,
                    "new_updated_at": decided_at,
                    "new_latest_decision_id": decision_id,
                    "new_code": code,
                    "new_request": json.dumps(recorded_request),
                    "new_reason": reason or None,  # none: the case keeps its reason, and its due time
                    "new_due_at": due_at or None,
                },
            )
            if changed.rowcount != 1:
                raise _changed(connection, case["id"])
        elif case_id is not None:
            if joins and patient_hash and code and _open_case_to_join(connection, requester, patient_hash, code):
                raise CaseChanged("an open case for this patient and diagnosis was opened meanwhile")
            connection.execute(
                _INSERT_CASE,
                dict(
                    id=case_id,
                    opened_at=decided_at,
                    updated_at=decided_at,
                    status="open",
                    requester=requester,
                    patient_ref_hash=patient_hash,
                    code=code,
                    opening_decision_id=decision_id,
                    latest_decision_id=decision_id,
                    request=json.dumps(recorded_request),
                    reason=reason,
                    due_at=due_at,
                ),
            )

    # Most decisions write only their record; those go in the writer's one executemany, not a savepoint.
    # An authorisation is written by the audit store, bound to this record.
    writes_rows = case is not None or case_id is not None or continuing is not None or past is not None
    audit.append(
        "decision",
        {
            "request": recorded_request,
            "decision": response,
            "case_id": case["id"] if case else case_id,
            "authorisation": grant,
            **({"origin": origin} if origin else {}),
        },
        then=effects if writes_rows else None,
        bind=[(authorisation_rows, grant)] if grant is not None else (),
        created_at=decided_at,
        requester=requester,
        status=201,
        decision_id=decision_id,
        outcome=decision.outcome,
        rule_id=rule.id if rule else None,
        code=code,
        matched_by=decision.diagnosis.matched_by,
        patient_ref_hash=patient_hash,
        rulebook_version=decision.rulebook["version"],
        rulebook_digest=decision.rulebook["digest"],
    )
    return response


def _case_row(connection, case_id: str):
    row = connection.execute(select(review_cases).where(review_cases.c.id == case_id)).first()
    if row is None:
        raise NoSuchCase(case_id)
    return dict(row._mapping)


def get_case(instance, case_id: str) -> dict:
    """The case with its opening and latest decisions and every resolution, oldest first."""
    with instance.sql_engine.connect() as connection:
        case = _case_row(connection, case_id)
        resolutions = [
            {name: value for name, value in r._mapping.items() if name != "binding"}
            for r in connection.execute(
                select(review_resolutions)
                .where(review_resolutions.c.case_id == case_id)
                .order_by(review_resolutions.c.created_at)
            )
        ]
    return _case_view(instance, case, resolutions)


def _case_view(instance, case: dict, resolutions: list[dict] | None = None) -> dict:
    latest = instance.audit.decision(case["latest_decision_id"])["body"]["decision"]
    view = {
        "id": case["id"],
        "status": case["status"],
        "opened_at": case["opened_at"],
        "updated_at": case["updated_at"],
        "age_seconds": clock.seconds_since(case["opened_at"]),
        "requester": case["requester"],
        "code": icd10.dotted(case["code"]) if case["code"] else None,
        "reason": case["reason"],
        "opening_decision_id": case["opening_decision_id"],
        "due_at": case["due_at"],
        "overdue": case["due_at"] is not None and case["status"] in OPEN_STATUSES and case["due_at"] <= clock.utc_now(),
        "decision": latest,
        "missing": latest["missing"],
        "candidates": latest["candidates"],
    }
    if resolutions is not None:
        view["resolutions"] = resolutions
    return view


REVIEW_REASONS = ("missing_facts", "unclear_diagnosis", "no_rule", "rule_review", "no_benefit", "supply_phase")
SORTS = ("due", "oldest", "newest", "diagnosis")
# Cases with no due time sort after every due one under sort=due (then oldest first).
_NEVER_DUE = "9999-12-31T23:59:59.999999Z"
MAX_PAGE = 200
MAX_AGE_HOURS = 87600  # ten years
QUEUE_ARGUMENTS = ("status", "reason", "diagnosis", "older_than_hours", "newer_than_hours", "sort", "limit", "cursor")


@dataclass(frozen=True)
class Queue:
    """Which cases the review queue shows, in which order, and which page."""

    status: str | None = "open"  # None: every status
    reason: str | None = None  # one of REVIEW_REASONS
    diagnosis: str | None = None  # dotless ICD-10-CM code; its descendants match
    older_than_hours: int | None = None  # opened at least this long ago
    newer_than_hours: int | None = None  # opened less than this long ago
    sort: str = "due"  # retrospective reviews due soonest (the overdue) first, then oldest first; or oldest,
    # newest, or by diagnosis code (then oldest first)
    limit: int = 50
    cursor: str | None = None  # from the page before, as list_cases gave it


def queue_from(args: Mapping[str, str]) -> Queue:
    """The queue query arguments (API or console), checked; a blank argument is an absent one."""
    known_arguments(args, QUEUE_ARGUMENTS, "a queue argument")
    given = {key: value.strip() for key, value in args.items() if value.strip()}
    status = given.get("status", "open")
    if status not in (*STATUSES, "all"):
        raise RequestError("unknown_value", f"status must be one of {', '.join(STATUSES)} or all", "status")
    reason = given.get("reason")
    if reason is not None and reason not in REVIEW_REASONS:
        raise RequestError("unknown_value", f"reason must be one of {', '.join(REVIEW_REASONS)}", "reason")
    diagnosis = given.get("diagnosis")
    if diagnosis is not None:
        diagnosis = icd10.normalise(diagnosis)
        if not icd10.is_valid(diagnosis):
            raise RequestError(
                "invalid_code", f"diagnosis '{given['diagnosis']}' is not an ICD-10-CM code", "diagnosis"
            )
    sort = given.get("sort", "due")
    if sort not in SORTS:
        raise RequestError("unknown_value", f"sort must be one of {', '.join(SORTS)}", "sort")
    queue = Queue(
        status=None if status == "all" else status,
        reason=reason,
        diagnosis=diagnosis,
        older_than_hours=whole_argument(given, "older_than_hours", 0, MAX_AGE_HOURS),
        newer_than_hours=whole_argument(given, "newer_than_hours", 1, MAX_AGE_HOURS),
        sort=sort,
        limit=whole_argument(given, "limit", 1, MAX_PAGE) or 50,
        cursor=given.get("cursor"),
    )
    _after(queue)  # a cursor that is not one this service gave for this sort is refused here
    return queue


def _sort_key(sort: str) -> list:
    c = review_cases.c
    if sort == "diagnosis":
        return [func.coalesce(c.code, ""), c.opened_at, c.id]
    if sort == "due":
        return [func.coalesce(c.due_at, _NEVER_DUE), c.opened_at, c.id]
    return [c.opened_at, c.id]


def _cursor_of(sort: str, row: dict) -> str:
    first = {"diagnosis": [row["code"] or ""], "due": [row["due_at"] or _NEVER_DUE]}.get(sort, [])
    values = [*first, row["opened_at"], row["id"]]
    return base64.urlsafe_b64encode(json.dumps([sort, *values]).encode()).decode().rstrip("=")


def _after(queue: Queue) -> list[str] | None:
    """The sort key values the page starts after, read from the cursor."""
    if queue.cursor is None:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(queue.cursor + "=" * (-len(queue.cursor) % 4)))
    except (ValueError, binascii.Error):
        decoded = None
    if (
        not isinstance(decoded, list)
        or decoded[:1] != [queue.sort]
        or len(decoded) != len(_sort_key(queue.sort)) + 1
        or not all(isinstance(value, str) for value in decoded[1:])
    ):
        raise RequestError("unknown_value", f"cursor is not one this service gave for sort={queue.sort}", "cursor")
    return decoded[1:]


def _queue_conditions(queue: Queue) -> list:
    c = review_cases.c
    conditions = []
    if queue.status is not None:
        conditions.append(c.status == queue.status)
    if queue.reason is not None:
        conditions.append(c.reason == queue.reason)
    if queue.diagnosis is not None:
        conditions.append(c.code.startswith(queue.diagnosis, autoescape=True))
    now = clock.now()
    if queue.older_than_hours is not None:
        conditions.append(c.opened_at <= clock.stamp(now - datetime.timedelta(hours=queue.older_than_hours)))
    if queue.newer_than_hours is not None:
        conditions.append(c.opened_at > clock.stamp(now - datetime.timedelta(hours=queue.newer_than_hours)))
    return conditions


def list_cases(instance, queue: Queue) -> dict:
    """One page of the cases the queue selects: {"cases", "total" (every match, not this page), "next_cursor"}."""
    conditions = _queue_conditions(queue)
    key = _sort_key(queue.sort)
    after = _after(queue)
    newest = queue.sort == "newest"
    page = select(review_cases).where(*conditions)
    if after is not None:
        page = page.where(tuple_(*key) < tuple_(*after) if newest else tuple_(*key) > tuple_(*after))
    page = page.order_by(*(column.desc() if newest else column for column in key)).limit(queue.limit + 1)
    with instance.sql_engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(page)]
        total = connection.execute(select(func.count()).select_from(review_cases).where(*conditions)).scalar_one()
    more = len(rows) > queue.limit
    rows = rows[: queue.limit]
    return {
        "cases": [_case_view(instance, row) for row in rows],
        "total": total,
        "next_cursor": _cursor_of(queue.sort, rows[-1]) if more else None,
    }


def required_reason(reason) -> str:
    """A resolution's reason (of a case or a discrepancy): visible text of at most MAX_REASON characters."""
    if isinstance(reason, str):
        reason = visible(reason)
    if not isinstance(reason, str) or not reason:
        raise RequestError(
            "missing_field", "a reason is required (spaces and invisible characters do not count)", "reason"
        )
    if len(reason) > MAX_REASON:
        raise RequestError(
            "too_long", f"reason is {len(reason)} characters long; at most {MAX_REASON} are accepted", "reason"
        )
    return reason


def _validate_resolution(body) -> dict:
    if not isinstance(body, dict):
        raise RequestError("wrong_type", "the body must be an object", "")
    for key in body:
        if key not in ("resolution", "reason", "valid_days", "references"):
            raise RequestError(
                "unknown_field",
                f"{key} is not a known field (allowed: resolution, reason, valid_days, references)",
                key,
            )
    if body.get("resolution") not in RESOLUTIONS:
        raise RequestError("unknown_value", f"resolution must be one of {', '.join(RESOLUTIONS)}", "resolution")
    reason = required_reason(body.get("reason"))
    days = body.get("valid_days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650):
        raise RequestError("out_of_range", "valid_days must be a whole number from 1 to 3650", "valid_days")
    if days is not None and body["resolution"] != "approved":
        raise RequestError("conflicting_values", "valid_days applies only to an approved resolution", "valid_days")
    references = body.get("references")
    if references is not None and not isinstance(references, str):
        raise RequestError("wrong_type", "references must be the id of an earlier resolution", "references")
    return {"resolution": body["resolution"], "reason": reason, "valid_days": days, "references": references}


def resolve(instance, formulary: Formulary, case_id: str, body, reviewer: str) -> dict:
    """Close, pend or second-opinion a case; returns the case with its resolutions."""
    wanted = _validate_resolution(body)
    with instance.sql_engine.connect() as connection:
        case = _case_row(connection, case_id)
        earlier = [
            dict(r._mapping)
            for r in connection.execute(select(review_resolutions).where(review_resolutions.c.case_id == case_id))
        ]
    second_opinion = wanted["references"] is not None
    if second_opinion and wanted["references"] not in {r["id"] for r in earlier}:
        raise RequestError(
            "unknown_value", f"resolution {wanted['references']!r} is not a resolution of this case", "references"
        )
    if not second_opinion and case["status"] not in OPEN_STATUSES:
        final = next((r["id"] for r in reversed(earlier) if r["resolution"] != "more_information"), None)
        raise Conflict(
            f"case {case_id} is already {case['status']}; a second opinion must reference the resolution "
            f"it follows (references: {final})"
        )
    resolution = {
        "id": str(uuid.uuid4()),
        "case_id": case_id,
        "created_at": clock.utc_now(),
        "resolution": wanted["resolution"],
        "reason": wanted["reason"],
        "valid_days": wanted["valid_days"],
        "reviewer": reviewer,
        "references_id": wanted["references"],
    }
    grant = None
    latest = instance.audit.decision(case["latest_decision_id"])["body"]["decision"]
    if not second_opinion and wanted["resolution"] == "approved" and case["patient_ref_hash"] and case["code"]:
        rule = formulary.rulebook.rule(latest["rule"]["id"]) if latest["rule"] else None
        previous_id = (latest.get("continuation") or {}).get("previous_authorisation_id")
        grant = authorisations.grant(
            case["patient_ref_hash"],
            case["code"],
            formulary.terminology.diagnosis_of(case["code"]),
            "review",
            rule,
            formulary.rulebook,
            (),
            wanted["valid_days"] or formulary.rulebook.authorisation_days_for(rule, continuing=previous_id is not None),
            case_id=case_id,
            previous_id=previous_id,
        )
    new_status = {"approved": "approved", "denied": "denied", "more_information": "pending_information"}[
        wanted["resolution"]
    ]

    def effects(connection):
        if grant is not None and grant["previous_id"] is not None:
            _check_not_continued(connection, grant["previous_id"])
        if not second_opinion:
            changed = connection.execute(
                update(review_cases)
                .where(
                    review_cases.c.id == case_id,
                    review_cases.c.version == case["version"],
                    review_cases.c.status.in_(OPEN_STATUSES),
                )
                .values(
                    status=new_status,
                    updated_at=resolution["created_at"],
                    version=case["version"] + 1,
                    first_resolved_at=func.coalesce(review_cases.c.first_resolved_at, resolution["created_at"]),
                )
            )
            if changed.rowcount != 1:  # resolved, re-decided or joined since it was read
                raise _changed(connection, case_id)

    instance.audit.append(
        "review_resolution",
        {"resolution": resolution, "authorisation": grant},
        then=effects,
        bind=[(review_resolutions, resolution), *([(authorisation_rows, grant)] if grant is not None else [])],
        requester=reviewer,
        status=201,
        code=case["code"],
        patient_ref_hash=case["patient_ref_hash"],
        rulebook_version=formulary.rulebook.version,
        rulebook_digest=formulary.rulebook.digest,
    )
    return get_case(instance, case_id)


def _open_case(instance, case_id: str) -> tuple[dict, dict]:
    """An open or pended case as read, and its request as recorded (without the patient's hash)."""
    with instance.sql_engine.connect() as connection:
        case = _case_row(connection, case_id)
    if case["status"] not in OPEN_STATUSES:
        raise Conflict(f"case {case_id} is {case['status']}; facts can be added only to an open or pended case")
    stored = json.loads(case["request"])
    if isinstance(stored.get("patient"), dict):
        stored["patient"].pop("ref_hash", None)
    return case, stored


def attach_facts(instance, formulary: Formulary, case_id: str, facts, requester: str) -> dict:
    """Re-decide an open or pended case with more facts; the new decision is recorded on the case."""
    if not isinstance(facts, dict):
        raise RequestError("wrong_type", "the body must be an object of request fields to add", "")
    if isinstance(facts.get("patient"), dict) and ("ref" in facts["patient"] or "ref_hash" in facts["patient"]):
        raise RequestError(
            "conflicting_values", "a case's patient cannot change; open a new request instead", "patient.ref"
        )
    case, stored = _open_case(instance, case_id)
    return _decide_again(instance, formulary, case, stored, facts, requester)


def attach_answers(instance, formulary: Formulary, case_id: str, response, requester: str) -> dict:
    """attach_facts for a FHIR QuestionnaireResponse: its answers become the request fields to add
    (service/decide/questionnaire.py), read against the case's request as it is now."""
    case, stored = _open_case(instance, case_id)
    facts = questionnaire.response_fields(response, formulary.vocabulary, stored, clock.utc_today())
    return _decide_again(instance, formulary, case, stored, facts, requester)


def _decide_again(instance, formulary: Formulary, case: dict, stored: dict, facts: dict, requester: str) -> dict:
    """The case decided again with the facts added; a continuation's case, as a continuation."""
    latest = instance.audit.decision(case["latest_decision_id"])["body"]["decision"]
    continued = (latest.get("continuation") or {}).get("previous_authorisation_id")
    if continued is not None:
        payload, continuing = authorisations.continuation_request(
            instance, formulary.vocabulary, continued, facts, base=stored
        )
        return record_decision(instance, formulary, payload, requester, case=case, continuing=continuing)
    return record_decision(instance, formulary, authorisations.merged(stored, facts), requester, case=case)


def continue_authorisation(instance, formulary: Formulary, authorisation_id: str, extra, requester: str) -> dict:
    """Decide a continuation of an authorisation on the current rulebook (see record_decision)."""
    payload, continuing = authorisations.continuation_request(instance, formulary.vocabulary, authorisation_id, extra)
    return record_decision(instance, formulary, payload, requester, continuing=continuing)
