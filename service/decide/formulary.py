"""One loaded rulebook version, and the decision path through it.

request -> validation -> diagnosis normalisation -> facts -> engine -> decision. Each step is
its own module; this one only strings them together, so the decision logic runs without Flask.
"""

import datetime
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

from service import clock
from service.decide.decision import Decision, Prepared, from_verdict, proposal, without_rule
from service.decide.request import DecisionRequest, Vocabulary, parse_request
from service.decide.terminology import DiagnosisMatch, Terminology
from service.rulebook.compiler import compile_rulebook
from service.rulebook.engine import Engine
from service.rulebook.facts import Facts
from service.rulebook.lint import load_checked
from service.rulebook.model import Rulebook
from service.rulebook.shipped import default_rulebook_path


class Formulary:
    """A rulebook that passed lint, compiled into its own engine."""

    def __init__(self, rulebook: Rulebook, cache_size: int = 4096):
        self.rulebook = rulebook
        self.vocabulary = Vocabulary(rulebook)
        self.terminology = Terminology(rulebook)
        self.engine = Engine(compile_rulebook(rulebook), cache_size=cache_size)
        self.prepared = Prepared(rulebook)
        # A decision depends only on the diagnosis as given, the typed facts and this rulebook
        # (and on today, for one that names missing facts of a request without dated facts), so
        # the decisions already given are remembered, as the engine's answers are: key -> (decision,
        # the day it holds for, or None for every day).
        self._decisions: OrderedDict[tuple[str | None, str | None, Facts], tuple[Decision, datetime.date | None]] = (
            OrderedDict()
        )
        self._decisions_lock = threading.Lock()
        self.cache_size = cache_size

    @classmethod
    def load(cls, path: str | Path | None = None, cache_size: int = 4096) -> "Formulary":
        """Load, lint and compile a rulebook; a rulebook with any lint problem is refused.

        `cache_size` bounds the engine's memory of answers already given, and this formulary's of
        decisions (0: none).
        """
        return cls(load_checked(path or default_rulebook_path()), cache_size=cache_size)

    def decide(self, payload, as_of: datetime.date | None = None) -> Decision:
        """Decide a request given as the API's JSON body (its dated facts as of `as_of`, default
        today); raises RequestError for bad input."""
        return self.decide_request(parse_request(payload, self.vocabulary, as_of))

    def decide_request(self, request: DecisionRequest) -> Decision:
        if not self.cache_size:
            return self._decide(request)
        key = (request.code, request.text, request.facts)
        decisions = self._decisions
        with self._decisions_lock:
            kept = decisions.get(key)
            if kept is not None:
                decisions.move_to_end(key)
        if kept is not None and (kept[1] is None or kept[1] == clock.utc_today()):
            return kept[0]
        # `missing` counts an observation's window back from today when the request gives no
        # dated fact: such a decision is kept with the day it was made on, and holds for that day.
        today = clock.utc_today() if request.facts.as_of is None else None
        decision = self._decide(request)
        day = today if decision.missing else None
        if day is not None and day != clock.utc_today():
            return decision  # the day turned while deciding: not kept
        with self._decisions_lock:
            decisions[key] = (decision, day)
            if len(decisions) > self.cache_size:
                decisions.popitem(last=False)
        return decision

    def _decide(self, request: DecisionRequest) -> Decision:
        diagnosis = self.terminology.resolve(request.code, request.text)
        if diagnosis.code is None or diagnosis.problem:
            return without_rule(self.prepared, diagnosis)
        if diagnosis.is_proposal:
            confirmed = replace(diagnosis, matched_by="code", score=None, candidates=(), unmatched_qualifiers=())
            return proposal(self.prepared, diagnosis, self._decide_on(confirmed, request))
        return self._decide_on(diagnosis, request)

    def _decide_on(self, diagnosis: DiagnosisMatch, request: DecisionRequest) -> Decision:
        """The rules' decision on a diagnosis the request names exactly."""
        code = diagnosis.plain_code
        assert code is not None  # decide_request answers a request without a code itself
        verdict = self.engine.evaluate(code, request.facts)
        if verdict is None:
            return without_rule(self.prepared, diagnosis)
        return from_verdict(self.prepared, diagnosis, request.facts, verdict)

    def close(self):
        """Unload: the engine refuses further requests, and so does this formulary (no decision
        is answered from memory once closed)."""
        with self._decisions_lock:
            self.cache_size = 0
            self._decisions.clear()
        self.engine.close()
