"""Rulebook proposals: a candidate version is checked, shown with whom it affects, and served
only once enough others have approved it, at its effective date.

Proposing reads the candidate with the reference data of the version served now, lints it, runs
its rule cases (those sent with it, else the ones kept next to the rulebook file), and computes
the diff against the version served and the replay of the recorded decisions over a window (and
of the active authorisations' next continuations); all four are kept with the proposal. A
proposal that does not read, fails lint or fails a case is kept as `failed` and cannot be approved.

Each principal other than the proposer votes once (approve or reject, with a reason). A
rejection closes the proposal; the instance's required number of approvals (Instance.
rulebook_approvals) makes it `scheduled` until its effective date, or `active` at once when that
date has come. Scheduled proposals are activated by the first service process that checks for
activations on or after their date (activate_due), and every process follows within a second.
Every step is an audit record; a vote and what it sets off commit together.
"""

import datetime
import json
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update

from service import clock
from service.decide import rule_cases
from service.decide.formulary import Formulary
from service.decide.request import RequestError, visible
from service.rulebook.diff import diff_as_data
from service.rulebook.lint import checked
from service.rulebook.model import Rulebook, RulebookError
from service.rulebook.reader import DATA_PREFIX, MAX_FILE_BYTES, load_rulebook_texts, parse_yaml, read_yaml
from service.store.tables import rulebook_activations, rulebook_proposal_votes, rulebook_proposals
from service.workflow import replay as replaying
from service.workflow.active_rulebook import activate_in
from service.workflow.cases import MAX_REASON
from service.workflow.usage import Window

MAX_SUMMARY = 4000
_TEMPORARY_FOLDER = re.compile(r"\S*/rulebook-[^/\s]+/")  # where load_rulebook_texts reads the texts
REPLAY_DAYS = 90  # the window replayed by default: the last 90 days
STATUSES = ("failed", "open", "scheduled", "active", "rejected", "withdrawn", "stale")
DECISIONS = ("approve", "reject")


class NoSuchProposal(LookupError):
    pass


class ProposalRefused(Exception):
    """What a proposal's state does not allow (a vote, its CHANGELOG entry); `own` when the voter
    proposed it."""

    def __init__(self, code: str, message: str, own: bool = False):
        super().__init__(message)
        self.code, self.message, self.own = code, message, own


@dataclass(frozen=True)
class Candidate:
    rulebook: str  # the candidate's YAML text
    summary: str
    tests: str | None  # its rule cases' YAML text; None: the served version's (see _cases)
    window: Window  # the recorded decisions to replay (candidate_from: the last REPLAY_DAYS days by default)


def candidate_from(fields: dict, today: datetime.date) -> Candidate:
    """A proposal's fields as the API and console take them, checked; RequestError names the field."""
    known = set(fields) - {"rulebook", "tests", "summary", "since", "until"}
    if known:
        name = sorted(known)[0]
        raise RequestError(
            "unknown_field", f"{name} is not a known field (allowed: rulebook, tests, summary, since, until)", name
        )
    text = fields.get("rulebook")
    if not isinstance(text, str) or not text.strip():
        raise RequestError("missing_field", "rulebook is required: the candidate rulebook's YAML text", "rulebook")
    tests = fields.get("tests")
    if tests is not None and not isinstance(tests, str):
        raise RequestError("wrong_type", "tests must be the rule cases' YAML text", "tests")
    for name, value in (("rulebook", text), ("tests", tests)):
        if value is not None and len(value.encode()) > MAX_FILE_BYTES:
            raise RequestError("too_long", f"{name} is larger than {MAX_FILE_BYTES >> 20} MiB", name)
    given = fields.get("summary")
    summary = visible(given) if isinstance(given, str) else ""
    if not summary:
        raise RequestError(
            "missing_field", "summary is required: what the change is and why, for the committee", "summary"
        )
    if len(summary) > MAX_SUMMARY:
        raise RequestError("too_long", f"summary is {len(summary)} characters long; at most {MAX_SUMMARY}", "summary")
    dates = {}
    for name in ("since", "until"):
        value = fields.get(name)
        if value in (None, ""):
            continue
        try:
            dates[name] = datetime.date.fromisoformat(str(value))
        except ValueError:
            raise RequestError(
                "invalid_value", f"{name} must be a date, YYYY-MM-DD, found {str(value)[:20]!r}", name
            ) from None
    since = dates.get("since", today - datetime.timedelta(days=REPLAY_DAYS))
    if "until" in dates and dates["until"] <= since:
        raise RequestError("conflicting_values", "until must be after since", "until")
    return Candidate(text, summary, tests or None, Window(since, dates.get("until")))


