"""Supply phases (shortage mode): the rulebook's tiers and phases, the pure phase adjustment after
the engine, and the phase an admin sets, followed by decisions, pre-approval and every process."""

import pytest
from sqlalchemy import update

from service.decide import supply
from service.rulebook.lint import load_checked
from service.rulebook.model import RulebookError
from service.store import supply_phases
from service.store.tables import supply_phases as supply_rows

from .conftest import MINI_DATA, MINI_RULES, TEST_RULEBOOK, bearer, write_rulebook
from .test_openapi import _conforms

SLE = {"diagnosis": {"code": "M32.9"}, "patient": {"age_years": 40, "ref": "MRN-SLE"}}  # blue, off-label
CFS = {"diagnosis": {"code": "G93.32"}, "patient": {"age_years": 40}}  # black, needs_review
GBS_CHILD = {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8}}  # red, off-label

# ---------------------------------------------------------------------- the rulebook language

TIERS = {"red": "life-saving", "blue": "reasonable evidence", "black": "no benefit"}
SUPPLY = {
    "source": "review",
    "default_phase": "normal",
    "tiers": TIERS,
    "phases": {
        "normal": {"description": "enough", "tiers": {"red": "as_usual", "blue": "as_usual", "black": "as_usual"}},
        "red": {"description": "short", "tiers": {"red": "as_usual", "blue": "needs_review", "black": "not_supported"}},
    },
}


def _tiered(rules=None, tier="blue"):
    return [{**rule, "tier": tier, "tier_basis": "a test"} for rule in (rules or MINI_RULES)]


def _problems(tmp_path, supply_block=SUPPLY, rules=None) -> list[str]:
    path = write_rulebook(tmp_path, rules=_tiered() if rules is None else rules)
    text = path.read_text()
    if supply_block is not None:
        import yaml

        content = yaml.safe_load(text)
        content["supply"] = supply_block
        from .conftest import dump_yaml

        path.write_text(dump_yaml(content))
    try:
        load_checked(path)
    except RulebookError as error:
        return error.problems
    return []


def test_a_rulebook_with_tiers_and_phases_loads(tmp_path):
    assert _problems(tmp_path) == []
    rulebook = load_checked(tmp_path / "mini.yaml")
    assert rulebook.supply.tiers == TIERS and rulebook.rules[0].tier == "blue"
    assert rulebook.supply.phases["red"].action_for("blue") == "needs_review"


def test_the_committee_names_its_own_tiers(tmp_path):
    renamed = {
        "source": "review",
        "default_phase": "usual",
        "tiers": {"essential": "kept in any shortage", "elective": "waits"},
        "phases": {
            "usual": {"description": "enough", "tiers": {"essential": "as_usual", "elective": "as_usual"}},
            "short": {"description": "short", "tiers": {"essential": "as_usual", "elective": "needs_review"}},
        },
    }
    assert _problems(tmp_path, renamed, _tiered(tier="elective")) == []


def test_lint_refuses_a_rule_in_an_unknown_tier(tmp_path):
    problems = _problems(tmp_path, rules=_tiered(tier="purple"))
    assert any("tier: 'purple' is not a tier of supply.tiers" in p for p in problems)


def test_lint_refuses_a_rule_without_a_tier_when_tiers_are_declared(tmp_path):
    problems = _problems(tmp_path, rules=list(MINI_RULES))
    assert any("gbs-children.tier: missing: the rulebook declares priority tiers" in p for p in problems)


def test_lint_refuses_a_tier_in_a_rulebook_that_declares_none(tmp_path):
    problems = _problems(tmp_path, supply_block=None)
    assert any("declares no priority tiers" in p for p in problems)


def test_lint_refuses_a_tier_without_its_basis(tmp_path):
    rules = [{**rule, "tier": "blue"} for rule in MINI_RULES]
    assert any("tier_basis: must be non-empty text" in p for p in _problems(tmp_path, rules=rules))


def test_lint_refuses_a_phase_naming_an_unknown_tier(tmp_path):
    block = {
        **SUPPLY,
        "phases": {
            **SUPPLY["phases"],
            "red": {"description": "s", "tiers": {**SUPPLY["phases"]["red"]["tiers"], "grey": "needs_review"}},
        },
    }
    assert any("red.tiers.grey: 'grey' is not a tier" in p for p in _problems(tmp_path, block))


