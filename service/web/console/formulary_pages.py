"""The formulary page: the active rulebook, every rule with its evidence, searchable; the rule
usage page (how often each rule decided); the rulebook page: every version served, its
activations, what changed between two, and the proposals of a new version; and a proposal's page:
its checks, changes and impact, and the committee's votes.

Everyone who signs in may read them (the API's GET /v1/rulebook and /v1/rulebook/versions are
open to every role too). They show the same data as the API, so the pages and the JSON never
disagree. A decision links here with q=<rule id>; that rule is listed first.
"""

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from service import clock
from service.decide.request import RequestError, visible
from service.rulebook.as_data import rulebook_as_data
from service.rulebook.diff import diff_as_data
from service.rulebook.model import OUTCOMES, RulebookError
from service.rulebook.text_keys import fold
from service.store.rulebook_versions import (
    AmbiguousVersion,
    VersionNotFound,
    VersionRef,
    list_versions,
    stored_rulebook,
)
from service.web.console.auth import allowed, page
from service.web.context import active_rulebook, current_instance, current_principal
from service.workflow import proposals, usage

blueprint = Blueprint("console_formulary", __name__, url_prefix="/console")
_cache: tuple[str, dict] | None = None  # (digest, data) of the last rulebook shown


def _data(rulebook) -> dict:
    """The rulebook as data, worked out once a version (a reload changes the digest)."""
    global _cache
    cached = _cache
    if cached is None or cached[0] != rulebook.digest:
        data = rulebook_as_data(rulebook)
        for rule in data["rules"]:
            rule["search_text"] = fold(
                " ".join(
                    (
                        rule["id"],
                        rule["title"],
                        rule["diagnosis"]["name"],
                        *rule["diagnosis"]["codes"],
                        *rule["diagnosis"]["synonyms"],
                        rule["outcome"],
                        rule["outcome"].replace("_", " "),
                    )
                )
            )
            rule["dose_text"] = _dose(rule["dosing"])
        cached = _cache = (rulebook.digest, data)
    return cached[1]


def _number(value: float) -> str:
    return f"{value:g}"


def _range(low, high, unit: str) -> str | None:
    if low is not None and high is not None:
        return f"{_number(low)} {unit}" if low == high else f"{_number(low)} to {_number(high)} {unit}"
    if low is not None:
        return f"at least {_number(low)} {unit}"
    if high is not None:
        return f"at most {_number(high)} {unit}"
    return None


def _dose(dosing: dict) -> str:
    """'0.4 to 2 g/kg, every 21 days or more' from a dosing profile."""
    grams = _range(dosing["g_per_kg"]["min"], dosing["g_per_kg"]["max"], "g/kg") or "no dose range set"
    low, high = dosing["interval_days"]["min"], dosing["interval_days"]["max"]
    if dosing.get("courses"):
        courses = dosing["courses"]
        interval = f"a one-off course ({courses} course{'s' if courses > 1 else ''} at most)"
    elif low is not None and high is not None:
        interval = f"every {_range(low, high, 'days')}"
    elif low is not None:
        interval = f"no more often than every {_number(low)} days"
    elif high is not None:
        interval = f"at least every {_number(high)} days"
    else:
        interval = "no interval set"
    return f"{grams}, {interval}"


def _matches(rule: dict, terms: list[str]) -> bool:
    return all(term in rule["search_text"] for term in terms)


@blueprint.get("/formulary")
@page("read_rulebook")
def formulary():
    data = _data(active_rulebook().current.rulebook)
    query = request.args.get("q", "").strip()
    outcome = request.args.get("outcome", "")
    outcome = outcome if outcome in OUTCOMES else ""
    terms = fold(query).split()
    shown = [r for r in data["rules"] if _matches(r, terms) and (not outcome or r["outcome"] == outcome)]
    exact = fold(query)
    shown.sort(key=lambda r: fold(r["id"]) != exact)  # stable: the rule asked for by id first
    return render_template(
        "console/formulary.html",
        rulebook=data["rulebook"],
        sources=data["sources"],
        source_titles={s["id"]: s["title"] for s in data["sources"]},
        rules=shown,
        total=len(data["rules"]),
        query=query,
        outcome=outcome,
        outcomes=OUTCOMES,
        filtered=bool(terms or outcome),
    )


@blueprint.get("/formulary/usage")
@page("read_rulebook")
def rule_usage():
    """How often each rule decided in a window, as GET /v1/rulebook/usage answers."""
    values = {name: request.args.get(name, "").strip() for name in usage.USAGE_ARGUMENTS}
    errors: dict = {}
    try:
        window = usage.window_from(values, clock.utc_today())
    except RequestError as error:
        g.refusal = error.to_dict()
        errors = {error.field or "form": error.message}
        window = usage.window_from({}, clock.utc_today())
    found = usage.rule_usage(current_instance(), active_rulebook().current.rulebook, window)
    return render_template("console/rule_usage.html", usage=found, values=values, errors=errors), (
        400 if errors else 200
    )


@blueprint.post("/rulebook/versions/activate")
@page("roll_back_rulebook")
def roll_back():
    """Serve the chosen stored version again (a rollback), with the reason given."""
    reason = visible(request.form.get("reason", ""))
    problem = None
    if not reason:
        problem = "a reason is required: why this version is served again"
    else:
        try:
            summary = active_rulebook().roll_back(
                current_instance().audit,
                VersionRef.parse(request.form.get("version", "")),
                reason,
                current_principal().name,
            )
        except (VersionNotFound, AmbiguousVersion) as error:
            problem = str(error)
        except RulebookError as error:
            problem = "that version cannot be served: " + "; ".join(error.problems)
    if problem:
        g.refusal = {"code": "rollback_refused", "message": problem}
        return rulebook_versions(rollback_error=problem, status=400)
    flash(f"Now serving {summary['version']} again.")
    return redirect(url_for("console_formulary.rulebook_versions"))