def propose(instance, serving: Formulary, candidate: Candidate, by: str) -> dict:
    """Check the candidate against the version served, keep it with what was found, on the record;
    with no approvals required, a proposal that passes is settled at once. Returns its view."""
    today = clock.utc_today()
    served = serving.rulebook
    texts = {
        **{name: text for name, text in served.texts.items() if name.startswith(DATA_PREFIX)},
        served.path.name: candidate.rulebook,
    }
    report: dict = {"problems": [], "cases": None, "diff": None, "replay": None, "continuations": None}
    rulebook = None
    try:
        rulebook = checked(load_rulebook_texts(texts))
    except RulebookError as error:
        report["problems"] = [_TEMPORARY_FOLDER.sub("", problem) for problem in error.problems]
    if rulebook is not None:
        formulary = Formulary(rulebook)
        try:
            report["cases"] = _cases(instance, formulary, served, candidate.tests, today)
            report["diff"] = diff_as_data(served, rulebook)
            report["replay"] = replaying.replay(instance, formulary, candidate.window)
            report["continuations"] = replaying.continuations(instance, serving, formulary)
        finally:
            formulary.close()
    passed = rulebook is not None and report["cases"]["failed"] == 0
    if rulebook is not None and rulebook.digest == served.digest:
        report["problems"].append("the candidate is the version served now: there is nothing to change")
        passed = False
    row = {
        "proposed_at": clock.utc_now(),
        "proposed_by": by,
        "summary": candidate.summary,
        "status": "open" if passed else "failed",
        "name": rulebook.name if rulebook else None,
        "version": rulebook.version if rulebook else None,
        "effective": rulebook.effective if rulebook else None,
        "digest": rulebook.digest if rulebook else None,
        "base_version": served.version,
        "base_digest": served.digest,
        "texts": json.dumps(texts, ensure_ascii=False),
        "tests": candidate.tests,
        "report": json.dumps(report, ensure_ascii=False),
    }
    if passed and rulebook is not None and instance.rulebook_approvals == 0:  # settled at once
        row["status"] = "active" if _effective_day(rulebook.effective) <= today else "scheduled"
        row["decided_at"] = row["proposed_at"] if row["status"] == "active" else None
    found: dict = {}

    def store(connection):
        if row["status"] == "active" and _newest_activation(connection) != served.digest:
            raise ProposalRefused("proposal_stale", "another version was activated while this one was checked")
        found["id"] = connection.execute(
            rulebook_proposals.insert().values(**row).returning(rulebook_proposals.c.id)
        ).scalar_one()
        if row["status"] == "active" and rulebook is not None:
            activate_in(connection, rulebook, f"proposal {found['id']}")

    instance.audit.append(
        "rulebook_proposal",
        {
            "status": row["status"],
            "summary": candidate.summary,
            "candidate": _ref(rulebook),
            "base": {"version": served.version, "digest": served.digest},
            "problems": report["problems"],
            "cases_failed": report["cases"]["failed"] if report["cases"] else None,
            "replay_changed": report["replay"]["changed_total"] if report["replay"] else None,
        },
        then=store,
        requester=by,
        status=201,
        rulebook_version=row["version"],
        rulebook_digest=row["digest"],
    )
    return proposal_detail(instance, found["id"])


def vote(instance, proposal_id: int, decision, reason, by: str) -> dict:
    """One principal's approval or rejection of a proposal (the proposer's own rejection withdraws
    it), and what it sets off, on the record. What the vote will do is worked out first, and
    checked again in the transaction that records it (the chain head's lock orders every process's
    votes); when the proposal or the version served changed in between, it is worked out again."""
    if decision not in DECISIONS:
        raise RequestError(
            "invalid_value", f"decision must be approve or reject, found {str(decision)[:20]!r}", "decision"
        )
    reason = visible(reason) if isinstance(reason, str) else ""
    if not reason:
        raise RequestError("missing_field", "a reason is required: what the committee member weighed", "reason")
    if len(reason) > MAX_REASON:
        raise RequestError("too_long", f"reason is {len(reason)} characters long; at most {MAX_REASON}", "reason")
    for _ in range(3):
        with instance.sql_engine.connect() as connection:
            state = _state(connection, proposal_id, by)
        plan = _plan(instance, state, decision, by)
        rulebook = _readable(state.row) if plan["status"] == "active" else None

        def store(connection, state=state, plan=plan, rulebook=rulebook):
            if _state(connection, proposal_id, by) != state:
                raise _Changed
            connection.execute(
                rulebook_proposal_votes.insert().values(
                    proposal_id=proposal_id, voted_at=clock.utc_now(), voted_by=by, decision=decision, reason=reason
                )
            )
            if rulebook is not None:
                activate_in(connection, rulebook, f"proposal {proposal_id}")
            if plan["status"] != state.row["status"]:
                _set_status(connection, proposal_id, state.row["status"], plan["status"], plan["status"] != "scheduled")

        try:
            instance.audit.append(
                "rulebook_proposal_vote",
                {"proposal_id": proposal_id, "decision": decision, "reason": reason, "result": plan},
                then=store,
                requester=by,
                status=200,
                rulebook_version=state.row["version"],
                rulebook_digest=state.row["digest"],
            )
        except _Changed:
            continue
        return proposal_detail(instance, proposal_id)
    raise ProposalRefused("proposal_busy", "the proposal changed while the vote was being recorded; vote again")


