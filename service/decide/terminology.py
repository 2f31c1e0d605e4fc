"""Turning what a prescriber typed into an ICD-10-CM code, and saying how sure we are.

- A code is accepted in any case, with or without its dot, and must exist in the official code
  set; an invalid code is refused with the nearest valid codes.
- A text is folded (case, accents, apostrophes, punctuation) and its abbreviations expanded
  (the rulebook declares them), then matched exactly, in this order: a diagnosis name or synonym
  of the rulebook ("synonym"); an ICD-10-CM description or inclusion term ("text"); the same two
  again on the text's key, which also drops a possessive or plural "s" and filler words such as
  "syndrome", "disease" and "of the" ("alzheimers" = "Alzheimer disease"). An exact match may
  decide.
- Anything else is matched approximately, with rapidfuzz ("fuzzy"), and an approximate match
  never decides: one clear match is a proposal (the decision path sends it to review with what the
  rules would decide if it is confirmed); several close ones, or a weak one, are candidates.
  A proposal whose text carries a qualifier the proposed diagnosis lacks ("secondary", "acute",
  "drug-induced": the rulebook lists them) says so, and nothing is offered for confirmation.
- A code and a text that name different diagnoses go to review, saying so.

The ICD-10-CM text index is built once per install and kept in the cache folder with the code set
(service/rulebook/disk_cache.py), read once per process; the rulebook's part is built once per rulebook.
"""

import heapq
import os
import threading
import time
from array import array
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache

from rapidfuzz import fuzz, process

from service.decide.request import RequestError
from service.rulebook import disk_cache, icd10, text_keys
from service.rulebook.model import Rulebook
from service.rulebook.text_keys import fold, match_key

# Approximate matching: a match is used when it scores at least CONFIDENT and no match of
# another diagnosis comes within MARGIN of its score and CLOSENESS_MARGIN of its closeness;
# candidates below CANDIDATE are not worth showing.
CONFIDENT = 88.0
MARGIN = 5.0
CLOSENESS_MARGIN = 10.0
CANDIDATE = 60.0
MAX_CANDIDATES = 5
# The approximate matcher's work for one text, counted in comparisons: an index word compared with
# a word of the text (to find its near words), and an index text counted for a near word it holds.
# The most an ordinary text of the terminology and typo tests needs is about 75,000 ("encephalitis
# of unspecified or other cause": "unspecified" and "other" are in 50,000 texts), the median about
# 12,000; 200 characters of the code set's commonest words need several hundred thousand, tens of
# milliseconds holding the interpreter, which is how sixteen such clients slowed every other
# decision a hundredfold. Past the budget the text is not matched further and the decision says
# so (needs_review, with the words tried and the candidates found so far): never a different
# answer without saying why. Not clinical policy: it bounds work, and no test text comes near it.
MATCH_BUDGET = 150_000
TEXT_CACHE_SIZE = 10_000
_STOPWORDS = frozenset({"a", "an", "and", "by", "due", "for", "in", "of", "on", "or", "the", "to", "with"})


@dataclass(frozen=True)
class Candidate:
    code: str  # dotted
    description: str
    score: float

    def to_dict(self) -> dict:
        return {"code": self.code, "description": self.description, "score": self.score}


def _candidate(plain: str, score: float) -> Candidate:
    return Candidate(icd10.dotted(plain), icd10.description(plain), round(score, 1))


@dataclass(frozen=True)
class DiagnosisMatch:
    code: str | None  # dotted; None when no single diagnosis was recognised
    description: str | None
    matched_by: str | None  # "code", "synonym", "text", "fuzzy"; None when unrecognised
    input: str  # what the user typed (the code when both were given)
    score: float | None = None  # for a fuzzy match
    candidates: tuple[Candidate, ...] = ()
    problem: str | None = None  # why the diagnosis cannot be decided on, if it cannot
    unmatched_qualifiers: tuple[str, ...] = ()  # words of a fuzzy text that the proposed code lacks
    too_long: bool = False  # the approximate match ran out of MATCH_BUDGET (problem says what it tried)

    @property
    def is_proposal(self) -> bool:
        """An approximate match: it proposes a code, it never decides."""
        return self.matched_by == "fuzzy"

    @cached_property
    def plain_code(self) -> str | None:
        return None if self.code is None else icd10.normalise(self.code)

    def to_dict(self) -> dict:
        return {"code": self.code, "description": self.description, "matched_by": self.matched_by, "input": self.input}