def test_lint_refuses_a_phase_silent_on_a_tier(tmp_path):
    block = {
        **SUPPLY,
        "phases": {
            **SUPPLY["phases"],
            "red": {"description": "s", "tiers": {"red": "as_usual", "blue": "needs_review"}},
        },
    }
    assert any("says nothing of tier 'black'" in p for p in _problems(tmp_path, block))


@pytest.mark.parametrize("outcome", ["approved", "off_label_with_evidence"])
def test_lint_refuses_a_phase_that_would_make_a_decision_less_cautious(tmp_path, outcome):
    tiers = {**SUPPLY["phases"]["red"]["tiers"], "black": outcome}
    block = {**SUPPLY, "phases": {**SUPPLY["phases"], "red": {"description": "s", "tiers": tiers}}}
    assert any(f"a phase never makes a decision {outcome}" in p for p in _problems(tmp_path, block))


def test_lint_refuses_a_default_phase_that_is_a_shortage(tmp_path):
    assert any("must decide every tier as_usual" in p for p in _problems(tmp_path, {**SUPPLY, "default_phase": "red"}))
    assert any(
        "'amber' is not one of the phases" in p for p in _problems(tmp_path, {**SUPPLY, "default_phase": "amber"})
    )


def test_lint_refuses_a_supply_source_not_in_sources(tmp_path):
    assert any("'nhs' is not defined in sources.yaml" in p for p in _problems(tmp_path, {**SUPPLY, "source": "nhs"}))


# ---------------------------------------------------------------------- the pure phase adjustment


@pytest.fixture(scope="module")
def tiered():
    from service.decide.formulary import Formulary

    formulary = Formulary.load(TEST_RULEBOOK, cache_size=0)
    yield formulary
    formulary.close()


def _in_phase(formulary, payload, phase, reason="plasma short"):
    decision = formulary.decide(payload)
    rule = formulary.rulebook.rule(decision.rule["id"]) if decision.rule else None
    return supply.in_phase(decision, rule, formulary.rulebook.supply, phase, reason)


def test_a_blue_tier_request_in_a_red_phase_goes_to_review_saying_what_the_phase_changed(tiered):
    decision = _in_phase(tiered, SLE, "red")
    assert decision.outcome == "needs_review" and decision.labelled_products == ()
    assert decision.rationale.startswith(
        "Supply phase red (plasma short): blue-tier indications go to review; rule 'Systemic lupus erythematosus' "
        "would otherwise decide off_label_with_evidence."
    )
    assert decision.supply == {
        "phase": "red",
        "reason": "plasma short",
        "tier": "blue",
        "action": "needs_review",
        "changed": True,
        "rule_outcome": "off_label_with_evidence",
    }


def test_a_blue_tier_request_in_an_amber_phase_is_decided_as_usual_and_records_the_phase(tiered):
    decision = _in_phase(tiered, SLE, "amber")
    assert decision.outcome == "off_label_with_evidence" and decision.supply["changed"] is False
    assert decision.supply["phase"] == "amber" and decision.supply["tier"] == "blue"


@pytest.mark.parametrize("phase", ["amber", "red"])
def test_a_black_tier_request_in_a_shortage_is_not_supported(tiered, phase):
    decision = _in_phase(tiered, CFS, phase)
    assert decision.outcome == "not_supported" and decision.supply["rule_outcome"] == "needs_review"
    assert "black-tier indications are not supported while it lasts" in decision.rationale


def test_a_red_tier_request_is_decided_as_usual_in_every_phase(tiered):
    for phase in ("amber", "red"):
        assert _in_phase(tiered, GBS_CHILD, phase).outcome == "off_label_with_evidence"


def test_the_default_phase_changes_nothing_and_records_nothing(tiered):
    assert _in_phase(tiered, SLE, "normal") == tiered.decide(SLE)
    assert _in_phase(tiered, SLE, None) == tiered.decide(SLE)


def test_a_decision_still_missing_facts_stays_needs_review_even_in_a_refusing_tier(tiered):
    decision = _in_phase(tiered, {"diagnosis": {"code": "G61.0"}}, "red")  # GBS without an age: red, missing
    assert decision.outcome == "needs_review" and decision.missing and decision.supply["changed"] is False


def test_a_phase_the_rulebook_does_not_declare_sends_every_positive_decision_to_review(tiered):
    decision = _in_phase(tiered, GBS_CHILD, "purple")
    assert decision.outcome == "needs_review" and "which rulebook version" in decision.rationale


