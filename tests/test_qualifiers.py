"""A word that names a different condition ("secondary", "acute") keeps an approximate match from
being offered for confirmation, and a code from agreeing with a text that says it; the rulebook
lists those words."""

import pytest
import yaml

from service.decide.formulary import Formulary
from service.rulebook.model import RulebookError

from .conftest import write_rulebook


@pytest.fixture
def with_qualifiers(tmp_path):
    path = write_rulebook(tmp_path)
    rulebook = yaml.safe_load(path.read_text())
    rulebook["qualifiers"] = ["secondary", "acute"]
    path.write_text(yaml.safe_dump(rulebook, sort_keys=False, allow_unicode=True))
    formulary = Formulary.load(path)
    yield formulary
    formulary.close()


def test_a_misspelling_with_a_qualifier_the_proposed_diagnosis_lacks_is_not_offered(with_qualifiers):
    decision = with_qualifiers.decide(
        {"diagnosis": {"text": "acute polymyositis"}, "therapies": {"concurrent": ["prednisone"]}}
    )
    assert (decision.outcome, decision.rule, decision.if_confirmed) == ("needs_review", None, None)
    assert decision.diagnosis.matched_by == "fuzzy" and decision.diagnosis.code == "M33.2"
    assert "the text says 'acute', which that diagnosis does not" in decision.rationale
    assert decision.candidates[0].code == "M33.2"  # still listed: a person may choose it


def test_the_same_misspelling_without_the_qualifier_is_offered_with_its_outcome(with_qualifiers):
    decision = with_qualifiers.decide({"diagnosis": {"text": "Guillain-Barre syndrom"}, "patient": {"age_years": 8}})
    assert decision.outcome == "needs_review" and decision.rule is None
    assert decision.if_confirmed == {
        "code": "G61.0",
        "outcome": "off_label_with_evidence",
        "rule": {"id": "gbs-children", "title": "GBS in children"},
    }


def test_a_qualifier_the_diagnosis_names_itself_does_not_block_it(with_qualifiers):
    # "acute" is in the code's own name (Guillain-Barre is "acute inflammatory demyelinating polyneuropathy"
    # in ICD-10-CM's inclusion terms), so a misspelt text that says it is still offered.
    decision = with_qualifiers.decide(
        {"diagnosis": {"text": "acute infective polyneuritiss"}, "patient": {"age_years": 8}}
    )
    assert decision.diagnosis.code == "G61.0" and decision.if_confirmed is not None


def test_a_code_with_a_text_that_says_a_qualifier_the_code_lacks_goes_to_review(with_qualifiers):
    decision = with_qualifiers.decide(
        {"diagnosis": {"code": "M33.2", "text": "acute polymyositis"}, "therapies": {"concurrent": ["prednisone"]}}
    )
    assert (decision.outcome, decision.rule) == ("needs_review", None)
    assert "it says 'acute', which the code does not" in decision.rationale


def test_a_code_with_a_text_for_another_diagnosis_of_its_family_does_not_agree(mini):
    # M33.20 belongs to the polymyositis diagnosis; the text names its parent M33, filed apart as "myositis".
    decision = mini.decide({"diagnosis": {"code": "M33.20", "text": "Polymyositis and dermatomyositis"}})
    assert (
        decision.outcome == "needs_review"
        and decision.rule is None
        and "name different diagnoses" in decision.rationale
    )
    agreeing = mini.decide(
        {
            "diagnosis": {"code": "M33.20", "text": "Polymyositis"},
            "severity": "severe",
            "therapies": {"failed": ["corticosteroids"], "concurrent": []},
        }
    )
    assert agreeing.rule["id"] == "polymyositis-severe"


def test_a_qualifier_of_two_words_is_refused_by_the_loader(tmp_path):
    path = write_rulebook(tmp_path)
    rulebook = yaml.safe_load(path.read_text())
    rulebook["qualifiers"] = ["drug induced"]
    path.write_text(yaml.safe_dump(rulebook))
    with pytest.raises(RulebookError) as refused:
        Formulary.load(path)
    assert "qualifiers: 'drug induced' is not one word" in str(refused.value)
