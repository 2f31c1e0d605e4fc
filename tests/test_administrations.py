"""Administrations: what was given, checked against its authorisation; each difference a
discrepancy recorded with it (never a refusal), resolved by a pharmacist with a reason."""

import datetime

import pytest

from service.decide.administration import (
    Administration,
    Authorised,
    Given,
    Vial,
    discrepancies,
    read_administration,
)
from service.decide.dosing import Weight
from service.decide.request import RequestError
from service.rulebook.model import DosingProfile, Range

DAY = datetime.date(2026, 11, 22)
PROFILE = DosingProfile("immunomodulatory", Range(0.4, 2.0), Range(21, None))
WEIGHT = Weight(90, 81.0, "adjusted weight", 75.0, 81.0)


def given(**changes) -> Administration:
    fields = {
        "patient_ref": "MRN-1",
        "product": "Privigen",
        "lot": "P123",
        "vials": (Vial(40, 4),),
        "grams_given": 160.0,
        "grams_wasted": 0.0,
        "given_on": DAY,
        "authorisation_id": "A1",
    }
    return Administration(**(fields | changes))


def authorised(**changes) -> Authorised:
    fields = {
        "authorisation_id": "A1",
        "products": (),
        "valid_from": DAY - datetime.timedelta(days=10),
        "valid_until": DAY + datetime.timedelta(days=170),
        "profile": PROFILE,
        "weight": WEIGHT,
        "weight_from": "pre-approval 7 on 2026-11-21",
        "preapproval_id": 7,
        "preapproved_product": "Privigen",
        "preapproved_grams": 160.0,
        "vial_sizes_g": (5, 10, 20, 40),
    }
    return Authorised(**(fields | changes))


def kinds(found) -> list[str]:
    return [d.kind for d in found]


def test_an_administration_as_authorised_has_no_discrepancy():
    assert discrepancies(given(), authorised()) == []


def test_a_different_product_than_authorised_is_a_discrepancy():
    [found] = discrepancies(given(), authorised(products=("Octagam 10%",), preapproved_product=None))
    assert found.kind == "product" and (found.expected, found.actual) == ("Octagam 10%", "Privigen")
    assert "Privigen was given; authorisation A1 is for Octagam 10%" in found.message


def test_a_different_product_than_pre_approved_is_a_discrepancy():
    [found] = discrepancies(given(), authorised(preapproved_product="Octagam 10%"))
    assert found.kind == "product" and "pre-approval 7 was for Octagam 10%" in found.message


def test_more_grams_than_the_authorised_dose_for_the_dosing_weight_is_a_discrepancy():
    found = discrepancies(
        given(vials=(Vial(40, 4), Vial(20, 1)), grams_given=180.0), authorised(preapproved_grams=None)
    )
    [dose] = found
    assert dose.kind == "dose" and (dose.expected, dose.actual) == ("at most 162 g", "180 g")
    assert "18 g above the authorised dose: at most 2 g/kg a course (immunomodulatory) x 81 kg" in dose.message


def test_more_grams_than_pre_approved_is_a_discrepancy():
    [found] = discrepancies(
        given(vials=(Vial(40, 4),), grams_given=155.0, grams_wasted=5.0), authorised(preapproved_grams=150.0)
    )
    assert found.kind == "above_preapproved" and (found.expected, found.actual) == ("150 g", "155 g")


def test_a_course_over_consecutive_days_is_added_up_against_the_course_maximum():
    yesterday = DAY - datetime.timedelta(days=1)
    split = authorised(earlier=(Given(yesterday, 81.0),), preapproved_grams=None)
    assert discrepancies(given(vials=(Vial(40, 2),), grams_given=80.0), split) == []  # one course of 161 g
    [over] = discrepancies(given(vials=(Vial(40, 3),), grams_given=120.0), split)
    assert over.kind == "dose" and over.actual == "201 g" and "in the course that began on 2026-11-21" in over.message


def test_an_interval_shorter_than_the_rules_is_a_discrepancy():
    earlier = authorised(earlier=(Given(DAY - datetime.timedelta(days=14), 160.0),))
    [found] = discrepancies(given(), earlier)
    assert found.kind == "interval" and (found.expected, found.actual) == ("at least 21 days", "14 days")
    assert discrepancies(given(), authorised(earlier=(Given(DAY - datetime.timedelta(days=21), 160.0),))) == []


def test_a_second_one_off_course_is_a_discrepancy():
    acute = DosingProfile("acute", Range(0.4, 2.0), Range(), courses=1)
    [found] = discrepancies(
        given(), authorised(profile=acute, earlier=(Given(DAY - datetime.timedelta(days=40), 160.0),))
    )
    assert found.kind == "courses" and found.actual == "course 2"


def test_a_monthly_total_is_checked_over_28_days():
    monthly = DosingProfile("mmn", Range(1.6, 2.4), Range(7, None), monthly=True)
    earlier = tuple(Given(DAY - datetime.timedelta(days=d), 60.0) for d in (7, 14, 21))
    [found] = discrepancies(
        given(vials=(Vial(20, 1),), grams_given=20.0, grams_wasted=0.0),
        authorised(profile=monthly, earlier=earlier, weight=Weight(70, 70, "actual"), preapproved_grams=None),
    )
    assert found.kind == "dose" and found.actual == "200 g" and found.expected == "at most 168 g"


