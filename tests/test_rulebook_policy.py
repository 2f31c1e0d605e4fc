"""Clinical policy the rulebook states, not Python: which outcomes grant an authorisation and for how
long, the dose-determining weight rule and vial rounding. A rulebook that leaves one out, or lets an
outcome grant what it cannot, is refused naming the field; the service applies what it states."""

import copy
import datetime
import shutil

import pytest
import yaml

from service import clock
from service.rulebook.model import RulebookError
from service.rulebook.reader import load_rulebook
from service.store.tokens import create_token
from service.web.app import create_app

from .conftest import MINI_DOSING, TEST_RULEBOOK, bearer, write_rulebook


def refusal(tmp_path, edit) -> str:
    """The problems a copy of the mini rulebook is refused for, after `edit(content)` changes it."""
    path = write_rulebook(tmp_path)
    content = yaml.safe_load(path.read_text())
    content["dosing"] = copy.deepcopy(MINI_DOSING)  # edited below: never the shared MINI_DOSING
    edit(content)
    path.write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True))
    with pytest.raises(RulebookError) as refused:
        load_rulebook(path)
    return "\n".join(refused.value.problems)


@pytest.mark.parametrize("outcome", ["needs_review", "not_supported"])
def test_an_outcome_that_is_not_positive_can_never_grant_an_authorisation(tmp_path, outcome):
    problems = refusal(tmp_path, lambda c: c["authorisations"]["granted_by"].append(outcome))
    assert (
        f"mini.yaml: authorisations.granted_by: '{outcome}' can never grant an authorisation: only approved "
        "and off_label_with_evidence can"
    ) in problems


def test_the_authorisation_period_has_no_default_in_python(tmp_path):
    assert "mini.yaml: authorisations: missing required field 'days'" in refusal(
        tmp_path, lambda c: c["authorisations"].pop("days")
    )
    assert "mini.yaml: authorisations: missing: give granted_by" in refusal(tmp_path, lambda c: c.pop("authorisations"))


def test_a_period_in_the_header_of_an_earlier_rulebook_is_refused_saying_where_it_moved(tmp_path):
    problems = refusal(tmp_path, lambda c: c["rulebook"].update(authorisation_days=180))
    moved = [line for line in problems.splitlines() if "authorisation_days" in line]
    assert len(moved) == 1 and moved[0].endswith(
        "mini.yaml: rulebook.authorisation_days: has moved to authorisations.days, beside authorisations.granted_by "
        "(rulebook format of 2026.12.1)"
    )


@pytest.mark.parametrize("field", ["adjustment_factor", "ideal_kg_per_inch_over_five_feet", "source"])
def test_a_weight_rule_missing_a_field_is_refused_naming_it(tmp_path, field):
    problems = refusal(tmp_path, lambda c: c["dosing"]["weight"].pop(field))
    assert f"mini.yaml: dosing.weight: missing required field '{field}'" in problems


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda w: w["actual_weight_for"].pop("pregnant"),
            "dosing.weight.actual_weight_for: missing required field 'pregnant'",
        ),
        (
            lambda w: w.update(adjustment_factor=1.4),
            "dosing.weight.adjustment_factor: must be between 0 and 1, found 1.4",
        ),
        (lambda w: w.update(other_sexes_use="other"), "dosing.weight.other_sexes_use: 'other' has no base under"),
        (
            lambda w: w["ideal_kg_at_five_feet"].update(woman=45.5),
            "dosing.weight.ideal_kg_at_five_feet: unknown field 'woman'",
        ),
    ],
)
def test_a_weight_rule_that_cannot_be_computed_is_refused(tmp_path, edit, expected):
    assert expected in refusal(tmp_path, lambda c: edit(c["dosing"]["weight"]))


def test_the_rounding_rule_is_required_and_bounded(tmp_path):
    assert "mini.yaml: dosing: missing required field 'rounding'" in refusal(
        tmp_path, lambda c: c["dosing"].pop("rounding")
    )
    assert "mini.yaml: dosing.rounding.tolerance: must be between 0 and 0.5, found 2" in refusal(
        tmp_path, lambda c: c["dosing"]["rounding"].update(tolerance=2)
    )


@pytest.fixture
def approvals_alone_grant_90_days(tmp_path, monkeypatch):
    """The service on a copy of the test rulebook whose approved decisions alone grant, for 90 days."""
    folder = tmp_path / "rulebook"
    shutil.copytree(TEST_RULEBOOK.parent, folder)
    path = folder / TEST_RULEBOOK.name
    text = path.read_text()
    granted = "authorisations:\n  granted_by: [approved, off_label_with_evidence]\n  days: 180\n"
    assert granted in text
    path.write_text(text.replace(granted, "authorisations:\n  granted_by: [approved]\n  days: 90\n"))
    monkeypatch.setattr(clock, "utc_today", lambda: datetime.date(2026, 11, 22))
    app = create_app(
        {
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'f.db'}",
            "RULEBOOK": str(path),
            "WARM": False,
        }
    )
    yield app
    app.extensions["active_rulebook"].close()
    app.extensions["instance"].database.dispose()


def test_only_the_outcomes_the_rulebook_names_grant_an_authorisation_for_their_period(approvals_alone_grant_90_days):
    app = approvals_alone_grant_90_days
    client = app.test_client()
    token = create_token(app.extensions["instance"].database, "clinician", "clinician")
    off_label = client.post(
        "/v1/decisions",
        headers=bearer(token),
        json={
            "diagnosis": {"code": "M33.20"},
            "patient": {"age_years": 50, "ref": "MRN-1"},
            "therapies": {"concurrent": ["prednisone"]},
        },
    ).get_json()
    assert off_label["outcome"] == "off_label_with_evidence" and off_label["authorisation_id"] is None
    approved = client.post(
        "/v1/decisions",
        headers=bearer(token),
        json={"diagnosis": {"code": "D83.9"}, "patient": {"age_years": 30, "ref": "MRN-2"}},
    ).get_json()
    assert approved["outcome"] == "approved" and approved["authorisation_id"]
    listed = client.get("/v1/authorisations?patient_ref=MRN-2", headers=bearer(token)).get_json()
    [authorisation] = listed["authorisations"]
    assert authorisation["valid_until"] == "2027-02-19"  # 90 days from 2026-11-22