def activate_due(instance, today: datetime.date | None = None) -> list[int]:
    """Serve every scheduled proposal whose effective date has come, oldest date first; the
    proposals this process settled (another process may have done it first). One whose base is no
    longer the version served (another proposal or a rollback came first) is not served: it
    becomes `stale`, on the record, and is proposed again against what is served."""
    today = today or clock.utc_today()
    p = rulebook_proposals.c
    with instance.sql_engine.connect() as connection:
        due = connection.execute(
            select(p.id).where(p.status == "scheduled", p.effective <= today.isoformat()).order_by(p.effective, p.id)
        ).all()
    settled = []
    for (proposal_id,) in due:
        with instance.sql_engine.connect() as connection:
            row, newest = _row(connection, proposal_id), _newest_activation(connection)
        stale = newest != row["base_digest"]
        problems: list[str] = []
        rulebook = None
        if not stale:
            try:
                rulebook = _readable(row)
            except ProposalRefused as error:
                problems = [error.message]
        status = "stale" if stale else "failed" if rulebook is None else "active"

        def store(connection, proposal_id=proposal_id, newest=newest, status=status, rulebook=rulebook):
            if _row(connection, proposal_id)["status"] != "scheduled" or _newest_activation(connection) != newest:
                raise _Changed
            if rulebook is not None:
                activate_in(connection, rulebook, f"proposal {proposal_id}")
            _set_status(connection, proposal_id, "scheduled", status)

        body = {"proposal_id": proposal_id, "effective": row["effective"], "version": row["version"], "status": status}
        if stale:
            body["served"] = newest
        if problems:
            body["problems"] = problems
        try:
            instance.audit.append(
                "rulebook_proposal_activated" if status == "active" else "rulebook_proposal_not_activated",
                body,
                then=store,
                requester="scheduled activation",
                status=200 if status == "active" else 409,
                rulebook_version=row["version"],
                rulebook_digest=row["digest"],
            )
        except _Changed:
            continue
        settled.append(proposal_id)
    return settled


def list_proposals(instance, status: str | None = None) -> list[dict]:
    """Every proposal, newest first, without texts or report (summaries for a list)."""
    if status is not None and status not in STATUSES:
        raise RequestError(
            "invalid_value", f"status must be one of {', '.join(STATUSES)}, found {status[:20]!r}", "status"
        )
    p = rulebook_proposals.c
    query = select(
        p.id, p.proposed_at, p.proposed_by, p.summary, p.status, p.version, p.effective, p.digest, p.base_version
    ).order_by(p.id.desc())
    if status is not None:
        query = query.where(p.status == status)
    with instance.sql_engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(query)]
        votes = _votes(connection, [row["id"] for row in rows])
    return [
        {
            **row,
            "approvals": sum(v["decision"] == "approve" for v in votes.get(row["id"], [])),
            "approvals_required": instance.rulebook_approvals,
        }
        for row in rows
    ]


def proposal_detail(instance, proposal_id: int) -> dict:
    """A proposal with its votes and report (lint problems, case results, diff, replay)."""
    with instance.sql_engine.connect() as connection:
        row = _row(connection, proposal_id)
        votes = _votes(connection, [proposal_id]).get(proposal_id, [])
    report = json.loads(row["report"])
    return {
        "id": row["id"],
        "status": row["status"],
        "summary": row["summary"],
        "proposed_by": row["proposed_by"],
        "proposed_at": row["proposed_at"],
        "decided_at": row["decided_at"],
        "candidate": {k: row[k] for k in ("name", "version", "effective", "digest")},
        "base": {"version": row["base_version"], "digest": row["base_digest"]},
        "approvals_required": instance.rulebook_approvals,
        "approvals": [v for v in votes if v["decision"] == "approve"],
        "rejections": [v for v in votes if v["decision"] == "reject"],
        "tests_sent": row["tests"] is not None,
        **report,
    }