class WorkBudget:
    """The comparisons the approximate matcher may still make for one text."""

    def __init__(self, limit: int):
        self.limit, self.spent, self.exhausted = limit, 0, False

    def spend(self, amount: int) -> bool:
        """Spend `amount` if it fits; once something does not fit, the budget is exhausted."""
        if self.exhausted or self.spent + amount > self.limit:
            self.exhausted = True
            return False
        self.spent += amount
        return True


# Approximate matches run one at a time per process, on one thread of the lowest CPU priority
# (Linux applies nice to a thread), pausing briefly between query words, every _SLICE texts
# ranked and every _SCORE_SLICE texts scored. A decision on a code or an exact text never waits
# for it: the scheduler gives its thread a core first, and the pauses hand it the interpreter
# lock, which the matcher holds while it works (rapidfuzz too, for a whole call). Queued matches
# wait without the lock. Sixteen clients sending 200-character texts then leave an ordinary
# decision within twice its unloaded latency (tests/test_match_budget.py).
_SLICE = 5_000
_SCORE_SLICE = 50


def _lowest_priority():
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except OSError:  # not permitted here: the pauses alone still let other threads through
        pass


def _new_matcher() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="approximate-match", initializer=_lowest_priority)


_MATCHER = _new_matcher()


def _after_fork_in_child():
    """A forked worker gets its own matcher: the parent's thread does not exist in the child."""
    global _MATCHER
    _MATCHER = _new_matcher()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Pacer:
    """Pauses the matcher as long as it has just worked (at least 0.1 ms: sleep(0) gives the lock
    back and usually takes it again first), so it holds the interpreter at most half the time."""

    def __init__(self):
        self.since = time.perf_counter()

    def pause(self):
        time.sleep(max(0.0001, time.perf_counter() - self.since))
        self.since = time.perf_counter()


def _words(text: str) -> list[str]:
    """The text's words that say something, each once, in the order written: never a set's order,
    which changes with each process's hash seed and would make two workers rank ties differently."""
    return [word for word in dict.fromkeys(text.split()) if word not in _STOPWORDS]


