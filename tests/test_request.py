"""Bad requests are refused with an error naming the field and the value; nothing is guessed."""

import pytest

from service.decide.request import RequestError


@pytest.mark.parametrize(
    "payload, field, code",
    [
        ({}, "diagnosis", "missing_field"),
        ({"diagnosis": {}}, "diagnosis", "missing_field"),
        ({"diagnosis": "G61.0"}, "diagnosis", "wrong_type"),
        ({"diagnosis": {"code": 610}}, "diagnosis.code", "wrong_type"),
        ({"diagnosis": {"code": "   "}}, "diagnosis.code", "empty_value"),
        ({"diagnosis": {"code": "G61.99"}}, "diagnosis.code", "invalid_code"),
        ({"diagnosis": {"code": "M30-M36"}}, "diagnosis.code", "invalid_code"),
        ({"diagnosis": {"text": "x" * 201}}, "diagnosis.text", "too_long"),
        ({"diagnosis": {"code": "G61.0"}, "colour": 1}, "colour", "unknown_field"),
        ({"diagnosis": {"code": "G61.0"}, "patient": {"age": 3}}, "patient.age", "unknown_field"),
        ({"diagnosis": {"code": "G61.0"}, "patient": {"age_years": "5"}}, "patient.age_years", "wrong_type"),
        ({"diagnosis": {"code": "G61.0"}, "patient": {"age_years": True}}, "patient.age_years", "wrong_type"),
        ({"diagnosis": {"code": "G61.0"}, "patient": {"age_years": -1}}, "patient.age_years", "out_of_range"),
        ({"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 131}}, "patient.age_years", "out_of_range"),
        ({"diagnosis": {"code": "G61.0"}, "patient": {"sex": "f"}}, "patient.sex", "unknown_value"),
        ({"diagnosis": {"code": "G61.0"}, "patient": {"pregnant": "true"}}, "patient.pregnant", "wrong_type"),
        (
            {"diagnosis": {"code": "G61.0"}, "patient": {"pregnant": True, "sex": "male"}},
            "patient.pregnant",
            "conflicting_values",
        ),
        ({"diagnosis": {"code": "G61.0"}, "patient": {"weight_kg": 900}}, "patient.weight_kg", "out_of_range"),
        ({"diagnosis": {"code": "G61.0"}, "therapies": {"failed": "prednisone"}}, "therapies.failed", "wrong_type"),
        (
            {"diagnosis": {"code": "G61.0"}, "therapies": {"failed": ["aspirin"]}},
            "therapies.failed[0]",
            "unknown_therapy",
        ),
        ({"diagnosis": {"code": "G61.0"}, "severity": "extreme"}, "severity", "unknown_value"),
        ({"diagnosis": {"code": "G61.0"}, "product": "Omega"}, "product", "unknown_product"),
        ({"diagnosis": {"code": "G61.0"}, "dose": {"g_per_kg": 9}}, "dose.g_per_kg", "out_of_range"),
        ({"diagnosis": {"code": "G61.0"}, "dose": {"interval_days": 2.5}}, "dose.interval_days", "wrong_type"),
    ],
)
def test_bad_request_is_refused_naming_the_field(mini, payload, field, code):
    with pytest.raises(RequestError) as caught:
        mini.decide(payload)
    assert (caught.value.field, caught.value.code) == (field, code)
    assert field.split("[")[0].split(".")[-1] in caught.value.message or caught.value.field == "diagnosis"


def test_invalid_code_message_names_the_code(mini):
    with pytest.raises(RequestError, match="'G61.99' is not an ICD-10-CM code"):
        mini.decide({"diagnosis": {"code": "G61.99"}})


@pytest.mark.parametrize("spelling", ["G61.0", "g61.0", "G610", "g610", " G61.0 "])
def test_code_is_accepted_in_any_spelling(mini, spelling):
    decision = mini.decide({"diagnosis": {"code": spelling}, "patient": {"age_years": 4}})
    assert decision.diagnosis.code == "G61.0" and decision.diagnosis.input == spelling.strip()


def test_therapy_synonyms_and_product_case_are_normalised(mini):
    decision = mini.decide({"diagnosis": {"code": "M33.1"}, "therapies": {"concurrent": ["Prednisone"]}})
    assert decision.outcome == "off_label_with_evidence"
    assert mini.decide(
        {"diagnosis": {"code": "D83.9"}, "product": "BETA", "patient": {"age_years": 3}}
    ).labelled_products == ("Beta",)


def test_a_male_patient_is_taken_as_not_pregnant(mini):
    from service.decide.request import parse_request

    assert (
        parse_request({"diagnosis": {"code": "G61.0"}, "patient": {"sex": "male"}}, mini.vocabulary).facts.pregnant
        is False
    )


def test_text_matching_a_diagnosis_name_or_synonym_decides(mini):
    decision = mini.decide({"diagnosis": {"text": "guillain barre SYNDROME"}, "patient": {"age_years": 8}})
    assert (decision.diagnosis.matched_by, decision.diagnosis.code, decision.outcome) == (
        "synonym",
        "G61.0",
        "off_label_with_evidence",
    )
    assert mini.decide({"diagnosis": {"text": "gbs"}, "patient": {"age_years": 8}}).rule["id"] == "gbs-children"


def test_unrecognised_text_is_needs_review_not_a_guess(mini):
    decision = mini.decide({"diagnosis": {"text": "qwerty asdf"}})
    assert (decision.outcome, decision.rule, decision.diagnosis.code) == ("needs_review", None, None)
    assert "qwerty asdf" in decision.rationale


@pytest.mark.parametrize(
    "patient, field",
    [({"ref": 4410297}, "patient.ref"), ({"ref": ["MRN-4410297"]}, "patient.ref"), ("MRN-4410297", "patient")],
)
def test_a_patient_identifier_of_the_wrong_type_is_refused_without_repeating_it(mini, patient, field):
    with pytest.raises(RequestError) as refused:
        mini.decide({"diagnosis": {"code": "G61.0"}, "patient": patient})
    assert refused.value.field == field and refused.value.code == "wrong_type"
    assert "4410297" not in refused.value.message  # the error is kept in the audit log forever


@pytest.mark.parametrize("ref", ["MRN-44\t10297", "MRN-44\x0010297"])
def test_a_patient_identifier_with_a_control_character_inside_is_refused_without_repeating_it(mini, ref):
    with pytest.raises(RequestError) as refused:
        mini.decide({"diagnosis": {"code": "G61.0"}, "patient": {"ref": ref}})
    assert refused.value.field == "patient.ref" and refused.value.code == "invalid_value"
    assert "10297" not in refused.value.message
