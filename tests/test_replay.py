"""Replay (issue 18): recorded decision requests decided again on a candidate rulebook, writing
nothing; the outcome change matrix, each changed decision, and the exit status that stops a
candidate which would refuse what was granted. On the test rulebook (SQLite, the CLI's instance)."""

import json
import shutil

import pytest
from sqlalchemy import func, select

from service.store.tables import audit_records
from service.store.tokens import create_token

from .conftest import TEST_RULEBOOK, bearer
from .test_cli import run


@pytest.fixture
def recorded(cli_instance, tmp_path):
    """Decisions recorded on the test rulebook: paediatric GBS twice (off-label), adult GBS (review),
    polymyositis on steroids with a patient reference (off-label); and a candidate rulebook."""
    app, moment = cli_instance
    client = app.test_client()
    token = bearer(create_token(app.extensions["instance"].database, "dr-replay", "clinician"))
    for body in (
        {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8}},
        {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 9}},
        {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 40}},
        {
            "diagnosis": {"code": "M33.20"},
            "patient": {"age_years": 50, "ref": "MRN-1"},
            "therapies": {"concurrent": ["prednisone"]},
        },
    ):
        assert client.post("/v1/decisions", json=body, headers=token).status_code == 201
    shutil.copytree(TEST_RULEBOOK.parent, tmp_path / "candidate")
    return app, tmp_path / "candidate" / TEST_RULEBOOK.name, moment


def _edit_rule(path, rule_id: str, old: str, new: str):
    text = path.read_text()
    start = text.index(f"  - id: {rule_id}\n")
    path.write_text(text[:start] + text[start:].replace(old, new, 1))


def _records(app) -> int:
    with app.extensions["instance"].database.connect() as connection:
        return connection.execute(select(func.count()).select_from(audit_records)).scalar_one()


def test_replay_reports_the_outcome_matrix_and_each_changed_decision_and_writes_nothing(recorded):
    app, candidate, _ = recorded
    _edit_rule(candidate, "gbs-children", "age_years: {under: 18}", "age_years: {under: 9}")
    _edit_rule(candidate, "gbs-adults", "age_years: {at_least: 18}", "age_years: {at_least: 9}")
    before = _records(app)
    result = run("replay", "--rulebook", str(candidate), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["replayed"] == 4 and report["changed_total"] == 1
    assert report["matrix"]["needs_review"] == {"needs_review": 1}
    assert report["matrix"]["off_label_with_evidence"] == {"needs_review": 1, "off_label_with_evidence": 2}
    [change] = report["changed"]
    assert change["old"] == {"outcome": "off_label_with_evidence", "rule": "gbs-children"}
    assert change["new"]["outcome"] == "needs_review" and change["new"]["rule"] == "gbs-adults"
    assert change["code"] == "G61.0"
    assert report["positive_to_not_supported"] == [] and report["unreadable"] == []
    assert _records(app) == before  # nothing written


def test_a_candidate_that_would_refuse_a_granted_use_exits_1_unless_accepted(recorded):
    _, candidate, _ = recorded
    _edit_rule(candidate, "gbs-children", "outcome: off_label_with_evidence", "outcome: not_supported")
    _edit_rule(candidate, "gbs-children", "effect: benefit", "effect: no_benefit")
    refused = run("replay", "--rulebook", str(candidate))
    assert refused.exit_code == 1, refused.output
    assert "2 positive decisions would become not_supported (exit 1 unless --accept)" in refused.output
    assert "off_label_with_evidence (gbs-children) -> not_supported (gbs-children)" in refused.output
    assert run("replay", "--rulebook", str(candidate), "--accept").exit_code == 0


def test_the_same_rulebook_replays_with_no_change_and_a_window_selects_by_day(recorded):
    _, candidate, _ = recorded
    same = run("replay", "--rulebook", str(candidate))
    assert same.exit_code == 0 and "4 decisions replayed" in same.output and "0 would change" in same.output
    assert "0 decisions replayed" in run("replay", "--rulebook", str(candidate), "--since", "2026-12-02").output
    assert "4 decisions replayed" in run("replay", "--rulebook", str(candidate), "--until", "2026-12-02").output
    assert run("replay", "--rulebook", str(candidate), "--since", "December").exit_code == 2


def test_a_request_is_replayed_as_of_the_day_it_was_decided(recorded):
    import datetime

    app, candidate, moment = recorded
    token = bearer(create_token(app.extensions["instance"].database, "dr-cll", "clinician"))
    body = {
        "diagnosis": {"code": "C91.10"},
        "patient": {"age_years": 70},
        "observations": [{"measure": "igg_serum", "value": 3.1, "unit": "g/L", "taken_on": "2026-11-20"}],
    }
    decided = app.test_client().post("/v1/decisions", json=body, headers=token).get_json()
    assert decided["outcome"] == "off_label_with_evidence"
    moment["now"] = datetime.datetime(2027, 6, 1, 12, tzinfo=datetime.UTC)  # the IgG is stale by then
    output = run("replay", "--rulebook", str(candidate), "--json").output
    report = json.loads(output[output.index("{") :])
    assert report["replayed"] == 5 and report["changed_total"] == 0