class TextIndex:
    """Folded texts, each naming a code, searchable exactly and approximately.

    The approximate search first finds, for each query word, the index words within a small edit
    distance (rapidfuzz over words of similar length), then scores only the texts that contain
    them. That keeps a misspelt query over the whole code set to milliseconds.
    """

    def __init__(self, entries: list[tuple[str, str]]):
        self.texts = [text for text, _ in entries]
        self.codes = [code for _, code in entries]
        exact: dict[str, list[str]] = {}
        by_key: dict[str, list[str]] = {}
        postings: dict[str, list[int]] = {}
        for i, (text, code) in enumerate(entries):
            for index, found in ((exact, text), (by_key, match_key(text))):
                codes = index.setdefault(found, [])
                if code not in codes:
                    codes.append(code)
            for word in _words(text):
                postings.setdefault(word, []).append(i)
        # The codes of a text joined by spaces, and each word's texts as an array: a tenth of the
        # objects, which is what reading the index from the cache costs.
        self.exact_index = {text: " ".join(codes) for text, codes in exact.items()}
        self.key_index = {key: " ".join(codes) for key, codes in by_key.items()}
        self.postings = {word: array("i", found) for word, found in postings.items()}
        self.words_by_length: dict[int, list[str]] = {}
        for word in postings:
            self.words_by_length.setdefault(len(word), []).append(word)

    def exact(self, text: str) -> list[str]:
        return self.exact_index.get(text, "").split()

    def by_key(self, text: str) -> list[str]:
        """The codes of texts with the same match key as this folded text."""
        return self.key_index.get(match_key(text), "").split()

    def _near_words(self, word: str, budget: WorkBudget) -> list[str] | None:
        """Index words within a small edit distance of the word; None when the budget cannot pay
        for comparing it with every index word of similar length."""
        nearby = [w for length in range(len(word) - 2, len(word) + 3) for w in self.words_by_length.get(length, ())]
        if not budget.spend(len(nearby)):
            return None
        cutoff = 100.0 if len(word) <= 3 else 75.0
        return [w for w, _, _ in process.extract(word, nearby, scorer=fuzz.ratio, score_cutoff=cutoff, limit=6)]

    def fuzzy(
        self, query: str, budget: WorkBudget, pool: int = 1500
    ) -> tuple[dict[str, tuple[float, float]], list[str]]:
        """code -> (score, closeness) of its best text against the query, and the query words
        tried: all of them, unless the budget ran out first (then the texts found by the words
        tried are scored, and no more: at most `pool` of them, whatever the budget).

        The score is rapidfuzz's WRatio, which rates a text containing the query highly whatever
        else it says; closeness is the plain similarity of the whole strings, which prefers the
        text that adds least to what was typed ("guillain barre" is nearer "guillain barre
        syndrome" than "sequelae of guillain barre syndrome").
        """
        pause = _Pacer().pause
        hits: Counter = Counter()
        tried = []
        for word in _words(query):
            pause()
            found_near = self._near_words(word, budget)
            if found_near is None or not budget.spend(sum(len(self.postings[near]) for near in found_near)):
                break
            for near in found_near:
                postings = self.postings[near]
                for start in range(0, len(postings), _SLICE):
                    pause()
                    hits.update(postings[start : start + _SLICE])
            tried.append(word)
        if not hits:
            return {}, tried
        # The texts sharing most words with the query, shortest first among equals: for a common
        # word ("anemia") the plain entry must not lose its place to a thousand longer ones.
        # Every text with two or more hits comes before every text with one, so the texts with one
        # (most of them, for a common word) are ranked only when the others do not fill the pool.
        items = list(hits.items())
        several: list[tuple[int, int, int]] = []
        for start in range(0, len(items), _SLICE):
            pause()
            several += [(-n, len(self.texts[i]), i) for i, n in items[start : start + _SLICE] if n > 1]
        ranked = heapq.nsmallest(pool, several)
        if len(ranked) < pool:
            pause()
            ones = [(-1, len(self.texts[i]), i) for i, n in items if n == 1]
            ranked += heapq.nsmallest(pool - len(ranked), ones)
        # Scored in slices too (rapidfuzz keeps the lock for a whole call), then ranked as one call
        # of process.extract ranks: by score, ties in the pool's order; the best 100.
        scored = []
        for start in range(0, len(ranked), _SCORE_SLICE):
            pause()
            choices = {i: self.texts[i] for _, _, i in ranked[start : start + _SCORE_SLICE]}
            scored += process.extract(query, choices, scorer=fuzz.WRatio, score_cutoff=CANDIDATE, limit=None)
        scored.sort(key=lambda result: -result[1])
        found: dict[str, tuple[float, float]] = {}
        for text, score, i in scored[:100]:
            code, rank = self.codes[i], (score, fuzz.ratio(query, text))
            found[code] = max(rank, found.get(code, rank))
        return found, tried


def icd_text_entries() -> list[tuple[str, str]]:
    """Every valid code's description and inclusion terms (about 110,000 texts), folded."""
    codes = icd10.code_set()
    entries = []
    for code in codes.order:
        entries.append((fold(codes.descriptions[code]), code))
        entries += [(fold(term), code) for term in codes.terms.get(code, ())]
    return [(text, code) for text, code in entries if text]


class CachedTextIndex(TextIndex):
    """The code set's text index, read from the cache folder in two parts, each when first used:
    the exact matches (every text, the first thing looked at) and what the approximate match reads."""

    def __init__(self, source: dict):
        self.source = source

    def _part(self, name: str) -> list:
        return disk_cache.cached(
            f"icd10cm-text-{name}",
            self.source,
            lambda: _text_index_parts()[name],
            lambda value: isinstance(value, list),
        )

    @cached_property
    def _exact_part(self) -> list:
        return self._part("exact")

    @cached_property
    def _approximate_part(self) -> list:
        return self._part("approximate")

    @cached_property
    def exact_index(self) -> dict[str, str]:  # type: ignore[override]
        return self._exact_part[0]

    @cached_property
    def key_index(self) -> dict[str, str]:  # type: ignore[override]
        return self._exact_part[1]

    @cached_property
    def texts(self) -> list[str]:  # type: ignore[override]
        return self._approximate_part[0]

    @cached_property
    def codes(self) -> list[str]:  # type: ignore[override]
        return self._approximate_part[1]

    @cached_property
    def postings(self) -> dict[str, array]:  # type: ignore[override]
        return {word: array("i", found) for word, found in self._approximate_part[2].items()}

    @cached_property
    def words_by_length(self) -> dict[int, list[str]]:  # type: ignore[override]
        return self._approximate_part[3]


