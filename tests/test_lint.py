"""`formulary lint` refuses every kind of unsafe rulebook, naming the file, rule and field."""

import copy
import json

import pytest

from service.rulebook.lint import lint_paths, load_checked
from service.rulebook.model import RulebookError
from service.rulebook.reader import load_rulebook

from .conftest import MINI_DATA, MINI_DIAGNOSES, MINI_RULES, evidence, write_rulebook


def problems_for(tmp_path, rules=None, diagnoses=None, data=None) -> list[str]:
    """What load_checked refuses the rulebook for: reading and lint problems alike."""
    path = write_rulebook(tmp_path, rules=rules, diagnoses=diagnoses, data=data)
    try:
        load_checked(path)
    except RulebookError as error:
        return error.problems
    return []


def edited_rules(rule_id, **changes):
    rules = copy.deepcopy(MINI_RULES)
    rule = next(r for r in rules if r["id"] == rule_id)
    for key, value in changes.items():
        if value is None:
            rule.pop(key, None)
        else:
            rule[key] = value
    return rules


def test_the_mini_rulebook_is_clean(tmp_path):
    assert problems_for(tmp_path) == []


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"outcome": "maybe"}, "rule gbs-children.outcome: 'maybe' is not one of"),
        ({"rationale": None}, "rule gbs-children: missing required field 'rationale'"),
        ({"colour": "red"}, "rule gbs-children: unknown field 'colour'"),
        ({"when": {"age_years": {"under": "eighteen"}}}, "rule gbs-children.when.age_years.under: must be a number"),
        ({"when": {"age_years": {"under": 10, "at_least": 12}}}, "at_least must be below under"),
        ({"when": {"pregnant": "yes"}}, "rule gbs-children.when.pregnant: must be true or false"),
        ({"when": {"sex": ["woman"]}}, "rule gbs-children.when.sex: 'woman' is not one of"),
        ({"priority": 1000}, "rule gbs-children.priority: must be a whole number from 0 to 100"),
        ({"id": "GBS Kids"}, "rule GBS Kids.id: use lower-case letters"),
        ({"diagnosis": "guillain"}, "rule gbs-children.diagnosis: 'guillain' is not defined under diagnoses"),
        ({"evidence": []}, "rule gbs-children.evidence: must list at least one evidence entry"),
        (
            {"evidence": evidence(source="nowhere")},
            "rule gbs-children.evidence[0].source: 'nowhere' is not defined in sources.yaml",
        ),
        ({"evidence": evidence(strength="strong")}, "rule gbs-children.evidence[0].strength: 'strong' is not one of"),
        ({"evidence": evidence(strength="limited")}, "off_label_with_evidence needs a controlled finding of benefit"),
        ({"when": {"concurrent_therapies": {"includes": ["aspirin"]}}}, "'aspirin' is not a therapy in therapies.yaml"),
        ({"when": {"product": ["Omega"]}}, "rule gbs-children.when.product: 'Omega' is not one of"),
        ({"outcome": "approved"}, "an approved rule needs labelled_indication"),
        ({"labelled_indication": "asthma", "outcome": "approved"}, "'asthma' is not an indication in products.yaml"),
    ],
)
def test_schema_problems_name_the_rule_and_field(tmp_path, changes, expected):
    problems = problems_for(tmp_path, rules=edited_rules("gbs-children", **changes))
    assert any(expected in p and "mini.yaml" in p for p in problems), problems


def test_every_problem_is_reported_at_once(tmp_path):
    rules = edited_rules("gbs-children", outcome="maybe", colour="red")
    assert len(problems_for(tmp_path, rules=rules)) >= 2


def test_unknown_icd_code_is_refused(tmp_path):
    diagnoses = {**MINI_DIAGNOSES, "gbs": {"name": "GBS", "codes": ["G61.99"]}}
    assert any(
        "diagnosis gbs: codes: 'G61.99' is not an ICD-10-CM code" in p
        for p in problems_for(tmp_path, diagnoses=diagnoses)
    )


def test_a_code_claimed_by_two_diagnoses_is_refused(tmp_path):
    diagnoses = {**MINI_DIAGNOSES, "cidp": {"name": "CIDP", "codes": ["G61.0"]}}
    assert any("G61.0 is already a code of diagnosis gbs" in p for p in problems_for(tmp_path, diagnoses=diagnoses))


