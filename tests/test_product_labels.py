"""Product labels as data: each fact with its source, and a label covers a patient by age, product
and route; a product whose label we could not read never approves."""

import copy

import pytest

from service.decide.formulary import Formulary

from .conftest import MINI_DATA, MINI_DIAGNOSES, MINI_RULES, REVIEWER_JUDGES, evidence, write_rulebook
from .test_lint import problems_for


def data_with(*products, unverified=()):
    data = copy.deepcopy(MINI_DATA)
    data["products.yaml"]["products"] = list(products)
    if unverified:
        data["products.yaml"]["unverified_products"] = list(unverified)
    return data


def product(name, *labels, routes=("intravenous",), **facts):
    return {
        "name": name,
        "manufacturer": "M",
        "routes": list(routes),
        "vial_sizes_g": [5, 10],
        "prescribing_information": {"source": f"{name} prescribing information", "revised": "2025-06"},
        "labels": list(labels),
    } | facts


KAWASAKI_RULES = [
    {
        "id": "kd-labelled",
        "title": "KD labelled",
        "diagnosis": "kd",
        "outcome": "approved",
        "labelled_indication": "kd",
        "review_criteria": REVIEWER_JUDGES,
        "rationale": "r",
        "evidence": evidence(source="labels"),
    },
    {
        "id": "kd-other",
        "title": "KD otherwise",
        "diagnosis": "kd",
        "outcome": "needs_review",
        "rationale": "r",
        "evidence": evidence("limited", effect="no_benefit"),
    },
]


@pytest.fixture
def kawasaki(tmp_path):
    data = data_with(
        product("Child", {"indication": "kd", "age_years": {"under": 18}}),
        product(
            "Both",
            {"indication": "pi", "routes": ["intravenous", "subcutaneous"]},
            {"indication": "kd", "age_years": {"under": 18}},
            routes=("intravenous", "subcutaneous"),
        ),
        unverified=[{"name": "Unread", "manufacturer": "M", "note": "its label was not located"}],
    )
    data["products.yaml"]["indications"]["kd"] = "Kawasaki disease"
    diagnoses = {**MINI_DIAGNOSES, "kd": {"name": "Kawasaki disease", "codes": ["M30.3"]}}
    rules = [r for r in MINI_RULES if r["diagnosis"] == "pi"] + KAWASAKI_RULES
    formulary = Formulary.load(
        write_rulebook(
            tmp_path, rules=rules, diagnoses={k: v for k, v in diagnoses.items() if k in ("pi", "kd")}, data=data
        )
    )
    yield formulary
    formulary.close()


def decide(formulary, code, age=None, **extra):
    patient = {} if age is None else {"patient": {"age_years": age}}
    return formulary.decide({"diagnosis": {"code": code}, **patient, **extra})


@pytest.mark.parametrize(
    "age, outcome", [(0.5, "approved"), (17.99, "approved"), (18, "needs_review"), (40, "needs_review")]
)
def test_a_paediatric_label_covers_children_only(kawasaki, age, outcome):
    assert decide(kawasaki, "M30.3", age).outcome == outcome


def test_a_label_with_an_upper_age_limit_needs_the_age(kawasaki):
    decision = decide(kawasaki, "M30.3")
    assert (decision.outcome, decision.rule["id"], decision.missing) == (
        "needs_review",
        "kd-labelled",
        ("patient.age_years",),
    )


@pytest.mark.parametrize(
    "route, product, labelled",
    [
        ("intravenous", None, ("Both",)),
        ("subcutaneous", None, ("Both",)),
        ("subcutaneous", "Both", ("Both",)),
    ],
)
def test_a_label_covers_only_the_routes_it_names(kawasaki, route, product, labelled):
    request = {"route": route} | ({"product": product} if product else {})
    decision = decide(kawasaki, "D83.9", 30, **request)
    assert (decision.outcome, decision.labelled_products) == ("approved", labelled)


def test_a_route_no_label_names_falls_to_the_evidence_rule(kawasaki):
    decision = decide(kawasaki, "M30.3", 5, route="subcutaneous")
    assert (decision.outcome, decision.rule["id"]) == ("needs_review", "kd-other")


def test_an_unverified_product_is_recognised_but_never_approved(kawasaki):
    decision = decide(kawasaki, "D83.9", 30, product="Unread")
    assert (decision.outcome, decision.rule["id"]) == ("needs_review", "pi-other")
    assert "Unread" not in decide(kawasaki, "D83.9", 30).labelled_products


def test_an_unknown_route_is_refused_naming_the_field(kawasaki):
    with pytest.raises(Exception) as caught:
        decide(kawasaki, "D83.9", 30, route="oral")
    assert caught.value.field == "route" and "'oral'" in caught.value.message


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda p: p.pop("prescribing_information"), "product Alpha: missing required field 'prescribing_information'"),
        (
            lambda p: p["prescribing_information"].pop("revised"),
            "prescribing_information: missing required field 'revised'",
        ),
        (
            lambda p: p["prescribing_information"].update(revised="June 2025"),
            "must be the label's revision date as YYYY-MM",
        ),
        (
            lambda p: p["prescribing_information"].pop("source"),
            "prescribing_information: missing required field 'source'",
        ),
        (lambda p: p.update(vial_sizes_g=[]), "product Alpha.vial_sizes_g: list the vial sizes in grams"),
        (
            lambda p: p["labels"][0].update(routes=["subcutaneous"]),
            "a label cannot name a route the product is not given by",
        ),
        (lambda p: p["labels"][0].update(age_years={"at_least": 18, "under": 2}), "at_least must be below under"),
    ],
)
def test_lint_refuses_a_product_whose_label_facts_have_no_source_or_do_not_hold(tmp_path, change, expected):
    data = copy.deepcopy(MINI_DATA)
    change(data["products.yaml"]["products"][0])
    problems = problems_for(tmp_path, data=data)
    assert any(expected in p for p in problems), problems
