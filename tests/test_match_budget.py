"""The approximate matcher's work per text is bounded: past the budget, the decision says the text
was too long to match fully and what was tried; it never answers differently without saying so."""

import functools
import random
import statistics
import threading
import time

import pytest

from service.decide import terminology
from service.decide.terminology import MATCH_BUDGET, WorkBudget, icd_text_index

from .service_process import admin_token, running_service, service_env


@functools.cache
def common_words() -> list[str]:
    index = icd_text_index()
    return sorted(index.postings, key=lambda word: (-len(index.postings[word]), word))[:200]


def common_words_text(seed: int, length: int = 200) -> str:
    """A text of the code set's commonest words, the most expensive kind to match approximately."""
    common = common_words()
    rng = random.Random(seed)
    words: list[str] = []
    while len(" ".join(words)) < length:
        words.append(rng.choice(common))
    return " ".join(words)[:length].strip()


def test_a_text_past_the_budget_goes_to_review_saying_it_is_too_long_and_what_was_tried(fixture_formulary):
    text = common_words_text(1)
    decision = fixture_formulary.decide({"diagnosis": {"text": text}, "patient": {"age_years": 40}})
    assert decision.outcome == "needs_review" and decision.rule is None
    assert decision.diagnosis.code is None and decision.diagnosis.matched_by is None
    assert "too long to match fully" in decision.rationale
    assert "tried the words" in decision.rationale and "not the words" in decision.rationale
    tried = decision.rationale.split("tried the words ")[1].split(" but")[0]
    assert tried and all(f"'{word}'" in tried for word in text.split()[:1])
    # What was found before the budget ran out is listed, as candidates, never as a proposal.
    assert decision.if_confirmed is None
    for candidate in decision.candidates:
        assert candidate.code in decision.rationale


def test_an_ordinary_text_cut_by_a_small_budget_says_so_rather_than_proposing(fixture_formulary, monkeypatch):
    assert fixture_formulary.terminology._approximate("guillian bare syndrom", "guillian bare syndrom").is_proposal
    monkeypatch.setattr(terminology, "MATCH_BUDGET", 2_000)
    match = fixture_formulary.terminology._approximate("guillian bare syndrom", "guillian bare syndrom")
    assert match.code is None and not match.is_proposal and match.problem
    assert (
        "too long to match fully" in match.problem
        and "but not the words 'guillian', 'bare', 'syndrom'" in match.problem
    )


def test_the_budget_bounds_the_comparisons_made_for_one_text(monkeypatch):
    """Counted in the work itself: words compared to find near words, index texts counted per word."""
    index = icd_text_index()
    counted = {"compared": 0, "postings": 0}
    extract, near_words = terminology.process.extract, index._near_words

    def counting_extract(query, choices, **kwargs):
        if kwargs.get("scorer") is terminology.fuzz.ratio:
            counted["compared"] += len(choices)
        return extract(query, choices, **kwargs)

    def counting_near_words(word, budget):
        found = near_words(word, budget)
        counted["postings"] += sum(len(index.postings[w]) for w in found or ())
        return found

    monkeypatch.setattr(terminology.process, "extract", counting_extract)
    monkeypatch.setattr(index, "_near_words", counting_near_words)
    text = common_words_text(2)
    unbounded = WorkBudget(10**9)
    index.fuzzy(text, unbounded)
    everything = counted["compared"] + counted["postings"]
    assert unbounded.spent == everything and not unbounded.exhausted
    counted.update(compared=0, postings=0)
    budget = WorkBudget(MATCH_BUDGET)
    index.fuzzy(text, budget)
    assert budget.exhausted and budget.spent <= MATCH_BUDGET < everything
    # The work done is what was counted, give or take the one word whose near words overran it.
    assert counted["compared"] + counted["postings"] <= MATCH_BUDGET + max(len(p) for p in index.postings.values()) * 6


def test_the_texts_of_the_terminology_tests_fit_the_budget_with_room(fixture_formulary):
    for text in ("encephalitis of unspecifie or other cause", "guillian bare syndrom", "bullous pemphigoyd"):
        budget = WorkBudget(MATCH_BUDGET)
        fixture_formulary.terminology.icd.fuzzy(text, budget)
        assert not budget.exhausted and budget.spent * 2 <= MATCH_BUDGET, (text, budget.spent)


@pytest.mark.long
def test_ordinary_decisions_keep_their_latency_while_sixteen_clients_send_long_texts(tmp_path):
    ordinary = {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8}}

    def median_ms(service, token, count=30) -> float:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            status, _ = service.call("POST", "/v1/decisions", token, ordinary)
            times.append(time.perf_counter() - started)
            assert status == 201
            time.sleep(0.02)
        return statistics.median(times) * 1000

    with running_service(service_env(tmp_path / "instance")) as service:
        token = admin_token(service.banner)
        median_ms(service, token, 5)  # warm
        unloaded = median_ms(service, token)
        stop, answers = threading.Event(), []
        # Written before the clients start, so this process spends its time measuring, not writing.
        texts = [common_words_text(seed) for seed in range(16 * 50)]

        def client(seed: int):
            for text in texts[seed::16]:
                if stop.is_set():
                    return
                body = {"diagnosis": {"text": text}, "patient": {"age_years": 8}}
                answers.append(service.call("POST", "/v1/decisions", token, body, timeout=120))

        clients = [threading.Thread(target=client, args=(seed,)) for seed in range(16)]
        for thread in clients:
            thread.start()
        try:
            time.sleep(2)
            loaded = median_ms(service, token)
        finally:
            stop.set()
            for thread in clients:
                thread.join()
    assert answers and all(status == 201 for status, _ in answers)
    assert all(body["outcome"] == "needs_review" for _, body in answers)
    assert loaded <= 2 * unloaded, f"ordinary decision median {loaded:.1f} ms under load, {unloaded:.1f} ms without"