def test_a_synonym_naming_two_diagnoses_is_refused(tmp_path):
    diagnoses = {**MINI_DIAGNOSES, "cidp": {"name": "CIDP", "codes": ["G61.81"], "synonyms": ["G.B.S."]}}
    assert any("synonym 'G.B.S.' also names diagnosis gbs" in p for p in problems_for(tmp_path, diagnoses=diagnoses))


def test_overlapping_rules_with_different_outcomes_and_no_precedence_are_refused(tmp_path):
    rules = edited_rules("gbs-adults", when={"age_years": {"at_least": 16}})
    problems = problems_for(tmp_path, rules=rules)
    assert any(
        "rule gbs-adults: can match the same request as rule gbs-children on G61.0 (e.g. age 16)" in p for p in problems
    ), problems


def test_priority_resolves_an_overlap(tmp_path):
    rules = edited_rules("gbs-adults", when={"age_years": {"at_least": 16}}, priority=1)
    assert problems_for(tmp_path, rules=rules) == []


def test_a_narrower_rule_needs_no_priority(tmp_path):
    rules = copy.deepcopy(MINI_RULES) + [
        {
            "id": "gbs-infants",
            "title": "GBS in infants",
            "diagnosis": "gbs",
            "when": {"age_years": {"under": 2}},
            "outcome": "needs_review",
            "rationale": "r",
            "evidence": evidence("limited"),
        }
    ]
    assert problems_for(tmp_path, rules=rules) == []


def test_a_diagnosis_without_rules_is_refused(tmp_path):
    diagnoses = {**MINI_DIAGNOSES, "orphan": {"name": "Orphan", "codes": ["G70.0"]}}
    assert any("diagnosis orphan: no rule uses it" in p for p in problems_for(tmp_path, diagnoses=diagnoses))


def test_a_labelled_indication_no_rule_approves_is_refused(tmp_path):
    rules = [r for r in MINI_RULES if r["id"] != "pi-labelled"]
    assert any(
        "indication pi: products are labelled for it but no approved rule uses it and no rule names Alpha, Beta, Gamma"
        in p
        for p in problems_for(tmp_path, rules=rules)
    )


def test_a_labelled_indication_whose_products_a_rule_names_is_covered(tmp_path):
    rules = [r for r in copy.deepcopy(MINI_RULES) if r["id"] != "pi-labelled"]  # edited below: never the shared rules
    next(r for r in rules if r["id"] == "pi-other")["when"] = {"product": ["Alpha", "Beta", "Gamma"]}
    rules.append(
        {
            "id": "pi-any",
            "title": "PI",
            "diagnosis": "pi",
            "outcome": "needs_review",
            "rationale": "r",
            "evidence": evidence("limited"),
        }
    )
    assert problems_for(tmp_path, rules=rules) == []


def test_a_key_written_twice_is_refused(tmp_path):
    path = write_rulebook(tmp_path)
    path.write_text(path.read_text() + "\nrules: []\n")
    with pytest.raises(RulebookError, match="key 'rules' appears twice"):
        load_rulebook(path)


# 237 bytes that PyYAML expands to 531,441 strings wherever *f is used (9 to the 6th).
ALIAS_BOMB = """x: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
y: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
z: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
w: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
v: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
u: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
"""


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    path = write_rulebook(tmp_path)
    path.write_text(ALIAS_BOMB + path.read_text())
    with pytest.raises(RulebookError) as refused:
        load_checked(path)
    assert refused.value.problems == [
        f"{path}: line 1: YAML anchors and aliases (&name, *name) are not allowed; write the value out"
    ]


def test_an_alias_in_a_data_file_is_refused_naming_the_file(tmp_path):
    path = write_rulebook(tmp_path)
    sources = tmp_path / "data" / "sources.yaml"
    sources.write_text("x: &same 1\ny: *same\n" + sources.read_text())
    with pytest.raises(RulebookError, match=f"^{sources}: line 1: YAML anchors and aliases"):
        load_checked(path)


