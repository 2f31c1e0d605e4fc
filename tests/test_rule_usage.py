"""Rule usage (issue 18): how often each rule decided in a window, the rules never reached, and the
codes requests named that no rule decided; through the API, the console and the CLI, on the test
rulebook, on SQLite and PostgreSQL."""

import datetime

import pytest

from .conftest import TEST_RULEBOOK, bearer, sign_in
from .test_cli import run


def decide(client, token, body):
    response = client.post("/v1/decisions", json=body, headers=bearer(token))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@pytest.fixture
def decided(client, tokens, day):
    """Decisions of 2026-11-20 (gbs-children twice, gbs-adults, a code no rule covers, a misspelt
    text only proposed, an unclear text), and one of 2026-06-01 (gbs-children)."""
    token = tokens["clinician"]
    day.set(datetime.date(2026, 6, 1))
    decide(client, token, {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8}})
    day.set(datetime.date(2026, 11, 20))
    for age in (8, 9):
        decide(client, token, {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": age}})
    decide(client, token, {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 40}})
    decide(client, token, {"diagnosis": {"code": "R69"}})
    decide(client, token, {"diagnosis": {"text": "guillian bare syndrom"}, "patient": {"age_years": 8}})
    decide(client, token, {"diagnosis": {"text": "chronic fatigue"}})
    day.set(datetime.date(2026, 12, 1))


def usage(client, token, query=""):
    response = client.get(f"/v1/rulebook/usage{query}", headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_usage_counts_each_rules_decisions_in_the_window_by_outcome(client, tokens, decided):
    found = usage(client, tokens["auditor"])
    assert (found["since"], found["until"]) == ("2026-09-02", None)  # the last 90 days
    rules = {rule["id"]: rule for rule in found["rules"]}
    assert rules["gbs-children"]["decisions"] == 2
    assert rules["gbs-children"]["outcomes"] == {"off_label_with_evidence": 2}
    assert rules["gbs-adults"]["outcomes"] == {"needs_review": 1}
    assert "gbs-children" not in found["never_reached"] and "pi-labelled" in found["never_reached"]
    whole_year = usage(client, tokens["auditor"], "?since=2026-01-01")
    assert {r["id"]: r["decisions"] for r in whole_year["rules"]}["gbs-children"] == 3
    june = usage(client, tokens["auditor"], "?since=2026-06-01&until=2026-06-02")
    assert {r["id"]: r["decisions"] for r in june["rules"]}["gbs-children"] == 1


def test_usage_lists_codes_no_rule_decided_but_not_approximate_proposals(client, tokens, decided):
    found = usage(client, tokens["clinician"])
    assert [(item["code"], item["requests"]) for item in found["no_rule"]] == [("R69", 1)]
    assert found["no_rule"][0]["description"] == "Illness, unspecified"
    assert found["unclear_diagnosis"] == 1


@pytest.mark.parametrize(
    "query, field",
    [("?since=01/11/2026", "since"), ("?since=2026-11-02&until=2026-11-01", "until"), ("?from=2026-11-01", "from")],
)
def test_a_bad_window_is_a_400_naming_the_argument(client, tokens, query, field):
    response = client.get(f"/v1/rulebook/usage{query}", headers=bearer(tokens["auditor"]))
    assert response.status_code == 400 and response.get_json()["error"]["field"] == field


def test_the_console_shows_rule_usage_from_the_formulary_page(client, tokens, decided):
    sign_in(client, tokens["pharmacist"])
    assert 'href="/console/formulary/usage"' in client.get("/console/formulary").get_data(as_text=True)
    page = client.get("/console/formulary/usage").get_data(as_text=True)
    assert "Decisions per rule" in page and "gbs-children</a>" in page and "<td>R69</td>" in page
    assert client.get("/console/formulary/usage?since=nonsense").status_code == 400


def test_formulary_rules_usage_prints_the_counts_the_never_reached_and_the_codes(cli_instance):
    from service.store.tokens import create_token

    app, _ = cli_instance
    client = app.test_client()
    token = create_token(app.extensions["instance"].database, "dr-usage", "clinician")
    decide(client, token, {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8}})
    decide(client, token, {"diagnosis": {"code": "R69"}})
    result = run("rules", "--usage", "--rulebook", str(TEST_RULEBOOK))
    assert result.exit_code == 0, result.output
    assert "decisions from 2026-09-02 to now" in result.output
    assert any(line.split()[:2] == ["gbs-children", "1"] for line in result.output.splitlines())
    assert "never reached" in result.output and "R69" in result.output
    assert run("rules", "--since", "2026-01-01").exit_code == 2
    bad = run("rules", "--usage", "--since", "yesterday", "--rulebook", str(TEST_RULEBOOK))
    assert bad.exit_code == 2 and "--since: since must be a date" in bad.output
