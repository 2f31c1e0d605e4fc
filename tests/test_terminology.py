"""How typed diagnoses resolve: codes in every spelling, synonyms, ICD-10-CM text, typos, junk.

On the test rulebook (tests/rulebook/), whose diagnoses and synonyms the table names; the whole
ICD-10-CM code set takes part, as it does in the service.

Each row: (code, text) typed, then the expected resolution:
- ("code"|"synonym"|"text", CODE): an exact match, decided on that code;
- ("fuzzy", CODE): an approximate match, proposed and never decided (needs_review, the code first
  among the candidates, and what the rules would decide on it under if_confirmed);
- ("review", [codes...]): not decided; the candidates include these codes (none for junk);
- ("conflict", [codes...]): code and text name different diagnoses; both are candidates;
- ("refused", ERROR_CODE): the request is refused with that error.
"""

import json
import os
import subprocess
import sys

import pytest

from service.decide.request import RequestError
from service.rulebook import icd10

from .conftest import TEST_RULEBOOK

TABLE = [
    # Codes, in every spelling; descendants of a rule's code are valid codes too.
    ("G61.0", None, ("code", "G61.0")),
    ("g610", None, ("code", "G61.0")),
    ("G610", None, ("code", "G61.0")),
    ("g61.0", None, ("code", "G61.0")),
    (" G61.0 ", None, ("code", "G61.0")),
    ("m3130", None, ("code", "M31.30")),
    ("M31.3", None, ("code", "M31.3")),
    ("t86.11", None, ("code", "T86.11")),
    ("T80.89XA", None, ("code", "T80.89XA")),
    # Invalid codes are refused, with the nearest valid codes suggested.
    ("G61.99", None, ("refused", "invalid_code")),
    ("Z99.999", None, ("refused", "invalid_code")),
    ("M30-M36", None, ("refused", "invalid_code")),
    ("123", None, ("refused", "invalid_code")),
    ("GBS", None, ("refused", "invalid_code")),
    # Rulebook names, synonyms and abbreviations, however typed.
    (None, "GBS", ("synonym", "G61.0")),
    (None, "gbs", ("synonym", "G61.0")),
    (None, "Guillain-Barré syndrome", ("synonym", "G61.0")),
    (None, "guillain barre syndrome", ("synonym", "G61.0")),
    (None, "GUILLAIN–BARRE SYNDROME", ("synonym", "G61.0")),
    (None, "Wegener's granulomatosis", ("synonym", "M31.3")),
    (None, "Wegener’s granulomatosis", ("synonym", "M31.3")),
    (None, "wegeners granulomatosis", ("synonym", "M31.3")),
    (None, "granulomatosis with polyangiitis", ("synonym", "M31.3")),
    (None, "Churg-Strauss syndrome", ("synonym", "M30.1")),
    (None, "eosinophilic granulomatosis with polyangiitis", ("synonym", "M30.1")),
    (None, "Reiter's syndrome", ("synonym", "M02.3")),
    (None, "reactive arthritis", ("synonym", "M02.3")),
    (None, "Reiter's disease", ("synonym", "M02.3")),
    (None, "Clarkson's disease", ("synonym", "I78.8")),
    (None, "systemic capillary leak syndrome", ("synonym", "I78.8")),
    (None, "Sweet's syndrome", ("synonym", "L98.2")),
    (None, "acute febrile neutrophilic dermatosis", ("synonym", "L98.2")),
    (None, "Lyell's syndrome", ("synonym", "L51.2")),
    (None, "toxic epidermal necrolysis", ("synonym", "L51.2")),
    (None, "Kawasaki disease", ("synonym", "M30.3")),
    (None, "CIDP", ("synonym", "G61.81")),
    (None, "ITP", ("synonym", "D69.3")),
    (None, "SLE", ("synonym", "M32")),
    (None, "MS", ("synonym", "G35")),
    (None, "TEN", ("synonym", "L51.2")),
    (None, "SJS", ("synonym", "L51.1")),
    (None, "APS", ("synonym", "D68.61")),
    (None, "CVID", ("synonym", "D83.9")),
    (None, "type 1 diabetes", ("synonym", "E10")),
    # ICD-10-CM descriptions and inclusion terms of codes the rulebook does not name.
    (None, "Essential (primary) hypertension", ("text", "I10")),
    (None, "sarcoidosis of lung", ("text", "D86.0")),
    (None, "Reactive arthritis NOS", ("synonym", "M02.3")),
    (None, "Plaque psoriasis", ("text", "L40.0")),
    (None, "Crohn's disease [regional enteritis]", ("text", "K50")),
    # Deterministic normalisation is exact: possessive or plural s, filler words, "unspecified".
    (None, "Guillain Barre", ("synonym", "G61.0")),
    (None, "guillain barre", ("synonym", "G61.0")),
    (None, "Kawasaki's disease", ("synonym", "M30.3")),
    (None, "kawasakis disease", ("synonym", "M30.3")),
    (None, "Kawasaki", ("synonym", "M30.3")),
    (None, "alzheimers", ("synonym", "G30")),
    (None, "Alzheimer's", ("synonym", "G30")),
    (None, "wegeners granulomatosis", ("synonym", "M31.3")),
    (None, "syndrome of Sweet", ("synonym", "L98.2")),
    (None, "anemia", ("text", "D64.9")),
    # A word order that normalisation does not explain is not exact.
    (None, "barre guillain syndrome", ("fuzzy", "G61.0")),
    # Typos and near spellings: one clear match is proposed, never decided.
    (None, "guillian bare syndrom", ("fuzzy", "G61.0")),
    (None, "wegners granulomatosis", ("fuzzy", "M31.3")),
    (None, "kawasaky disease", ("fuzzy", "M30.3")),
    (None, "multiple sclerosys", ("fuzzy", "G35")),
    (None, "myasthenia gravys", ("fuzzy", "G70.0")),
    (None, "bullous pemphigoyd", ("fuzzy", "L12.0")),
    (None, "polymiositis", ("fuzzy", "M33.2")),
    (None, "paediatric GBS", ("fuzzy", "G61.0")),
    # Several close candidates, or a weak one: review, listing them.
    (None, "chronic fatigue", ("review", ["G93.32", "R53.82"])),
    (None, "transplant rejection", ("review", [])),
    (None, "wegner", ("fuzzy", "M31.3")),
    # Gibberish, empty and very long input: a clear refusal or review, never an exception.
    (None, "asdf qwerty", ("review", [])),
    (None, "zzzzzz", ("review", [])),
    (None, "!!!", ("review", [])),
    (None, "日本語", ("review", [])),
    (None, "a" * 200, ("review", [])),
    (None, "", ("refused", "empty_value")),
    (None, "   ", ("refused", "empty_value")),
    (None, "x" * 201, ("refused", "too_long")),
    (None, 42, ("refused", "wrong_type")),
    # A code with a text: agreement decides on the code; disagreement goes to review.
    ("G61.0", "GBS", ("code", "G61.0")),
    ("M31.30", "Wegener's granulomatosis", ("code", "M31.30")),
    ("D83.9", "primary immunodeficiency", ("code", "D83.9")),
    ("G61.0", "asdf qwerty", ("code", "G61.0")),
    ("G61.0", "Kawasaki disease", ("conflict", ["G61.0", "M30.3"])),
]


