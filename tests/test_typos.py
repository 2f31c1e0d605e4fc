"""One-edit typos of every name the shipped rulebook gives a diagnosis never decide.

A typo is proposed (needs_review, with what the rules would decide if the code is confirmed);
it never approves, refuses or decides off-label. The only typos allowed to decide are those that
spell another known term exactly (as "MS" and "MG" are one edit apart): they are exact matches.
This is a property of the terminology over the whole shipped vocabulary, so it runs there.
"""

import random
import string

import pytest

from service.rulebook.text_keys import fold


def one_edit_typos(term: str, rng: random.Random, per_kind: int = 4) -> set[str]:
    """Every deletion and adjacent swap, and a few substitutions and insertions, of a term."""
    typos = {term[:i] + term[i + 1 :] for i in range(len(term))}
    typos |= {term[:i] + term[i + 1] + term[i] + term[i + 2 :] for i in range(len(term) - 1)}
    for _ in range(per_kind):
        i = rng.randrange(len(term))
        typos.add(term[:i] + rng.choice(string.ascii_lowercase) + term[i + 1 :])
        typos.add(term[:i] + rng.choice(string.ascii_lowercase) + term[i:])
    return typos - {term}


def spells_a_known_term(terminology, typo: str) -> bool:
    folded = fold(typo)
    queries = {folded, terminology.expand(folded)}
    return any(
        terminology.rulebook_index.exact(q)
        or terminology.icd.exact(q)
        or terminology.rulebook_index.by_key(q)
        or terminology.icd.by_key(q)
        for q in queries
    )


def typos_that_decide(shipped, sample: int | None) -> tuple[int, int, list]:
    """(typos tried, typos that spell a known term, typos that decided) over every diagnosis name;
    `sample` typos a term at most (None: all of them)."""
    rng = random.Random(13)
    used = {rule.diagnosis for rule in shipped.rulebook.rules}
    terms = sorted(
        {
            term
            for dx in shipped.rulebook.diagnoses.values()
            if dx.id in used
            for term in (dx.name, *(s.term for s in dx.synonyms))
        }
    )
    tried = exact = 0
    wrong = []
    for term in terms:
        typos = sorted(one_edit_typos(term, rng))
        for typo in typos if sample is None else rng.sample(typos, min(sample, len(typos))):
            if not fold(typo) or spells_a_known_term(shipped.terminology, typo):
                exact += 1
                continue
            tried += 1
            decision = shipped.decide({"diagnosis": {"text": typo}, "patient": {"age_years": 40}})
            if decision.outcome != "needs_review" or decision.rule is not None:
                wrong.append((term, typo, decision.outcome))
    return tried, exact, wrong


@pytest.mark.slow
def test_a_sample_of_one_edit_typos_of_every_diagnosis_name_never_decides(shipped):
    tried, exact, wrong = typos_that_decide(shipped, sample=8)
    assert tried > 3000 and not wrong, wrong[:20]


@pytest.mark.long
def test_every_one_edit_typo_of_every_diagnosis_name_never_decides(shipped):
    tried, exact, wrong = typos_that_decide(shipped, sample=None)
    print(f"{tried} typos decided as proposals or candidates; {exact} spell a known term exactly")
    assert tried > 20_000 and not wrong, wrong[:20]
