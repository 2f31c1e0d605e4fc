"""The `formulary` command as a pharmacist uses it from the shell."""

import json
import os

from click.testing import CliRunner

from service.cli import main
from service.store.audit import Filters

from .conftest import MINI_RULES, TEST_RULEBOOK


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_check_explains_the_decision(mini_path):
    result = run("check", "--code", "G61.0", "--age", "8", "--rulebook", str(mini_path))
    assert result.exit_code == 0
    assert "off_label_with_evidence" in result.output and "gbs-children" in result.output
    assert "Rationale:" in result.output and "[review, controlled, benefit]" in result.output


def test_check_json_is_the_decision_object(mini_path):
    result = run(
        "check",
        "--code",
        "M33.10",
        "--age",
        "50",
        "--concurrent",
        "corticosteroids",
        "--json",
        "--rulebook",
        str(mini_path),
    )
    data = json.loads(result.output)
    assert data["outcome"] == "off_label_with_evidence" and data["rule"]["id"] == "myositis-with-steroids"


def test_check_no_concurrent_states_an_empty_list(mini_path):
    result = run("check", "--code", "M33.10", "--no-concurrent", "--json", "--rulebook", str(mini_path))
    assert json.loads(result.output)["outcome"] == "not_supported"


def test_check_with_a_bad_code_exits_non_zero_naming_it(mini_path):
    result = run("check", "--code", "G61.99", "--rulebook", str(mini_path))
    assert result.exit_code == 2 and "'G61.99' is not an ICD-10-CM code" in result.output


def test_check_with_an_unknown_therapy_names_it(mini_path):
    result = run("check", "--code", "G61.0", "--failed", "aspirin", "--rulebook", str(mini_path))
    assert result.exit_code == 2 and "'aspirin' is not in the therapy vocabulary" in result.output


def test_rules_prints_one_row_a_rule(mini_path):
    result = run("rules", "--rulebook", str(mini_path))
    assert result.exit_code == 0
    header, *rows = result.output.splitlines()[1:]
    assert header.split()[:2] == ["RULE", "CODES"]
    assert [row.split()[0] for row in rows] == [rule["id"] for rule in MINI_RULES]


def test_rules_json_lists_rules_and_sources(mini_path):
    data = json.loads(run("rules", "--json", "--rulebook", str(mini_path)).output)
    assert [s["id"] for s in data["sources"]] == ["labels", "review"]
    assert data["rules"][2]["labels"] == [
        {
            "product": "Alpha",
            "age_years": {"at_least": 18.0, "under": None},
            "routes": ["intravenous"],
            "note": None,
            "source": "Test prescribing information",
            "revised": "2026-01",
        }
    ]


def test_lint_exits_non_zero_on_a_problem(tmp_path, mini_path):
    assert run("lint", str(mini_path.parent)).exit_code == 0
    mini_path.write_text(mini_path.read_text().replace("off_label_with_evidence", "approved-ish", 1))
    result = run("lint", str(mini_path))
    assert result.exit_code == 1 and "'approved-ish' is not one of" in result.output


def test_without_rulebook_the_commands_use_FORMULARY_RULEBOOK(monkeypatch, mini_path):
    monkeypatch.setenv("FORMULARY_RULEBOOK", str(mini_path))
    gbs = json.loads(run("check", "--code", "G61.0", "--age", "8", "--json").output)
    assert (gbs["rulebook"]["name"], gbs["rule"]["id"]) == ("Mini", "gbs-children")
    assert run("rules").output.startswith("Mini 1.0")
    assert run("lint").output == f"ok: 1 rulebook file(s) clean: {mini_path}\n"


# The commands below decide on the test rulebook (tests/rulebook/), named with --rulebook.


def test_diagnose_shows_candidates_with_scores_without_deciding():
    result = run("diagnose", "chronic fatigue", "--rulebook", str(TEST_RULEBOOK))
    assert result.exit_code == 0 and "could mean several diagnoses" in result.output
    assert "G93.32" in result.output and "R53.82" in result.output
    assert "Outcome" not in result.output


def test_diagnose_resolves_a_typo_and_says_how():
    result = run("diagnose", "guillian bare syndrom", "--rulebook", str(TEST_RULEBOOK))
    assert "G61.0 Guillain-Barre syndrome  [matched by fuzzy (score" in result.output


def test_check_accepts_a_text_diagnosis():
    result = run(
        "check", "--text", "wegeners granulomatosis", "--age", "52", "--json", "--rulebook", str(TEST_RULEBOOK)
    )
    data = json.loads(result.output)
    assert data["diagnosis"]["code"] == "M31.3" and data["diagnosis"]["matched_by"] == "synonym"


