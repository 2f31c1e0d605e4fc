"""A rulebook keeps the exact texts it was read from, and its digest is computed over them."""

import pytest

from service.rulebook.reader import digest_texts, load_rulebook, load_rulebook_texts

from .conftest import TEST_RULEBOOK

SERVED = load_rulebook(TEST_RULEBOOK)


def test_a_rulebook_keeps_the_texts_its_digest_is_computed_over():
    assert sorted(SERVED.texts) == sorted(
        [TEST_RULEBOOK.name] + [f"data/{p.name}" for p in (TEST_RULEBOOK.parent / "data").glob("*.yaml")]
    )
    assert SERVED.texts[TEST_RULEBOOK.name] == TEST_RULEBOOK.read_text(encoding="utf-8")
    assert digest_texts(SERVED.texts) == SERVED.digest
    again = load_rulebook_texts(SERVED.texts, digest=SERVED.digest)
    assert (again.digest, again.rules) == (SERVED.digest, SERVED.rules)


def test_texts_that_do_not_give_the_digest_they_claim_are_refused():
    from service.rulebook.model import RulebookError

    edited = {**SERVED.texts, TEST_RULEBOOK.name: SERVED.texts[TEST_RULEBOOK.name] + "\n"}
    with pytest.raises(RulebookError, match="digest"):
        load_rulebook_texts(edited, digest=SERVED.digest)
    with pytest.raises(RulebookError):
        load_rulebook_texts({"../escape.yaml": "x", **{k: v for k, v in SERVED.texts.items() if "/" in k}})
