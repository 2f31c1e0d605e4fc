"""The formulary as the service serves it: the rulebook, one rule, and reloading the file; the
versions served before, kept with their texts, and what changed between two of them; proposals
of a new version and the committee's votes on them (service/workflow/proposals.py)."""

from flask import Blueprint, Response, jsonify, request

from service import clock
from service.decide.request import RequestError, visible
from service.rulebook.as_data import rule_as_data, rulebook_as_data
from service.rulebook.diff import diff_as_data
from service.rulebook.model import RulebookError
from service.store.rulebook_versions import (
    AmbiguousVersion,
    VersionNotFound,
    VersionRef,
    find_version,
    list_versions,
    stored_rulebook,
)
from service.web.api.guard import requires
from service.web.context import active_rulebook, current_instance, current_principal, json_body
from service.web.errors import Refusal
from service.workflow import proposals, usage
from service.workflow.active_rulebook import ApprovalsRequired
from service.workflow.cases import MAX_REASON

blueprint = Blueprint("api_rulebook", __name__)


@blueprint.get("/v1/rulebook")
@requires("read_rulebook")
def get_rulebook():
    return jsonify(rulebook_as_data(active_rulebook().current.rulebook))


@blueprint.get("/v1/rulebook/usage")
@requires("read_rulebook")
def get_usage():
    """How often each rule of the rulebook served decided in a window (`since`, `until`)."""
    window = usage.window_from(request.args, clock.utc_today())
    return jsonify(usage.rule_usage(current_instance(), active_rulebook().current.rulebook, window))


@blueprint.get("/v1/rulebook/rules/<rule_id>")
@requires("read_rulebook")
def get_rule(rule_id):
    rulebook = active_rulebook().current.rulebook
    rule = rulebook.rule(rule_id)
    if rule is None:
        raise Refusal(404, "not_found", f"no rule {rule_id!r} in rulebook {rulebook.version}")
    return jsonify(rule_as_data(rulebook, rule))


@blueprint.post("/v1/rulebook/reload")
@requires("reload_rulebook")
def reload_rulebook():
    try:
        summary = active_rulebook().reload(current_instance().audit, requested_by=current_principal().name)
    except ApprovalsRequired as error:
        raise Refusal(409, "approvals_required", str(error)) from None
    except RulebookError as error:
        current = active_rulebook().current.rulebook
        raise Refusal(
            422,
            "rulebook_invalid",
            f"the rulebook has {len(error.problems)} problem(s); still serving {current.version}",
            problems=error.problems,
        ) from None
    return jsonify(summary)


@blueprint.post("/v1/rulebook/versions/<version>/activate")
@requires("roll_back_rulebook")
def activate_version(version):
    """Serve a stored version again (a rollback), with a reason; every process follows within a second."""
    body = json_body()
    reason = body.get("reason") if isinstance(body, dict) else None
    if isinstance(body, dict):
        known = set(body) - {"reason"}
        if known:
            raise RequestError(
                "unknown_field", f"{sorted(known)[0]} is not a known field (allowed: reason)", sorted(known)[0]
            )
    reason = visible(reason) if isinstance(reason, str) else ""
    if not reason:
        raise RequestError("missing_field", "a reason is required: why this version is served again", "reason")
    if len(reason) > MAX_REASON:
        raise RequestError("too_long", f"reason is {len(reason)} characters long; at most {MAX_REASON}", "reason")
    ref = VersionRef(version, request.args.get("digest") or None)

    def roll_back():
        try:
            return active_rulebook().roll_back(current_instance().audit, ref, reason, current_principal().name)
        except RulebookError as error:  # its texts no longer read back, or fail today's lint
            current = active_rulebook().current.rulebook
            raise Refusal(
                422,
                "rulebook_invalid",
                f"stored version {version} cannot be served ({len(error.problems)} problem(s)); still serving "
                f"{current.version}",
                problems=error.problems,
            ) from None

    summary = stored_version(roll_back)
    return jsonify(summary)


@blueprint.get("/v1/rulebook/versions")
@requires("read_rulebook")
def get_versions():
    return jsonify({"versions": list_versions(current_instance().database)})


@blueprint.get("/v1/rulebook/versions/<version>")
@requires("read_rulebook")
def get_version(version):
    ref = VersionRef(version, request.args.get("digest") or None)
    return jsonify(stored_version(lambda: find_version(current_instance().database, ref)))


@blueprint.get("/v1/rulebook/versions/<old>/diff/<new>")
@requires("read_rulebook")
def get_diff(old, new):
    database = current_instance().database
    before = stored_version(lambda: stored_rulebook(database, VersionRef.parse(old)))
    after = stored_version(lambda: stored_rulebook(database, VersionRef.parse(new)))
    return jsonify(diff_as_data(before, after))