def test_yaml_nested_deeper_than_the_limit_is_refused(tmp_path):
    path = write_rulebook(tmp_path)
    path.write_text(path.read_text() + "deep: " + "[" * 20 + "]" * 20 + "\n")  # 21 levels with the file's own
    with pytest.raises(RulebookError) as refused:
        load_checked(path)
    assert refused.value.problems == [
        f"{path}: line {len(path.read_text().splitlines())}: nested more than 20 levels deep"
    ]
    path.write_text(path.read_text().replace("[" * 20 + "]" * 20, "[" * 19 + "]" * 19))  # as deep as allowed
    with pytest.raises(RulebookError, match="unknown field 'deep'"):  # read, then refused for what it says
        load_checked(path)


def test_a_rulebook_file_over_the_size_limit_is_refused_unread(tmp_path):
    path = write_rulebook(tmp_path)
    path.write_text(path.read_text() + "#" * (4 * 1024 * 1024))
    with pytest.raises(RulebookError) as refused:
        load_checked(path)
    assert refused.value.problems == [f"{path}: larger than 4 MiB, the most a rulebook or data file may be"]


def test_lint_paths_finds_rulebooks_in_a_folder_and_skips_test_files(tmp_path):
    write_rulebook(tmp_path)
    (tmp_path / "mini.tests.yaml").write_text("cases: []\n")
    files, problems = lint_paths([tmp_path])
    assert [f.name for f in files] == ["mini.yaml"] and problems == []
    assert lint_paths([tmp_path / "absent"])[1] == [f"{tmp_path / 'absent'}: no such file or folder"]


def test_a_synonym_pinned_to_a_code_outside_its_diagnosis_is_refused(tmp_path):
    diagnoses = {
        **MINI_DIAGNOSES,
        "gbs": {"name": "GBS", "codes": ["G61.0"], "synonyms": [{"term": "AIDP", "code": "G61.1"}]},
    }
    assert any(
        "synonym 'AIDP': code G61.1 is not an ICD-10-CM code covered by the diagnosis's codes" in p
        for p in problems_for(tmp_path, diagnoses=diagnoses)
    )


def test_an_abbreviation_of_several_words_is_refused(tmp_path):
    path = write_rulebook(tmp_path)
    path.write_text(path.read_text() + "abbreviations:\n  G B S: Guillain-Barré syndrome\n")
    with pytest.raises(RulebookError, match="abbreviations.G B S: an abbreviation is one word"):
        load_rulebook(path)


# --- Qualifying criteria (issue 16): measures, specialties, phases, course, therapy weeks ---------

CRITERIA_DATA = {
    **MINI_DATA,
    "measures.yaml": {
        "measures": {
            "igg_serum": {
                "name": "Serum IgG",
                "measures": "IgG",
                "unit": "g/L",
                "units": {"g/L": 1, "mg/dL": 0.01},
                "range": {"min": 0, "max": 200},
                "source": "review",
            }
        }
    },
    "specialties.yaml": {"specialties": {"neurologist": {"name": "Neurologist"}}},
    "phases.yaml": {
        "schemes": {
            "itp": {
                "name": "ITP",
                "source": "review",
                "measured_from": "diagnosis",
                "phases": {
                    "acute": {"name": "Acute", "months": {"under": 12}},
                    "chronic": {"name": "Chronic", "months": {"at_least": 12}},
                },
            }
        }
    },
}


def criteria_problems(tmp_path, when, data=None):
    when = {"age_years": {"under": 18}, **when}  # gbs-children stays apart from gbs-adults
    return problems_for(tmp_path, rules=edited_rules("gbs-children", when=when), data=data or CRITERIA_DATA)


@pytest.mark.parametrize(
    "when",
    [
        {"observations": {"igg_serum": {"below": 4, "unit": "g/L", "within_days": 90}}},
        {"observations": {"igg_serum": {"at_least": 400, "unit": "mg/dL"}}},
        {"observations": {"igg_serum": {"above": 2, "at_most": 4}}},
        {"observations": {"igg_serum": {"at_least": 4, "at_most": 4}}},
        {"confirmed_by": ["neurologist"], "prescriber_specialty": ["neurologist"]},
        {"phase": ["chronic"], "course": ["initial", "continuation"]},
        {"failed_therapies": {"includes": ["rituximab", {"therapy": "corticosteroids", "min_weeks": 12}]}},
    ],
)
def test_criteria_a_rule_may_test_load_clean(tmp_path, when):
    assert criteria_problems(tmp_path, when) == []