def test_a_new_instance_is_created_owner_only(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    monkeypatch.setenv("FORMULARY_INSTANCE_PATH", str(instance))
    monkeypatch.delenv("FORMULARY_SECRET", raising=False)
    monkeypatch.delenv("FORMULARY_DATABASE_URL", raising=False)
    previous = os.umask(0)  # nothing masked: the modes are the code's own
    try:
        assert run("tokens", "create", "--name", "ward-7", "--role", "clinician").exit_code == 0
    finally:
        os.umask(previous)
    modes = {path: path.stat().st_mode & 0o777 for path in [instance, *instance.rglob("*")]}
    assert {instance, instance / "logs", instance / "secret", instance / "formulary.db"} <= modes.keys()
    assert {path: oct(mode) for path, mode in modes.items() if mode != (0o700 if path.is_dir() else 0o600)} == {}


def test_preapprove_as_must_name_an_active_token(tmp_path, monkeypatch):
    from .test_workflow import CSV

    monkeypatch.setenv("FORMULARY_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("FORMULARY_DATABASE_URL", raising=False)
    orders = tmp_path / "orders.csv"
    orders.write_text(CSV)
    run("tokens", "create", "--name", "pharmacy-1", "--role", "pharmacist")
    run("tokens", "create", "--name", "gone", "--role", "pharmacist")
    run("tokens", "revoke", "gone")
    for name in ("nobody", "gone"):
        refused = run("preapprove", str(orders), "--as", name)
        assert refused.exit_code == 1
        assert f"--as {name!r}: no active token has this name" in refused.output
    for given in (["--as", "pharmacy-1"], []):  # a token's name, or 'cli' when none is given
        assert run("preapprove", str(orders), *given).exit_code == 0


# --- Qualifying criteria (issue 16), on the test rulebook's cll-* and evans-* rules -----------------


def _check_json(*args):
    import datetime

    from service import clock

    moment = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
    original, clock.now = clock.now, lambda: moment
    try:
        result = run("check", *args, "--json", "--rulebook", str(TEST_RULEBOOK))
    finally:
        clock.now = original
    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    return decision["outcome"], decision["rule"]["id"], decision["missing"]


def test_check_observation_option_converts_units_on_both_sides_of_the_threshold():
    assert _check_json("--code", "C91.10", "--observation", "igg_serum=399mg/dL@2026-11-01")[:2] == (
        "off_label_with_evidence",
        "cll-low-igg",
    )
    assert _check_json("--code", "C91.10", "--observation", "igg_serum=4.0g/L@2026-11-01")[1] == "cll-review"


def test_check_stale_observation_is_missing_with_the_date_it_needs():
    assert _check_json("--code", "C91.10", "--observation", "igg_serum=3.2g/L@2026-09-01") == (
        "needs_review",
        "cll-low-igg",
        ["igg_serum taken on or after 2026-09-02"],
    )


EVANS = [
    "--code",
    "D69.41",
    "--observation",
    "platelets=30000/uL@2026-11-25",
    "--confirmed-by",
    "haematologist",
    "--specialty",
    "immunologist",
    "--course",
    "initial",
    "--failed",
    "prednisone:12",
]


def test_check_takes_every_criterion_option():
    assert _check_json(*EVANS, "--onset-date", "2025-06-01")[:2] == ("off_label_with_evidence", "evans-criteria")
    assert _check_json(*EVANS, "--phase", "chronic")[:2] == ("off_label_with_evidence", "evans-criteria")
    assert _check_json(*EVANS, "--phase", "persistent")[:2] == ("needs_review", "evans-review")
    assert _check_json(*EVANS[:-1], "prednisone:11", "--phase", "chronic")[:2] == ("needs_review", "evans-review")
    assert _check_json(*EVANS[:-1], "prednisone", "--phase", "chronic") == (
        "needs_review",
        "evans-criteria",
        ["therapies.failed[corticosteroids].weeks"],
    )


def test_check_bad_observation_names_the_option():
    result = run(
        "check", "--code", "C91.10", "--observation", "igg_serum=3g/dL@2026-11-01", "--rulebook", str(TEST_RULEBOOK)
    )
    assert result.exit_code == 2 and "(--observation igg_serum=3g/dL@2026-11-01)" in result.output
    result = run("check", "--code", "C91.10", "--observation", "igg_serum 3", "--rulebook", str(TEST_RULEBOOK))
    assert result.exit_code == 2 and "write MEASURE=VALUEUNIT@YYYY-MM-DD" in result.output
    result = run("check", "--code", "D69.41", "--confirmed-by", "surgeon", "--rulebook", str(TEST_RULEBOOK))
    assert result.exit_code == 2 and "(--confirmed-by)" in result.output


# --- Continuing authorisations (issue 16): the due list and measurements from the shell -------------


def _authorised(app, moment, days_ago: int, ref: str) -> str:
    import datetime

    from service.store.tokens import create_token

    from .conftest import bearer

    token = create_token(app.extensions["instance"].database, f"dr-{ref}", "clinician")
    today = moment["now"]
    moment["now"] = today - datetime.timedelta(days=days_ago)
    body = {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8, "ref": ref}}
    decision = app.test_client().post("/v1/decisions", json=body, headers=bearer(token)).get_json()
    moment["now"] = today
    return decision["authorisation_id"]


def test_authorisations_due_prints_those_ending_soonest_first_with_the_overdue(cli_instance):
    app, moment = cli_instance
    later = _authorised(app, moment, 150, "MRN-1")  # last valid day in 29 days
    sooner = _authorised(app, moment, 170, "MRN-2")  # in 9 days
    ended = _authorised(app, moment, 185, "MRN-3")  # 6 days ago
    _authorised(app, moment, 100, "MRN-4")  # in 79 days: not due
    result = run("authorisations", "due")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["valid", "until", "days", "left", "code", "basis", "id", "unmeasured"]
    assert [(line.split()[1], line.split()[-2], line.split()[-1]) for line in lines[1:4]] == [
        ("-6", ended, "-"),
        ("9", sooner, "-"),
        ("29", later, "-"),
    ]
    assert "MRN" not in result.output
    not_overdue = run("authorisations", "due", "--days", "10", "--no-overdue")
    assert [line.split()[-2] for line in not_overdue.output.splitlines()[1:2]] == [sooner]
    assert run("authorisations", "due", "--days", "366").exit_code == 2


def test_authorisations_measure_records_a_measurement_converted_and_names_a_bad_one(cli_instance):
    app, moment = cli_instance
    authorisation_id = _authorised(app, moment, 10, "MRN-1")
    result = run("authorisations", "measure", authorisation_id, "--observation", "igg_serum=710mg/dL@2026-11-20")
    assert result.exit_code == 0, result.output
    assert f"recorded igg_serum 7.1 g/L taken on 2026-11-20 against {authorisation_id}" in result.output
    [measurement] = [r for r in app.extensions["instance"].audit.stream(Filters()) if r["kind"] == "measurement"]
    assert measurement["kind"] == "measurement" and measurement["requester"] == "cli"
    bad = run("authorisations", "measure", authorisation_id, "--observation", "igg_serum=7.1g/dL@2026-11-20")
    assert bad.exit_code == 2 and "unit must be one of" in bad.output
    assert "(--observation igg_serum=7.1g/dL@2026-11-20)" in bad.output
    missing = run("authorisations", "measure", "nope", "--observation", "igg_serum=7.1g/L@2026-11-20")
    assert missing.exit_code == 1 and "no authorisation nope" in missing.output
    assert app.extensions["instance"].audit.verify()["ok"] is True


def test_authorisations_continue_decides_a_continuation_and_prints_the_measures_compared(cli_instance):
    import datetime

    from service.store.tokens import create_token

    from .conftest import bearer

    app, moment = cli_instance
    token = create_token(app.extensions["instance"].database, "dr-cidp", "clinician")
    today = moment["now"]
    moment["now"] = today - datetime.timedelta(days=170)
    body = {
        "diagnosis": {"code": "G61.81"},
        "patient": {"age_years": 50, "ref": "MRN-9"},
        "observations": [{"measure": "incat", "value": 6, "unit": "points", "taken_on": "2026-06-01"}],
    }
    first = app.test_client().post("/v1/decisions", json=body, headers=bearer(token)).get_json()["authorisation_id"]
    moment["now"] = today
    bad = run("authorisations", "continue", first, "--observation", "incat=40points@2026-11-25")
    assert bad.exit_code == 2 and "observations[0].value must be between 0 and 10" in bad.output
    result = run("authorisations", "continue", first, "--observation", "incat=4points@2026-11-25")
    assert result.exit_code == 0, result.output
    assert "Outcome:   approved" in result.output
    assert "incat: 6 -> 4 points (incat improved by at least 1 points): met" in result.output
    assert "Granted:   authorisation" in result.output and "MRN" not in result.output
    again = run("authorisations", "continue", first)
    assert again.exit_code == 1 and "is already continued by authorisation" in again.output