def test_a_not_supported_decision_stays_not_supported(tiered):
    payload = {"diagnosis": {"code": "M33.20"}, "patient": {"age_years": 50}, "therapies": {"concurrent": []}}
    decision = _in_phase(tiered, payload, "red")
    assert decision.outcome == "not_supported" and decision.supply["changed"] is False


# ---------------------------------------------------------------------- the API, on SQLite and PostgreSQL


def _set(client, token, phase, reason="plasma short"):
    return client.post("/v1/supply", json={"phase": phase, "reason": reason}, headers=bearer(token))


def test_an_admin_sets_the_phase_with_a_reason_and_everyone_sees_it_and_its_history(client, tokens):
    document = client.get("/openapi.json").get_json()
    before = client.get("/v1/supply", headers=bearer(tokens["clinician"]))
    _conforms(document, "/v1/supply", "get", before)
    assert before.get_json()["phase"] == "normal" and before.get_json()["shortage"] is False
    assert before.get_json()["history"] == []
    answer = _set(client, tokens["admin"], "amber")
    _conforms(document, "/v1/supply", "post", answer)
    assert answer.status_code == 201
    _set(client, tokens["admin"], "red", "the supplier recalled two lots")
    seen = client.get("/v1/supply", headers=bearer(tokens["auditor"])).get_json()
    assert (seen["phase"], seen["reason"], seen["set_by"], seen["shortage"]) == (
        "red",
        "the supplier recalled two lots",
        "admin",
        True,
    )
    assert [h["phase"] for h in seen["history"]] == ["red", "amber"] and all(h["intact"] for h in seen["history"])
    assert {p["phase"] for p in seen["phases"]} == {"normal", "amber", "red"}
    records = client.get("/v1/audit?limit=5", headers=bearer(tokens["auditor"])).get_json()["records"]
    assert [r["kind"] for r in records if r["kind"] == "supply_phase"] == ["supply_phase", "supply_phase"]
    assert client.get("/v1/audit/verify", headers=bearer(tokens["auditor"])).get_json()["ok"] is True


def test_only_an_admin_sets_the_phase_and_only_to_a_phase_the_rulebook_declares(client, tokens):
    document = client.get("/openapi.json").get_json()
    assert _set(client, tokens["pharmacist"], "red").status_code == 403
    unknown = _set(client, tokens["admin"], "orange")
    _conforms(document, "/v1/supply", "post", unknown)
    assert unknown.status_code == 400 and unknown.get_json()["error"]["field"] == "phase"
    assert "one of normal, amber, red" in unknown.get_json()["error"]["message"]
    blank = _set(client, tokens["admin"], "red", " \u200b ")
    assert blank.status_code == 400 and blank.get_json()["error"]["field"] == "reason"
    extra = client.post(
        "/v1/supply", json={"phase": "red", "reason": "r", "until": "x"}, headers=bearer(tokens["admin"])
    )
    assert extra.status_code == 400 and extra.get_json()["error"]["field"] == "until"
    assert client.get("/v1/supply", headers=bearer(tokens["admin"])).get_json()["history"] == []


def test_a_decision_in_a_red_phase_records_the_phase_and_opens_a_supply_phase_review(client, tokens):
    _set(client, tokens["admin"], "red")
    decided = client.post("/v1/decisions", json=SLE, headers=bearer(tokens["clinician"])).get_json()
    assert decided["outcome"] == "needs_review" and decided["authorisation_id"] is None
    assert decided["supply"]["phase"] == "red" and decided["supply"]["rule_outcome"] == "off_label_with_evidence"
    case = client.get(f"/v1/reviews/{decided['review_case_id']}", headers=bearer(tokens["pharmacist"])).get_json()
    assert case["reason"] == "supply_phase"
    record = client.get("/v1/audit?limit=1&rule=sle-off-label", headers=bearer(tokens["auditor"])).get_json()[
        "records"
    ][0]
    assert record["body"]["decision"]["supply"]["phase"] == "red"
    _set(client, tokens["admin"], "normal", "supply restored")
    again = client.post(
        "/v1/decisions", json={**SLE, "patient": {"age_years": 40, "ref": "MRN-2"}}, headers=bearer(tokens["clinician"])
    )
    assert again.get_json()["outcome"] == "off_label_with_evidence" and again.get_json()["supply"] is None


def test_an_urgent_request_a_phase_sent_to_review_gets_no_provisional_authorisation(tokens, client):
    _set(client, tokens["admin"], "red")
    body = {"diagnosis": {"code": "M32.9"}, "patient": {"age_years": 40, "ref": "MRN-U"}, "urgent": {"reason": "flare"}}
    decided = client.post("/v1/decisions", json=body, headers=bearer(tokens["clinician"])).get_json()
    assert decided["outcome"] == "needs_review" and decided["authorisation_id"] is None
    assert decided["urgent"]["provisional"] is False


