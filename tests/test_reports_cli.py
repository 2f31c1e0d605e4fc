"""formulary reports utilisation|stewardship: the same figures as GET /v1/reports/*, as text, CSV or JSON."""

import csv
import io
import json

from click.testing import CliRunner

from service.cli import main
from service.store.tokens import create_token

from .conftest import bearer


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _decide(app) -> None:
    """Two decisions on 2026-12-01: a child's GBS (an authorisation) and an adult's (needs review)."""
    token = create_token(app.extensions["instance"].database, "dr-a", "clinician")
    client = app.test_client()
    for ref, age in (("MRN-1", 8), ("MRN-2", 40)):
        body = {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": age, "ref": ref}}
        assert client.post("/v1/decisions", json=body, headers=bearer(token)).status_code == 201


def test_utilisation_prints_a_table_of_the_groups_with_the_total(cli_instance):
    app, _ = cli_instance
    _decide(app)
    result = run("reports", "utilisation", "--since", "2026-12-01", "--until", "2026-12-01")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "utilisation by diagnosis, 2026-12-01 to 2026-12-01"
    assert lines[1].split()[:2] == ["diagnosis", "requests"]
    # label, requests, approved, off label with evidence, needs review, not supported, patients, g given, g wasted
    assert lines[2].startswith("Guillain-Barré syndrome") and lines[2].split()[-8:] == "2 0 1 1 0 2 0 0".split()
    assert lines[3].split() == "total 2 0 1 1 0 2 0 0".split()
    assert "cost, total: none" in lines
    assert "MRN" not in result.output


def test_utilisation_as_json_is_the_apis_answer(cli_instance):
    app, _ = cli_instance
    _decide(app)
    result = run("reports", "utilisation", "--group-by", "month", "--json")
    printed = json.loads(result.output)
    token = create_token(app.extensions["instance"].database, "audit", "auditor")
    api = app.test_client().get("/v1/reports/utilisation?group_by=month", headers=bearer(token)).get_json()
    assert printed == api and printed["groups"][0]["key"] == "2026-12"


def test_utilisation_as_csv_has_a_header_and_a_row_a_group(cli_instance):
    app, _ = cli_instance
    _decide(app)
    rows = list(csv.reader(io.StringIO(run("reports", "utilisation", "--group-by", "outcome", "--csv").output)))
    assert rows[0][:3] == ["group", "label", "requests"]
    assert [(row[0], row[2]) for row in rows[1:]] == [
        ("needs_review", "1"),
        ("off_label_with_evidence", "1"),
        ("total", "2"),
    ]


def test_stewardship_prints_a_figure_a_line_and_json(cli_instance):
    app, _ = cli_instance
    _decide(app)
    text = run("reports", "stewardship", "--since", "2026-12-01").output
    assert any(line.split() == ["decisions.total", "2"] for line in text.splitlines())
    assert any(line.startswith("review_turnaround.median_hours") and "not known" in line for line in text.splitlines())
    assert "note (adherence):" in text
    figures = json.loads(run("reports", "stewardship", "--json").output)
    assert figures["decisions"]["total"] == 2


def test_a_bad_period_is_a_usage_error_naming_the_option(cli_instance):
    result = run("reports", "stewardship", "--since", "2026-13-01")
    assert result.exit_code == 2 and "--since: since must be a date as YYYY-MM-DD" in result.output
    result = run("reports", "utilisation", "--group-by", "ward")
    assert result.exit_code == 2 and "ward" in result.output
    result = run("reports", "utilisation", "--csv", "--json")
    assert result.exit_code == 2 and "alternatives" in result.output