@pytest.mark.parametrize(
    "when, expected",
    [
        ({"observations": {"iga": {"below": 1}}}, "rule gbs-children.when.observations.iga: 'iga' is not a measure"),
        (
            {"observations": {"igg_serum": {"below": 4, "unit": "g/dL"}}},
            "rule gbs-children.when.observations.igg_serum.unit: 'g/dL' is not a unit of igg_serum",
        ),
        (
            {"observations": {"igg_serum": {"below": 250}}},
            "rule gbs-children.when.observations.igg_serum.below: 250 g/L is outside igg_serum's range",
        ),
        (
            {"observations": {"igg_serum": {"below": 30000, "unit": "mg/dL"}}},
            "rule gbs-children.when.observations.igg_serum.below: 30000 mg/dL is outside igg_serum's range",
        ),
        (
            {"observations": {"igg_serum": {"below": 2, "at_least": 5}}},
            "rule gbs-children.when.observations.igg_serum: no value can meet both thresholds",
        ),
        (
            {"observations": {"igg_serum": {"below": 4, "at_least": 4}}},
            "rule gbs-children.when.observations.igg_serum: no value can meet both thresholds",
        ),
        (
            {"observations": {"igg_serum": {"above": 400, "at_most": 400, "unit": "mg/dL"}}},
            "rule gbs-children.when.observations.igg_serum: no value can meet both thresholds",
        ),
        ({"observations": {"igg_serum": {"unit": "g/L"}}}, "rule gbs-children.when.observations.igg_serum: give a"),
        (
            {"observations": {"igg_serum": {"below": 4, "within_days": 0}}},
            "rule gbs-children.when.observations.igg_serum.within_days: must be a whole number",
        ),
        ({"observations": {}}, "rule gbs-children.when.observations: must map at least one measure"),
        ({"confirmed_by": ["surgeon"]}, "rule gbs-children.when.confirmed_by: 'surgeon' is not defined in specialties"),
        ({"confirmed_by": []}, "rule gbs-children.when.confirmed_by: must list at least one value"),
        ({"prescriber_specialty": ["gp"]}, "rule gbs-children.when.prescriber_specialty: 'gp' is not defined"),
        ({"phase": ["persistent"]}, "rule gbs-children.when.phase: 'persistent' is not defined in phases.yaml"),
        ({"phase": []}, "rule gbs-children.when.phase: must list at least one value"),
        ({"course": ["maintenance"]}, "rule gbs-children.when.course: 'maintenance' is not one of"),
        ({"course": []}, "rule gbs-children.when.course: must list at least one value"),
        (
            {"failed_therapies": {"includes": [{"therapy": "corticosteroids", "min_weeks": 0}]}},
            "rule gbs-children.when.failed_therapies.includes[0].min_weeks: must be a whole number from 1",
        ),
        (
            {"failed_therapies": {"includes": [{"therapy": "aspirin", "min_weeks": 4}]}},
            "'aspirin' is not a therapy in therapies.yaml",
        ),
        (
            {"failed_therapies": {"includes": []}},
            "rule gbs-children.when.failed_therapies.includes: must list at least",
        ),
    ],
)
def test_criteria_lint_refuses_name_the_rule_and_field(tmp_path, when, expected):
    problems = criteria_problems(tmp_path, when)
    assert any(expected in p for p in problems), problems


def test_a_measure_used_without_a_measures_file_is_refused(tmp_path):
    problems = criteria_problems(tmp_path, {"observations": {"igg_serum": {"below": 4}}}, data=MINI_DATA)
    assert any("'igg_serum' is not a measure in measures.yaml" in p for p in problems), problems