def test_pre_approval_of_an_earlier_authorisation_in_a_tier_the_phase_reviews_warns_naming_the_phase(client, tokens):
    granted = client.post("/v1/decisions", json=SLE, headers=bearer(tokens["clinician"])).get_json()
    assert granted["authorisation_id"]
    order = {
        **SLE,
        "patient": {**SLE["patient"], "weight_kg": 70, "height_cm": 170, "sex": "female"},
        "product": "Privigen",
    }
    plain = client.post("/v1/preapprovals", json=order, headers=bearer(tokens["pharmacist"])).get_json()
    assert not [r for r in plain["reasons"] if r["check"] == "supply_phase"]
    _set(client, tokens["admin"], "red", "national shortage")
    answer = client.post("/v1/preapprovals", json=order, headers=bearer(tokens["pharmacist"]))
    _conforms(client.get("/openapi.json").get_json(), "/v1/preapprovals", "post", answer)
    warnings = [r for r in answer.get_json()["reasons"] if r["check"] == "supply_phase"]
    assert len(warnings) == 1 and warnings[0]["ok"] is True and warnings[0]["warning"] is True
    assert "supply phase red (national shortage): blue-tier indications go to review" in warnings[0]["message"]
    assert granted["authorisation_id"] in warnings[0]["message"]


def test_the_overview_counts_active_authorisations_by_tier_with_what_the_phase_does(client, tokens):
    client.post("/v1/decisions", json=SLE, headers=bearer(tokens["clinician"]))
    client.post(
        "/v1/decisions",
        json={**GBS_CHILD, "patient": {"age_years": 8, "ref": "MRN-G"}},
        headers=bearer(tokens["clinician"]),
    )
    _set(client, tokens["admin"], "red")
    counts = {
        row["tier"]: row
        for row in client.get("/v1/supply", headers=bearer(tokens["pharmacist"])).get_json()["active_authorisations"]
    }
    assert counts["blue"] == {"tier": "blue", "authorisations": 1, "action": "needs_review"}
    assert counts["red"] == {"tier": "red", "authorisations": 1, "action": "as_usual"}
    assert counts["black"]["authorisations"] == 0 and counts["black"]["action"] == "not_supported"


def test_every_instance_on_the_database_follows_a_phase_change_within_a_second(make_app, tokens, monkeypatch):
    first = make_app()
    other = make_app()  # another instance serving the same database
    other_client = other.test_client()
    assert other_client.post("/v1/decisions", json=SLE, headers=bearer(tokens["clinician"])).get_json()["outcome"] == (
        "off_label_with_evidence"
    )
    monkeypatch.setattr(supply_phases, "CHECK_EVERY_SECONDS", 0.0)  # "within a second", without the wait
    assert _set(first.test_client(), tokens["admin"], "red").status_code == 201
    followed = other_client.post(
        "/v1/decisions", json={**SLE, "patient": {"ref": "MRN-3", "age_years": 40}}, headers=bearer(tokens["clinician"])
    )
    assert followed.get_json()["outcome"] == "needs_review" and followed.get_json()["supply"]["phase"] == "red"


def test_a_phase_row_edited_in_the_database_is_not_followed_and_verify_names_it(app, client, tokens, monkeypatch):
    _set(client, tokens["admin"], "amber")
    _set(client, tokens["admin"], "red")
    engine = app.extensions["instance"].database
    with engine.begin() as connection:
        connection.execute(update(supply_rows).where(supply_rows.c.phase == "red").values(phase="normal"))
    monkeypatch.setattr(supply_phases, "CHECK_EVERY_SECONDS", 0.0)
    seen = client.get("/v1/supply", headers=bearer(tokens["admin"])).get_json()
    assert seen["phase"] == "amber" and [h["intact"] for h in seen["history"]] == [False, True]
    verified = client.get("/v1/audit/verify", headers=bearer(tokens["auditor"])).get_json()
    assert verified["ok"] is False and verified["broken_row"]["table"] == "supply_phases"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("single_person_install")  # the second app serves its own rulebook file