def proposal_texts(instance, proposal_id: int) -> dict:
    """The candidate's texts ({name: text}) and the rule cases sent with it."""
    with instance.sql_engine.connect() as connection:
        row = _row(connection, proposal_id)
    return {"texts": json.loads(row["texts"]), "tests": row["tests"]}


def changelog_entry(instance, proposal_id: int) -> str:
    """The rules/CHANGELOG.md entry for a proposal, in the form that file asks for. The
    committee's decision stays `pending`: its minutes, not this service, record it."""
    found = proposal_detail(instance, proposal_id)
    candidate = found["candidate"]
    if candidate["version"] is None:
        raise ProposalRefused("proposal_failed", f"proposal {proposal_id} did not read as a rulebook: it has no entry")
    headline = found["summary"].splitlines()[0][:100]
    lines = [f"## {candidate['version']} (effective {candidate['effective']}): {headline}", "", "- What changed:"]
    lines += [f"  - {line}" for line in (found["diff"] or {}).get("words", [])] or ["  - no rule changed"]
    lines.append(f"- Why: {' '.join(found['summary'].split())}")
    lines.append("- Source: name the data/sources.yaml entry or document each change rests on before committing.")
    replay = found["replay"] or {}
    lines.append(
        f"- Proposal {found['id']} by {found['proposed_by']} on {found['proposed_at'][:10]} (against "
        f"{found['base']['version']}): {replay.get('replayed', 0)} recorded decisions replayed, "
        f"{replay.get('changed_total', 0)} would change; status {found['status']}."
    )
    for v in found["approvals"]:
        lines.append(f"  - Approved in the service by {v['voted_by']} on {v['voted_at'][:10]}: {v['reason']}")
    for v in found["rejections"]:
        lines.append(f"  - Rejected in the service by {v['voted_by']} on {v['voted_at'][:10]}: {v['reason']}")
    lines += ["", "Committee decision: pending", ""]
    return "\n".join(lines)


class _Changed(Exception):
    """The proposal or the version served changed since the step was worked out: work it out again."""


def _cases(instance, formulary: Formulary, served: Rulebook, tests: str | None, today: datetime.date) -> dict:
    """The candidate's rule cases run: those sent; else those of the version served, as its own
    proposal sent them; else the ones kept next to the rulebook file (rules/<name>.tests.yaml)."""
    try:
        if tests is None:
            with instance.sql_engine.connect() as connection:
                tests = connection.execute(
                    select(rulebook_proposals.c.tests)
                    .where(rulebook_proposals.c.digest == served.digest, rulebook_proposals.c.tests.is_not(None))
                    .order_by(rulebook_proposals.c.id.desc())
                    .limit(1)
                ).scalar()
            source = f"those of the proposal of {served.version}, the version served"
        else:
            source = "sent with the proposal"
        if tests is not None:
            document = parse_yaml(Path("tests"), tests)
        else:
            path = rule_cases.case_file_of(instance.rulebook_path)
            source = f"{path.name}, kept next to the rulebook file"
            if not path.is_file():
                source = f"none: no {path.name} next to the rulebook file, and none sent"
            document = read_yaml(path) if path.is_file() else {"cases": []}
        cases = rule_cases.cases_of(document)
    except (RulebookError, rule_cases.CaseError) as error:
        message = "; ".join(error.problems) if isinstance(error, RulebookError) else str(error)
        return {"source": source, "total": 0, "passed": 0, "failed": 1, "results": [], "problem": message}
    results = [result.to_dict() for result in rule_cases.run_cases(formulary, cases, today)]
    failed = sum(not r["passed"] for r in results)
    return {
        "source": source,
        "total": len(results),
        "passed": len(results) - failed,
        "failed": failed,
        "results": results,
    }


@dataclass(frozen=True)
class _State:
    """What a vote depends on: the proposal, its approvals, the voter's earlier vote and the
    version served (the newest activation)."""

    row: dict
    approvals: int
    voted: str | None
    served: str | None