@blueprint.get("/rulebook/versions")
@page("read_rulebook")
def rulebook_versions(rollback_error: str | None = None, status: int = 200, proposal_error: str | None = None):
    """The stored versions newest first, and the changes between the two chosen (old, new:
    `version@digest`, as the form's choices name them)."""
    database = current_instance().database
    versions = list_versions(database)
    for version in versions:
        version["ref"] = f"{version['version']}@{version['digest']}"
    old, new = request.args.get("old", ""), request.args.get("new", "")
    if not (old or new) and len(versions) > 1:  # the latest change, to start with
        old, new = versions[1]["ref"], versions[0]["ref"]
    comparison, problem = None, None
    if old and new:
        try:
            comparison = diff_as_data(
                stored_rulebook(database, VersionRef.parse(old)), stored_rulebook(database, VersionRef.parse(new))
            )
        except (VersionNotFound, AmbiguousVersion) as error:
            problem = str(error)
        except RulebookError as error:
            problem = "a stored version cannot be read back: " + "; ".join(error.problems)
    return render_template(
        "console/rulebook_versions.html",
        versions=versions,
        serving=active_rulebook().current.rulebook.digest,
        old=old,
        new=new,
        comparison=comparison,
        problem=problem,
        rollback_error=rollback_error,
        proposals=proposals.list_proposals(current_instance()) if allowed("read_proposals") else [],
        proposal_error=proposal_error,
    ), status


@blueprint.post("/rulebook/proposals")
@page("propose_rulebook")
def propose():
    """A proposal from an uploaded rulebook file (and optionally its rule cases), with a summary."""
    fields = {"summary": request.form.get("summary", "")}
    try:
        for name, key in (("file", "rulebook"), ("tests", "tests")):
            upload = request.files.get(name)
            if upload is not None and upload.filename:
                try:
                    fields[key] = upload.read().decode("utf-8")
                except UnicodeDecodeError:
                    raise RequestError("invalid_value", f"the {name} is not UTF-8 text", name) from None
        candidate = proposals.candidate_from(fields, clock.utc_today())
    except RequestError as error:
        g.refusal = error.to_dict()
        return rulebook_versions(proposal_error=error.message, status=400)
    try:
        with active_rulebook().use() as serving:
            found = proposals.propose(current_instance(), serving, candidate, current_principal().name)
    except proposals.ProposalRefused as error:
        g.refusal = {"code": error.code, "message": error.message}
        return rulebook_versions(proposal_error=error.message, status=409)
    if found["status"] == "active":
        active_rulebook().follow_now()
    flash(f"Proposal {found['id']} is {found['status']}.")
    return redirect(url_for("console_formulary.proposal", proposal_id=found["id"]))


@blueprint.get("/rulebook/proposals/<int:proposal_id>")
@page("read_proposals")
def proposal(proposal_id, vote_error: str | None = None, status: int = 200):
    """A proposal: its checks, the changes, the decisions and authorisations it would change, the votes."""
    instance = current_instance()
    try:
        found = proposals.proposal_detail(instance, proposal_id)
    except proposals.NoSuchProposal as error:
        g.refusal = {"code": "not_found", "message": str(error)}
        return render_template("console/error.html", title="No such proposal", message=str(error)), 404
    try:
        entry = proposals.changelog_entry(instance, proposal_id)
    except proposals.ProposalRefused:
        entry = None
    return render_template(
        "console/proposal.html", proposal=found, changelog=entry, choices=_choices(found), vote_error=vote_error
    ), status


def _choices(found: dict) -> list[tuple[str, str]]:
    """The votes the signed-in person may cast on the proposal, as (decision, label)."""
    me = current_principal().name
    if (
        not allowed("approve_rulebook")
        or found["status"] not in ("open", "scheduled")
        or me in {v["voted_by"] for v in found["approvals"] + found["rejections"]}
    ):
        return []
    if found["proposed_by"] == me:
        return [("reject", "Withdraw my proposal")]
    if found["status"] == "scheduled":
        return [("reject", "Reject (it will not be served)")]
    return [("approve", "Approve"), ("reject", "Reject")]


@blueprint.post("/rulebook/proposals/<int:proposal_id>/approvals")
@page("approve_rulebook")
def vote(proposal_id):
    """The signed-in member's approval or rejection, with the reason given."""
    try:
        found = proposals.vote(
            current_instance(),
            proposal_id,
            request.form.get("decision", ""),
            request.form.get("reason", ""),
            current_principal().name,
        )
    except RequestError as error:
        g.refusal = error.to_dict()
        return proposal(proposal_id, vote_error=error.message, status=400)
    except proposals.ProposalRefused as error:
        g.refusal = {"code": error.code, "message": error.message}
        return proposal(proposal_id, vote_error=error.message, status=403 if error.own else 409)
    except proposals.NoSuchProposal:
        return proposal(proposal_id)
    if found["status"] == "active":
        active_rulebook().follow_now()
    flash(f"Your vote is recorded; proposal {proposal_id} is {found['status']}.")
    return redirect(url_for("console_formulary.proposal", proposal_id=proposal_id))