@pytest.mark.parametrize("code, text, expected", TABLE, ids=[f"{c!r}+{t!r}"[:60] for c, t, _ in TABLE])
def test_diagnosis_resolution(fixture_formulary, code, text, expected):
    diagnosis = {k: v for k, v in (("code", code), ("text", text)) if v is not None}
    kind, value = expected
    if kind == "refused":
        with pytest.raises(RequestError) as caught:
            fixture_formulary.decide({"diagnosis": diagnosis})
        assert caught.value.code == value
        return
    decision = fixture_formulary.decide({"diagnosis": diagnosis})
    match = decision.diagnosis
    candidates = [c["code"] for c in decision.to_dict()["candidates"]]
    if kind in ("review", "conflict"):
        assert decision.outcome == "needs_review" and decision.rule is None
        assert set(value) <= set(candidates), candidates
        assert (match.code is not None) == (kind == "conflict")
        if kind == "review" and not value:
            assert "recognise" in decision.rationale or candidates
    else:
        assert (match.matched_by, match.code) == (kind, value), (match, candidates)
        assert match.problem is None
        if kind == "fuzzy":
            assert decision.outcome == "needs_review" and decision.rule is None
            assert candidates[0] == value and decision.if_confirmed["code"] == value
            assert "read approximately" in decision.rationale
        else:
            assert decision.if_confirmed is None and not candidates