@blueprint.post("/v1/rulebook/proposals")
@requires("propose_rulebook")
def post_proposal():
    """A candidate rulebook, checked and kept with its diff and replay: JSON {rulebook, tests,
    summary, since, until}, or a multipart upload with `file`, `tests`, `summary`."""
    candidate = proposals.candidate_from(_proposal_fields(), clock.utc_today())
    with active_rulebook().use() as serving:
        found = _proposal(lambda: proposals.propose(current_instance(), serving, candidate, current_principal().name))
    if found["status"] == "active":  # no approvals required
        active_rulebook().follow_now()
    return jsonify(found), 201


@blueprint.get("/v1/rulebook/proposals")
@requires("read_proposals")
def get_proposals():
    status = request.args.get("status") or None
    return jsonify({"proposals": proposals.list_proposals(current_instance(), status)})


@blueprint.get("/v1/rulebook/proposals/<proposal_id>")
@requires("read_proposals")
def get_proposal(proposal_id):
    return jsonify(_proposal(lambda: proposals.proposal_detail(current_instance(), _number(proposal_id))))


@blueprint.get("/v1/rulebook/proposals/<proposal_id>/rulebook")
@requires("read_proposals")
def get_proposal_texts(proposal_id):
    """The candidate's texts ({name: text}: the rulebook and the reference data it was read with)
    and the rule cases sent with it."""
    return jsonify(_proposal(lambda: proposals.proposal_texts(current_instance(), _number(proposal_id))))


@blueprint.get("/v1/rulebook/proposals/<proposal_id>/changelog")
@requires("read_proposals")
def get_proposal_changelog(proposal_id):
    """The rules/CHANGELOG.md entry for the proposal, as Markdown; committing it is the committee's."""
    entry = _proposal(lambda: proposals.changelog_entry(current_instance(), _number(proposal_id)))
    return Response(entry, mimetype="text/markdown")


@blueprint.post("/v1/rulebook/proposals/<proposal_id>/approvals")
@requires("approve_rulebook")
def post_approval(proposal_id):
    """{"decision": "approve" | "reject", "reason"}: an approval by someone other than the proposer,
    a rejection (the proposer's own withdraws the proposal)."""
    body = json_body()
    if not isinstance(body, dict):
        raise RequestError("wrong_type", "the body must be an object: {decision, reason}", "")
    unknown = set(body) - {"decision", "reason"}
    if unknown:
        name = sorted(unknown)[0]
        raise RequestError("unknown_field", f"{name} is not a known field (allowed: decision, reason)", name)
    instance = current_instance()
    found = _proposal(
        lambda: proposals.vote(
            instance, _number(proposal_id), body.get("decision"), body.get("reason"), current_principal().name
        )
    )
    if found["status"] == "active":
        active_rulebook().follow_now()
    return jsonify(found)


def _proposal_fields() -> dict:
    """A proposal's fields from a JSON body or a multipart upload (`file` for the rulebook)."""
    if request.mimetype != "multipart/form-data":
        body = json_body()
        if not isinstance(body, dict):
            raise RequestError("wrong_type", "the body must be an object: {rulebook, tests, summary}", "")
        return body
    fields: dict = {name: value for name, value in request.form.items()}
    unknown = set(request.files) - {"file", "tests"}
    if unknown:
        name = sorted(unknown)[0]
        raise RequestError("unknown_field", f"{name} is not a known file (allowed: file, tests)", name)
    for name, key in (("file", "rulebook"), ("tests", "tests")):
        upload = request.files.get(name)
        if upload is None or not upload.filename:
            continue
        try:
            fields[key] = upload.read().decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("invalid_value", f"{name} is not UTF-8 text", name) from None
    return fields


def _number(proposal_id: str) -> int:
    """A proposal's number from its path (after the token is checked: a caller without one is 401)."""
    if not proposal_id.isascii() or not proposal_id.isdigit() or len(proposal_id) > 9:
        raise Refusal(404, "not_found", f"no rulebook proposal {proposal_id[:20]!r}")
    return int(proposal_id)


def _proposal(find):
    """What `find` reads or does on a proposal; 404 when there is none, 403 for a vote on one's
    own proposal, 409 when its state does not allow the vote."""
    try:
        return find()
    except proposals.NoSuchProposal as error:
        raise Refusal(404, "not_found", str(error)) from None
    except proposals.ProposalRefused as error:
        raise Refusal(403 if error.own else 409, error.code, error.message) from None


def stored_version(find):
    """What `find` reads of the stored versions; 404 when none matches, 409 when several do (naming
    their digests) or when the stored texts no longer read as the version they were stored as."""
    try:
        return find()
    except VersionNotFound as error:
        raise Refusal(404, "not_found", str(error)) from None
    except AmbiguousVersion as error:
        raise Refusal(
            409,
            "ambiguous_version",
            f"{error}; name one as {error.version}@<digest> (or ?digest=<digest>), four or more of its first digits",
            digests=error.digests,
        ) from None
    except RulebookError as error:
        raise Refusal(
            409, "version_unreadable", "the stored rulebook cannot be read back", problems=error.problems
        ) from None