def test_a_rulebook_without_phases_refuses_to_set_one(make_app, tmp_path, tokens):
    path = write_rulebook(tmp_path / "plain", data=MINI_DATA)
    plain = make_app(RULEBOOK=str(path))
    answer = _set(plain.test_client(), tokens["admin"], "red")
    assert answer.status_code == 409 and answer.get_json()["error"]["code"] == "no_supply_phases"
    assert plain.test_client().get("/v1/supply", headers=bearer(tokens["admin"])).get_json()["phase"] is None


def test_the_diff_names_a_rule_moved_to_another_tier_and_a_phase_changed(tmp_path):
    import shutil

    from service.rulebook.diff import diff, words
    from service.rulebook.reader import load_rulebook

    shutil.copytree(TEST_RULEBOOK.parent, tmp_path / "book")
    path = tmp_path / "book" / TEST_RULEBOOK.name
    text = path.read_text()
    text = text.replace(
        "    title: Systemic lupus erythematosus\n    tier: blue\n",
        "    title: Systemic lupus erythematosus\n    tier: grey\n",
        1,
    )
    text = text.replace(
        "tiers: {red: as_usual, blue: as_usual, grey: needs_review, black: not_supported}",
        "tiers: {red: as_usual, blue: needs_review, grey: needs_review, black: not_supported}",
        1,
    )
    path.write_text(text)
    said = words(diff(load_rulebook(TEST_RULEBOOK), load_rulebook(path)))
    assert "rule sle-off-label: tier blue -> grey" in said
    assert (
        "rulebook: supply.phases.amber {red as_usual; blue as_usual; grey needs_review; black not_supported} -> {red as_usual; blue needs_review; grey needs_review; black not_supported}"
        in said
    )


# ---------------------------------------------------------------------- the shell


def test_the_shell_sets_and_shows_the_phase_and_the_service_follows(cli_instance, monkeypatch):
    from click.testing import CliRunner

    from service.cli import main

    app, _ = cli_instance
    runner = CliRunner()
    refused = runner.invoke(main, ["supply", "set", "orange", "--reason", "r"])
    assert refused.exit_code == 2 and "phase must be one of normal, amber, red" in refused.output
    done = runner.invoke(main, ["supply", "set", "red", "--reason", "two lots recalled"], catch_exceptions=False)
    assert done.exit_code == 0 and "supply phase: red (two lots recalled)" in done.output
    shown = runner.invoke(main, ["supply", "show"], catch_exceptions=False).output
    assert "supply phase: red (shortage), set " in shown and "by cli: two lots recalled" in shown
    assert "red          as_usual       needs_review   needs_review   not_supported" in shown
    monkeypatch.setattr(supply_phases, "CHECK_EVERY_SECONDS", 0.0)
    from service.store.tokens import create_token

    token = create_token(app.extensions["instance"].database, "ward", "clinician")
    decided = app.test_client().post("/v1/decisions", json=SLE, headers=bearer(token)).get_json()
    assert decided["outcome"] == "needs_review" and decided["supply"]["reason"] == "two lots recalled"


# ---------------------------------------------------------------------- the console


def test_the_console_shows_a_shortage_on_every_page_and_an_admin_sets_the_phase(client, tokens):
    from .conftest import csrf_token, sign_in

    sign_in(client, tokens["admin"])
    page = client.get("/console/supply").get_data(as_text=True)
    assert "Phase in force: <strong>normal</strong>" in page and "supply-banner" not in page
    refused = client.post(
        "/console/supply", data={"phase": "red", "reason": " ", "csrf_token": csrf_token(client, "/console/supply")}
    )
    assert refused.status_code == 400 and "a reason is required" in refused.get_data(as_text=True)
    done = client.post(
        "/console/supply",
        data={"phase": "red", "reason": "two lots recalled", "csrf_token": csrf_token(client, "/console/supply")},
    )
    assert done.status_code == 302
    for path in ("/console/supply", "/console/request", "/console/formulary", "/console/reviews"):
        shown = client.get(path).get_data(as_text=True)
        assert "Supply phase red</strong>: two lots recalled" in shown, path
    page = client.get("/console/supply").get_data(as_text=True)
    assert '<th scope="row">blue</th><td>0</td><td>needs review</td>' in page


def test_only_an_admin_sees_the_form_to_set_the_phase(client, tokens):
    from .conftest import csrf_token, sign_in

    sign_in(client, tokens["pharmacist"])
    page = client.get("/console/supply").get_data(as_text=True)
    assert "Active authorisations by tier" in page and "Set the phase" not in page
    refused = client.post(
        "/console/supply", data={"phase": "red", "reason": "r", "csrf_token": csrf_token(client, "/console/supply")}
    )
    assert refused.status_code == 403