@lru_cache(maxsize=1)
def _text_index_parts() -> dict[str, list]:
    """The index built from the code set (about 3 s), as the cache keeps it."""
    index = TextIndex(icd_text_entries())
    postings = {word: found.tobytes() for word, found in index.postings.items()}
    return {
        "exact": [index.exact_index, index.key_index],
        "approximate": [index.texts, index.codes, postings, index.words_by_length],
    }


@lru_cache(maxsize=1)
def icd_text_index() -> TextIndex:
    """The code set's text index, read from the cache folder when it was built from this very code
    set and this code (this module and the text folding), else built and kept there."""
    return CachedTextIndex({"code_set": icd10.source(), "code": disk_cache.file_digest(__file__, text_keys.__file__)})


def _family_head(codes: list[str]) -> str | None:
    """The ancestor of all the codes, if they form one family (e.g. M31.3 and M31.30)."""
    head = min(codes, key=len)
    return head if all(c.startswith(head) for c in codes) else None


class Terminology:
    """The rulebook's names for diagnoses plus the ICD-10-CM code set."""

    def __init__(self, rulebook: Rulebook):
        self.rulebook = rulebook
        self.abbreviations = {fold(short): fold(long) for short, long in rulebook.abbreviations.items()}
        self.qualifiers = frozenset(fold(word) for word in rulebook.qualifiers)
        self.owner: dict[str, str] = {}  # dotless rulebook code -> diagnosis id
        for dx in rulebook.diagnoses.values():
            self.owner.update({icd10.normalise(c): dx.id for c in dx.codes})
        # Prescribers type the same texts again and again; the answer depends only on the text
        # and this rulebook, so it is remembered (per Terminology, so a new rulebook starts afresh).
        self.resolve_text = lru_cache(maxsize=TEXT_CACHE_SIZE)(self._resolve_text)
        # Likewise a code as typed (a code set holds some 98,000: the cache keeps the ones in use).
        self._by_code = lru_cache(maxsize=TEXT_CACHE_SIZE)(self._resolve_code)

    @property
    def icd(self) -> TextIndex:
        return icd_text_index()

    @cached_property
    def synonyms(self) -> dict[str, str]:
        """Folded diagnosis name or synonym -> the dotless code it means (built on first use)."""
        found = {}
        for dx in self.rulebook.diagnoses.values():
            codes = [icd10.normalise(c) for c in dx.codes]
            for term, pinned in [(dx.name, None)] + [(s.term, s.code) for s in dx.synonyms]:
                found[fold(term)] = icd10.normalise(pinned) if pinned else self._code_for(fold(term), codes)
        return found

    @cached_property
    def rulebook_index(self) -> TextIndex:
        return TextIndex(list(self.synonyms.items()))

    def warm(self):
        """Read or build both text indexes now (a server does this at start-up, not on its first request)."""
        index = icd_text_index()
        _ = index.exact_index, index.key_index, index.texts, index.codes, index.postings, index.words_by_length
        _ = self.rulebook_index

    def _code_for(self, folded: str, codes: list[str]) -> str:
        """The code a diagnosis name means: the ICD-10-CM code with that very text within the
        diagnosis's codes, else the diagnosis's first code."""
        inside = [c for c in self.icd.exact(folded) if icd10.covered_by(c, codes)]
        return inside[0] if inside else codes[0]

    def diagnosis_of(self, plain: str) -> str | None:
        """The rulebook diagnosis whose most specific code covers this dotless code."""
        for prefix in reversed(icd10.prefixes(plain)):
            if prefix in self.owner:
                return self.owner[prefix]
        return None

    def expand(self, folded: str) -> str:
        return " ".join(self.abbreviations.get(word, word) for word in folded.split())

    def resolve(self, code: str | None, text: str | None) -> DiagnosisMatch:
        if code is None:
            return self.resolve_text(text)
        by_code = self._by_code(code)
        if text is None:
            return by_code
        plain = by_code.plain_code
        assert plain is not None  # by_code came from a valid code
        lacking = self.unmatched_qualifiers(self.expand(fold(text)), plain)
        return self._check_agreement(by_code, self.resolve_text(text), lacking)

    def _resolve_code(self, code: str) -> DiagnosisMatch:
        """The diagnosis a code names as typed; RequestError (never remembered) for an invalid one."""
        plain = icd10.normalise(code)
        if not icd10.is_valid(plain):
            nearest = nearest_codes(plain)
            listed = "; ".join(f"{c.code} {c.description}" for c in nearest)
            raise RequestError(
                "invalid_code",
                f"diagnosis.code '{code}' is not an ICD-10-CM code"
                + (f"; nearest valid codes: {listed}" if listed else ""),
                "diagnosis.code",
                suggestions=[c.to_dict() for c in nearest],
            )
        return DiagnosisMatch(icd10.dotted(plain), icd10.description(plain), "code", code)

    def _check_agreement(
        self, by_code: DiagnosisMatch, by_text: DiagnosisMatch, lacking: tuple[str, ...]
    ) -> DiagnosisMatch:
        """A code with a text: fine when the text names the same diagnosis (or nothing known).

        Codes of one family agree only when the rulebook does not file them under different
        diagnoses (G35.A relapsing-remitting is not G35 progressive MS), and a text whose words
        carry a qualifier the code lacks (`lacking`: "secondary CVID" with D83.9) never agrees.
        """
        if by_text.matched_by is None and not by_text.candidates and not lacking:
            return by_code
        code = by_code.plain_code
        assert code is not None  # by_code came from a valid code
        named = (
            [icd10.normalise(c.code) for c in by_text.candidates]
            if by_text.code is None
            else [icd10.normalise(by_text.code)]
        )
        mine = self.diagnosis_of(code)
        for other in named if not lacking else ():
            theirs = self.diagnosis_of(other)
            family = other.startswith(code) or code.startswith(other)
            if (mine is not None and theirs == mine) or (family and (mine is None or theirs is None)):
                return by_code
        if by_text.too_long:  # what it found so far does not agree; the rest of the text was not read
            return replace(
                by_code,
                candidates=(_candidate(code, 100.0),) + by_text.candidates,
                problem=f"the code {by_code.code} ({by_code.description}) could not be checked against the text: "
                f"{by_text.problem}",
            )
        text_side = (
            f"{by_text.code} ({by_text.description})"
            if by_text.code
            else "; ".join(f"{c.code} ({c.description})" for c in by_text.candidates)
        )
        if lacking:
            text_side = (
                text_side or "nothing we recognise"
            ) + f", and it says {', '.join(repr(w) for w in lacking)}, which the code does not"
        return DiagnosisMatch(
            by_code.code,
            by_code.description,
            "code",
            by_code.input,
            candidates=(_candidate(code, 100.0),)
            + ((_candidate(named[0], by_text.score or 100.0),) if by_text.code else by_text.candidates),
            problem=(
                f"the code {by_code.code} ({by_code.description}) and the text '{by_text.input}', which reads "
                f"as {text_side}, name different diagnoses"
            ),
        )

    def _resolve_text(self, text: str) -> DiagnosisMatch:
        folded = fold(text)
        if not folded:
            return _unrecognised(text)
        queries = tuple(dict.fromkeys((folded, self.expand(folded))))
        # Exact matches as folded: rulebook names before ICD-10-CM texts.
        for lookup, matched_by in ((self.rulebook_index.exact, "synonym"), (self.icd.exact, "text")):
            for query in queries:
                codes = lookup(query)
                if codes:
                    return _exact(text, codes, matched_by)
        # Then by key, where every text of either kind with that key must name one diagnosis:
        # "chronic fatigue" keys like "chronic fatigue syndrome" (G93.32) and like R53.82's
        # "chronic fatigue, unspecified", so it stays ambiguous.
        for query in queries:
            named = self.rulebook_index.by_key(query)
            codes = list(dict.fromkeys(named + self.icd.by_key(query)))
            if codes:
                return _exact(text, codes, "synonym" if named and _family_head(codes) in named else "text")
        return self._approximate(text, queries[-1])

    def _approximate(self, text: str, query: str) -> DiagnosisMatch:
        """A proposal (one clear approximate match) or candidates; never a match that decides.

        The rulebook's few names are searched first, then the code set, within one MATCH_BUDGET;
        a text that exhausts it is "too long to match fully", with what was found so far.
        """
        budget = WorkBudget(MATCH_BUDGET)
        scores, found, tried = _MATCHER.submit(self._search, query, budget).result()
        for code, rank in found.items():
            scores[code] = max(rank, scores.get(code, rank))
        ranked = sorted(scores.items(), key=lambda item: (-item[1][0], -item[1][1], len(item[0]), item[0]))
        if budget.exhausted:
            return _too_long(text, query, tried, [_candidate(c, score) for c, (score, _) in ranked[:MAX_CANDIDATES]])
        if not ranked:
            return _unrecognised(text)
        best, (best_score, best_closeness) = ranked[0]
        rivals = [
            c
            for c, (score, closeness) in ranked[1:]
            if score >= best_score - MARGIN
            and closeness >= best_closeness - CLOSENESS_MARGIN
            and not (c.startswith(best) or best.startswith(c))
            and not (self.diagnosis_of(c) is not None and self.diagnosis_of(c) == self.diagnosis_of(best))
        ]
        candidates = [_candidate(c, score) for c, (score, _) in ranked[:MAX_CANDIDATES]]
        if best_score >= CONFIDENT and not rivals:
            return DiagnosisMatch(
                icd10.dotted(best),
                icd10.description(best),
                "fuzzy",
                text,
                score=round(best_score, 1),
                candidates=tuple(candidates),
                unmatched_qualifiers=self.unmatched_qualifiers(query, best),
            )
        return _ambiguous(text, candidates)

    def _search(self, query: str, budget: WorkBudget):
        scores, _ = self.rulebook_index.fuzzy(query, budget)
        found, tried = self.icd.fuzzy(query, budget)
        return scores, found, tried

    def unmatched_qualifiers(self, query: str, plain: str) -> tuple[str, ...]:
        """Qualifier words of the query ("secondary", "acute") that no name of this code carries."""
        wanted = [word for word in query.split() if word in self.qualifiers]
        if not wanted:
            return ()
        names = " ".join(self.names_of(plain)).split()
        return tuple(word for word in wanted if word not in names)

    def names_of(self, plain: str) -> list[str]:
        """Every folded name of a code: its ICD-10-CM description and inclusion terms, and the
        rulebook names that mean it."""
        names = [fold(icd10.description(plain))] + [fold(term) for term in icd10.inclusion_terms(plain)]
        return names + [term for term, code in self.synonyms.items() if code == plain]