@pytest.mark.parametrize(
    "file, edit, expected",
    [
        ("measures.yaml", lambda m: m["igg_serum"].update(units={"mg/dL": 0.01}), "must list the canonical unit g/L"),
        ("measures.yaml", lambda m: m["igg_serum"].update(range={"min": 5, "max": 1}), "min must be below max"),
        ("measures.yaml", lambda m: m["igg_serum"].update(source="nowhere"), "'nowhere' is not defined in sources"),
        ("measures.yaml", lambda m: m.update({"IgG Serum": m["igg_serum"]}), "an id is lower-case letters"),
        (
            "phases.yaml",
            lambda s: s["itp"]["phases"]["chronic"].update(months={"at_least": 12, "under": 6}),
            "at_least must be below under",
        ),
        (
            "phases.yaml",
            lambda s: s.update(other={**s["itp"]}),
            "phase 'acute' is also a phase of scheme itp",
        ),
    ],
)
def test_reference_data_for_criteria_is_checked(tmp_path, file, edit, expected):
    data = copy.deepcopy(CRITERIA_DATA)
    edit(next(iter(data[file].values())))
    problems = problems_for(tmp_path, data=data)
    assert any(expected in p for p in problems), problems


def test_rules_that_differ_only_in_a_criterion_do_not_clash(tmp_path):
    rules = copy.deepcopy(MINI_RULES)
    for rule in rules:
        if rule["id"] == "gbs-children":
            rule["when"] = {"phase": ["chronic"]}
        if rule["id"] == "gbs-adults":
            rule["when"] = {"phase": ["acute"]}
    assert problems_for(tmp_path, rules=rules, data=CRITERIA_DATA) == []


def test_rules_whose_observation_ranges_overlap_clash(tmp_path):
    rules = copy.deepcopy(MINI_RULES)
    for rule in rules:
        if rule["id"] == "gbs-children":
            rule["when"] = {"observations": {"igg_serum": {"below": 5}}}
        if rule["id"] == "gbs-adults":
            rule["when"] = {"observations": {"igg_serum": {"at_least": 4}}}
    problems = problems_for(tmp_path, rules=rules, data=CRITERIA_DATA)
    assert any("can match the same request as rule gbs-children" in p for p in problems), problems


def review_problems(tmp_path, rule_id="cidp-labelled", **changes):
    """Problems of the mini rulebook with one rule's continuation fields changed (the criteria data)."""
    data = copy.deepcopy(CRITERIA_DATA)
    data["measures.yaml"]["measures"]["igg_serum"]["better"] = "higher"
    return problems_for(tmp_path, rules=edited_rules(rule_id, **changes), data=data)


@pytest.mark.parametrize(
    "criteria",
    [
        {"source": "review", "measures": {"igg_serum": {"improved_by": 1}}},
        {"source": "review", "benefit": "any", "within_days": 30, "measures": {"igg_serum": {"stable_within": 0}}},
        {"source": "review", "measures": {"igg_serum": {"at_least": 500, "unit": "mg/dL", "improved_by": 0.5}}},
        {"reviewer_judges": "No measure fits this indication."},
    ],
)
def test_review_criteria_a_maintenance_rule_may_set_load_clean(tmp_path, criteria):
    assert review_problems(tmp_path, review_criteria=criteria) == []


def test_a_maintenance_rule_that_grants_authorisations_without_review_criteria_is_refused(tmp_path):
    problems = review_problems(tmp_path, review_criteria=None)
    assert any(
        "rule cidp-labelled: a maintenance rule (dosing immunomodulatory, repeated courses) that grants "
        "authorisations needs review_criteria" in p
        for p in problems
    ), problems


def test_a_one_off_rule_needs_no_review_criteria(tmp_path):
    assert review_problems(tmp_path, "gbs-children", review_criteria=None, dosing="acute") == []


@pytest.mark.parametrize(
    "criteria, expected",
    [
        ({"source": "review", "measures": {"iga": {"improved_by": 1}}}, "measures.iga: 'iga' is not a measure"),
        ({"source": "review", "measures": {}}, "review_criteria.measures: must map at least one measure"),
        ({"source": "nowhere", "measures": {"igg_serum": {"improved_by": 1}}}, "'nowhere' is not defined in sources"),
        ({"source": "review", "measures": {"igg_serum": {}}}, "say what counts as benefit"),
        ({"source": "review", "measures": {"igg_serum": {"improved_by": 0}}}, "improved_by: must be above 0"),
        ({"source": "review", "measures": {"igg_serum": {"improved_by": 500}}}, "at most igg_serum's whole range"),
        ({"source": "review", "measures": {"igg_serum": {"at_least": 250}}}, "250 g/L is outside igg_serum's range"),
        (
            {"source": "review", "measures": {"igg_serum": {"improved_by": 1, "stable_within": 1}}},
            "give improved_by or stable_within",
        ),
        (
            {"source": "review", "measures": {"igg_serum": {"at_least": 8, "at_most": 6}}},
            "at_least is above at_most: no value can show benefit",
        ),
        (
            {"source": "review", "benefit": "most", "measures": {"igg_serum": {"at_least": 5}}},
            "must be one of all, any",
        ),
        ({"reviewer_judges": "x", "source": "review"}, "reviewer_judges stands alone"),
    ],
)
def test_review_criteria_lint_refuses_name_the_rule_and_field(tmp_path, criteria, expected):
    problems = review_problems(tmp_path, review_criteria=criteria)
    assert any(expected in p for p in problems), problems