@pytest.mark.parametrize("offset, words", [(200, "ended on"), (-20, "began on")])
def test_an_administration_outside_the_authorisation_is_a_discrepancy(offset, words):
    day = DAY + datetime.timedelta(days=offset)
    [found] = [d for d in discrepancies(given(given_on=day), authorised()) if d.kind == "authorisation_period"]
    assert words in found.message and found.actual == day.isoformat()


def test_vials_that_do_not_add_up_and_a_size_the_product_lacks_are_discrepancies():
    found = discrepancies(given(vials=(Vial(15, 2), Vial(40, 3)), grams_given=140.0, grams_wasted=5.0), authorised())
    assert kinds(found) == ["vial_size", "vial_total"]
    assert found[0].message.startswith("Privigen does not come in 15 g vials") and found[0].actual == "15 g"
    assert (found[1].expected, found[1].actual) == ("150 g", "145 g")
    assert "140 g given and 5 g wasted make 145 g" in found[1].message


def test_no_dosing_weight_means_the_dose_is_unchecked_and_says_so():
    [found] = discrepancies(given(), authorised(weight=None, preapproved_grams=None))
    assert found.kind == "dose_unchecked" and "no pre-approval" in found.message


def test_no_authorisation_and_a_failed_integrity_check_are_discrepancies():
    assert kinds(discrepancies(given(), Authorised(None, no_authorisation="pre-approval 7 found none"))) == [
        "no_authorisation"
    ]
    assert kinds(discrepancies(given(), Authorised("A1", intact=False))) == ["integrity"]


def test_a_held_pre_approval_is_a_discrepancy():
    [found] = discrepancies(given(), authorised(preapproval_held=("only 10 days since the last infusion",)))
    assert found.kind == "preapproval_held" and "only 10 days" in found.message


@pytest.mark.parametrize(
    "change, field",
    [
        ({"grams_given": "lots"}, "grams_given"),
        ({"grams_wasted": -1}, "grams_wasted"),
        ({"given_on": "22/11/2026"}, "given_on"),
        ({"given_on": "2026-12-01"}, "given_on"),
        ({"vials": []}, "vials"),
        ({"vials": [{"size_g": 10, "count": 1.5}]}, "vials[0].count"),
        ({"product": "Nothing"}, "product"),
        ({"lot": None}, "lot"),
        ({"patient": {"ref": 12345}}, "patient.ref"),
        ({"authorisation_id": None}, "authorisation_id"),
        ({"dose": 1}, "dose"),
    ],
)
def test_a_malformed_administration_is_refused_naming_the_field(fixture_formulary, change, field):
    body = {
        "authorisation_id": "A1",
        "patient": {"ref": "MRN-1"},
        "product": "Privigen",
        "lot": "P1",
        "vials": [{"size_g": 10, "count": 1}],
        "grams_given": 10,
        "grams_wasted": 0,
        "given_on": "2026-11-22",
    } | change
    with pytest.raises(RequestError) as refused:
        read_administration({k: v for k, v in body.items() if v is not None}, fixture_formulary.vocabulary, DAY)
    assert refused.value.field == field
    assert "12345" not in refused.value.message


def _products_with(tmp_path, **fields):
    import copy

    from .conftest import MINI_DATA, write_rulebook

    data = copy.deepcopy(MINI_DATA)
    data["products.yaml"]["products"][0].update(fields)
    return write_rulebook(tmp_path, data=data)


def test_a_product_may_carry_its_hcpcs_code_and_the_committees_price(tmp_path):
    from service.rulebook.reader import load_rulebook

    price = {"amount": 61.5, "currency": "USD", "source": "P&T committee, local contract price", "as_of": "2026-11-01"}
    path = _products_with(tmp_path, hcpcs={"code": "J1459", "source": "CMS LCD L34007"}, price_per_g=price)
    alpha = load_rulebook(path).products["Alpha"]
    assert alpha.hcpcs.code == "J1459" and alpha.price_per_g.per_g == 61.5 and alpha.price_per_g.currency == "USD"
    assert load_rulebook(_products_with(tmp_path / "b", price_per_g=None)).products["Alpha"].price_per_g is None


def test_a_bad_hcpcs_code_or_price_does_not_load(tmp_path):
    from service.rulebook.model import RulebookError
    from service.rulebook.reader import load_rulebook

    path = _products_with(
        tmp_path,
        hcpcs={"code": "1459", "source": "s"},
        price_per_g={"amount": -1, "currency": "dollars", "source": "s", "as_of": "Nov 2026"},
    )
    with pytest.raises(RulebookError) as refused:
        load_rulebook(path)
    problems = "\n".join(refused.value.problems)
    for words in ("hcpcs.code: must be an HCPCS", "price_per_g.amount: must be between", "ISO 4217", "as YYYY-MM-DD"):
        assert words in problems


def test_cost_is_the_grams_opened_at_the_local_price_and_says_when_there_is_none():
    from service.workflow.administrations import administration_view

    row = {
        "id": "X",
        "product": "Privigen",
        "code": "M3320",
        "vials": "[]",
        "grams_given": 155.0,
        "grams_wasted": 5.0,
        "price_per_g": 61.5,
        "currency": "USD",
    }
    assert administration_view(row, [])["cost"]["amount"] == 9840.0  # 160 g opened
    unpriced = administration_view(row | {"price_per_g": None, "currency": None}, [])["cost"]
    assert (
        unpriced["amount"] is None
        and unpriced["note"] == "no price: data/products.yaml gives no price_per_g for Privigen"
    )