def test_every_name_and_synonym_the_rulebook_gives_a_diagnosis_resolves_exactly_to_it(fixture_formulary):
    """The table picks examples; this walks every term, so a synonym that another diagnosis's
    term or an ICD-10-CM text shadows is caught wherever it is added."""
    wrong = []
    for dx in fixture_formulary.rulebook.diagnoses.values():
        for term, pinned in [(dx.name, None), *((synonym.term, synonym.code) for synonym in dx.synonyms)]:
            match = fixture_formulary.decide({"diagnosis": {"text": term}}).diagnosis
            own = (
                match.plain_code == icd10.normalise(pinned)
                if pinned
                else match.plain_code is not None and icd10.covered_by(match.plain_code, dx.codes)
            )
            if match.matched_by != "synonym" or not own:
                wrong.append((dx.id, term, match.matched_by, match.code))
    assert wrong == []


def test_the_icd10cm_description_of_every_code_the_rulebook_names_resolves_to_that_code(fixture_formulary):
    wrong = []
    for code in (code for dx in fixture_formulary.rulebook.diagnoses.values() for code in dx.codes):
        description = icd10.description(icd10.normalise(code))
        match = fixture_formulary.decide({"diagnosis": {"text": description}}).diagnosis
        if match.matched_by not in ("synonym", "text") or match.plain_code != icd10.normalise(code):
            wrong.append((code, description, match.matched_by, match.code))
    assert wrong == []


def test_invalid_code_suggests_the_nearest_valid_codes(fixture_formulary):
    with pytest.raises(RequestError) as caught:
        fixture_formulary.decide({"diagnosis": {"code": "G61.99"}})
    suggested = [s["code"] for s in caught.value.suggestions]
    assert "G61.9" in suggested and "'G61.99' is not an ICD-10-CM code; nearest valid codes: " in caught.value.message


def test_code_and_text_that_disagree_say_so(fixture_formulary):
    decision = fixture_formulary.decide({"diagnosis": {"code": "G61.0", "text": "Kawasaki disease"}})
    assert "name different diagnoses" in decision.rationale and "Kawasaki" in decision.rationale


def test_a_misspelt_diagnosis_is_proposed_with_what_the_rules_would_decide_if_confirmed(fixture_formulary):
    data = fixture_formulary.decide(
        {"diagnosis": {"text": "guillian bare syndrom"}, "patient": {"age_years": 6}}
    ).to_dict()
    assert data["diagnosis"] == {
        "code": "G61.0",
        "description": "Guillain-Barre syndrome",
        "matched_by": "fuzzy",
        "input": "guillian bare syndrom",
    }
    assert data["outcome"] == "needs_review" and data["rule"] is None
    assert data["if_confirmed"] == {
        "code": "G61.0",
        "outcome": "off_label_with_evidence",
        "rule": {"id": "gbs-children", "title": "Guillain-Barré syndrome in children"},
    }
    confirmed = fixture_formulary.decide({"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 6}}).to_dict()
    assert (confirmed["outcome"], confirmed["rule"]) == (data["if_confirmed"]["outcome"], data["if_confirmed"]["rule"])


def test_ambiguous_text_lists_candidates_with_code_description_and_score(fixture_formulary):
    candidates = fixture_formulary.decide({"diagnosis": {"text": "chronic fatigue"}}).to_dict()["candidates"]
    assert candidates and set(candidates[0]) == {"code", "description", "score"}
    assert all(0 < c["score"] <= 100 for c in candidates)


# Resolves texts that only match approximately, printing every candidate list, in a fresh process.
_CANDIDATES_IN_A_PROCESS = """
import json, sys
from service.decide.formulary import Formulary
formulary = Formulary.load(sys.argv[1])
texts = [variant for diagnosis in formulary.rulebook.diagnoses.values()
         for term in (diagnosis.name, *(s.term for s in diagnosis.synonyms))
         for variant in (term[:-1], "acute " + term.lower())]
print(json.dumps({t: [(c.code, c.score) for c in formulary.terminology.resolve(None, t).candidates] for t in texts}))
"""


@pytest.mark.slow
def test_two_worker_processes_offer_the_same_candidates_in_the_same_order():
    """Each worker has its own hash seed; candidates that tie must not be ordered by it, or two
    workers would propose and record different candidates for the same words."""
    answers = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", _CANDIDATES_IN_A_PROCESS, str(TEST_RULEBOOK)],
                env={**os.environ, "PYTHONHASHSEED": seed},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for seed in ("1", "2", "3")
    ]
    assert answers[0] == answers[1] == answers[2]