def _state(connection, proposal_id: int, by: str) -> _State:
    v = rulebook_proposal_votes.c
    row = _row(connection, proposal_id)
    voted = connection.execute(select(v.decision).where(v.proposal_id == proposal_id, v.voted_by == by)).scalar()
    return _State(row, _approvals(connection, proposal_id), voted, _newest_activation(connection))


def _plan(instance, state: _State, decision: str, by: str) -> dict:
    """What the vote does: the status it leaves and the approvals counted; ProposalRefused when it
    may not be cast."""
    row = state.row
    own = row["proposed_by"] == by
    if own and decision == "approve":
        raise ProposalRefused("own_proposal", "a proposal is approved by others than its proposer", own=True)
    if row["status"] in ("failed", "stale"):
        raise ProposalRefused(
            f"proposal_{row['status']}", f"this proposal is {row['status']} and cannot be approved; propose it again"
        )
    if row["status"] in ("active", "rejected", "withdrawn"):
        raise ProposalRefused("proposal_closed", f"this proposal is {row['status']} already")
    if state.voted is not None:
        raise ProposalRefused("already_voted", f"{by} has voted on this proposal already ({state.voted})")
    if decision == "reject":
        return {"status": "withdrawn" if own else "rejected", "approvals": state.approvals}
    if row["status"] == "scheduled":
        raise ProposalRefused(
            "proposal_scheduled", f"this proposal is approved already and scheduled for {row['effective']}"
        )
    if row["base_digest"] != state.served:
        raise ProposalRefused(
            "proposal_stale",
            f"this proposal was checked against {row['base_version']} ({row['base_digest'][:12]}), but another "
            f"version ({(state.served or '')[:12]}) is served now: its diff and replay no longer hold; propose it again",
        )
    approvals = state.approvals + 1
    if approvals < instance.rulebook_approvals:
        return {"status": "open", "approvals": approvals}
    due = _effective_day(row["effective"]) <= clock.utc_today()
    return {"status": "active" if due else "scheduled", "approvals": approvals}


def _effective_day(effective: str) -> datetime.date:
    """A rulebook's effective date (lint keeps it YYYY-MM-DD)."""
    return datetime.date.fromisoformat(effective)


def _newest_activation(connection) -> str | None:
    """The digest of the version every process serves: the newest activation."""
    a = rulebook_activations.c
    return connection.execute(select(a.digest).order_by(a.id.desc()).limit(1)).scalar()


def _readable(row: dict) -> Rulebook:
    """The proposal's rulebook read back and linted now; ProposalRefused when it no longer reads
    or passes (the texts were changed, or lint is stricter than when it was proposed)."""
    try:
        return checked(load_rulebook_texts(json.loads(row["texts"]), digest=row["digest"]))
    except RulebookError as error:
        raise ProposalRefused(
            "proposal_unreadable",
            "the proposal's rulebook no longer reads or passes lint: "
            + "; ".join(_TEMPORARY_FOLDER.sub("", problem) for problem in error.problems),
        ) from None


def _set_status(connection, proposal_id: int, old: str, new: str, decided: bool = True) -> None:
    p = rulebook_proposals.c
    values: dict = {"status": new}
    if decided:
        values["decided_at"] = clock.utc_now()
    done = connection.execute(
        update(rulebook_proposals).where(p.id == proposal_id, p.status == old).values(**values)
    ).rowcount
    if done != 1:
        raise _Changed


def _approvals(connection, proposal_id: int) -> int:
    v = rulebook_proposal_votes.c
    return connection.execute(
        select(func.count()).where(v.proposal_id == proposal_id, v.decision == "approve")
    ).scalar_one()


def _row(connection, proposal_id: int) -> dict:
    row = connection.execute(select(rulebook_proposals).where(rulebook_proposals.c.id == proposal_id)).first()
    if row is None:
        raise NoSuchProposal(f"no rulebook proposal {proposal_id}")
    return dict(row._mapping)


def _votes(connection, ids: list[int]) -> dict[int, list[dict]]:
    v = rulebook_proposal_votes.c
    found: dict[int, list[dict]] = {}
    if not ids:
        return found
    query = select(v.proposal_id, v.voted_at, v.voted_by, v.decision, v.reason).where(v.proposal_id.in_(ids))
    with_order = query.order_by(v.id)
    for row in connection.execute(with_order):
        found.setdefault(row.proposal_id, []).append(
            {"voted_by": row.voted_by, "voted_at": row.voted_at, "decision": row.decision, "reason": row.reason}
        )
    return found


def _ref(rulebook: Rulebook | None) -> dict | None:
    return None if rulebook is None else {"version": rulebook.version, "digest": rulebook.digest}