def _exact(text: str, codes: list[str], matched_by: str) -> DiagnosisMatch:
    """An exact match: the one family these codes form, else the candidates."""
    head = _family_head(codes)
    if head is None:
        return _ambiguous(text, [_candidate(c, 100.0) for c in codes])
    return DiagnosisMatch(icd10.dotted(head), icd10.description(head), matched_by, text)


def _unrecognised(text: str) -> DiagnosisMatch:
    return DiagnosisMatch(
        None,
        None,
        None,
        text,
        problem=f"'{text}' does not name a diagnosis we recognise; resubmit with an ICD-10-CM code",
    )


def _too_long(text: str, query: str, tried: list[str], candidates: list[Candidate]) -> DiagnosisMatch:
    """What an approximate match that ran out of MATCH_BUDGET found: candidates, never a proposal."""

    def listed(words: list[str]) -> str:
        return ", ".join(f"'{word}'" for word in words) or "none"

    found = "; ".join(f"{c.code} {c.description} (score {c.score:g})" for c in candidates) or "none"
    return DiagnosisMatch(
        None,
        None,
        None,
        text,
        candidates=tuple(candidates),
        too_long=True,
        problem=(
            f"'{text}' is too long to match fully (resubmit with a shorter text or an ICD-10-CM code): the "
            f"approximate match stops after {MATCH_BUDGET:,} comparisons, and it tried the words {listed(tried)} "
            f"but not the words {listed(_words(query)[len(tried) :])}; candidates found so far: {found}"
        ),
    )


def _ambiguous(text: str, candidates: list[Candidate]) -> DiagnosisMatch:
    return DiagnosisMatch(
        None,
        None,
        None,
        text,
        candidates=tuple(candidates),
        problem=f"'{text}' could mean several diagnoses; pick one of the candidates and resubmit with its code",
    )


def nearest_codes(plain: str, limit: int = MAX_CANDIDATES) -> list[Candidate]:
    """Valid codes nearest to an invalid one: within the closest valid ancestor that has at least
    `limit` codes (so siblings show too), else among similar categories."""
    family = []
    for length in range(min(len(plain), icd10.MAX_LENGTH) - 1, icd10.CATEGORY_LENGTH - 1, -1):
        if icd10.is_valid(plain[:length]):
            family = [plain[:length]] + icd10.descendants(plain[:length])
            if len(family) >= limit:
                break
    if not family:
        family = icd10.categories()
    ranked = process.extract(plain, family, scorer=fuzz.ratio, limit=limit)
    return [_candidate(code, score) for code, score, _ in ranked]