def test_comparing_with_the_baseline_needs_the_measures_direction(tmp_path):
    criteria = {"source": "review", "measures": {"igg_serum": {"improved_by": 1}}}
    problems = problems_for(tmp_path, rules=edited_rules("cidp-labelled", review_criteria=criteria), data=CRITERIA_DATA)
    assert any("comparing with the baseline needs igg_serum's `better`" in p for p in problems), problems


def test_review_criteria_on_a_rule_that_decides_no_positive_outcome_are_refused(tmp_path):
    problems = review_problems(tmp_path, "cidp-evidence", review_criteria={"reviewer_judges": "x"})
    assert any(
        "rule cidp-evidence: review_criteria and authorisation.continuing_days apply only" in p for p in problems
    )


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("courses", {"max": 0, "per_days": 30}, "courses.max: must be a whole number of courses from 1 to 10"),
        ("courses", {"max": 1}, "courses: missing required field 'per_days'"),
        ("authorisation", {"initial_days": 0}, "authorisation.initial_days: must be a whole number of days"),
        ("authorisation", {}, "authorisation: give initial_days, continuing_days or both"),
        ("authorisation_days", 14, "authorisation_days: has moved to authorisation.initial_days"),
    ],
)
def test_authorisation_periods_and_course_limits_are_checked(tmp_path, field, value, expected):
    problems = review_problems(tmp_path, "gbs-children", **{field: value})
    assert any(expected in p for p in problems), problems


def test_a_condition_that_can_never_be_true_is_refused(tmp_path):
    problems = criteria_problems(tmp_path, {"sex": ["male"], "pregnant": True})
    assert any("pregnant with sex male: the condition can never be true" in p for p in problems), problems


def test_an_urgent_rule_needs_the_rulebooks_provisional_period(tmp_path):
    problems = review_problems(tmp_path, "gbs-adults", urgent=True)
    assert any(
        "rule gbs-adults.urgent: an urgent rule needs authorisations.provisional (days, review_within_hours)" in p
        for p in problems
    ), problems


def test_a_not_supported_rule_is_never_urgent(tmp_path):
    problems = review_problems(tmp_path, "myositis-without-steroids", urgent=True)
    assert any("a not_supported rule never needs review, so is never urgent" in p for p in problems), problems


@pytest.mark.parametrize(
    "provisional, expected",
    [
        ({"days": 7, "review_within_hours": 0}, "provisional.review_within_hours: must be a whole number of hours"),
        ({"days": 0, "review_within_hours": 72}, "provisional.days: must be a whole number of days"),
        ({"days": 7}, "provisional: missing required field 'review_within_hours'"),
    ],
)
def test_the_provisional_period_is_checked(tmp_path, provisional, expected):
    path = write_rulebook(tmp_path)
    text = path.read_text().replace("  days: 180\n", f"  days: 180\n  provisional: {json.dumps(provisional)}\n", 1)
    path.write_text(text)
    with pytest.raises(RulebookError) as refused:
        load_checked(path)
    assert any(expected in p for p in refused.value.problems), refused.value.problems


@pytest.mark.parametrize("effective", ["2026-5-1", "1 December 2026", "December 2026", "2026-02-30"])
def test_a_rulebook_whose_effective_date_is_not_a_date_is_refused(tmp_path, effective):
    path = write_rulebook(tmp_path)
    path.write_text(path.read_text().replace("effective: '2026-01-01'", f"effective: '{effective}'"))
    with pytest.raises(RulebookError) as refused:
        load_rulebook(path)
    assert any("rulebook.effective: must be a date, YYYY-MM-DD" in problem for problem in refused.value.problems)
