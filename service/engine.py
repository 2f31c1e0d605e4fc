"""Running compiled rulesets in durable-rules 2.0.28, with every measured hazard designed out.

See ../shared/notes/durable-rules.md. In short:
- Our own Host with background dispatch disabled: its timer threads steal results and crash.
- One process-wide lock around every call into the C engine, which has no locks of its own
  (one lock for all engines, because an old and a new engine coexist during a reload).
- One fixed session id per ruleset, never deleted: no 1,024-session cap, no `delete_state` crash,
  flat memory. Actions write nothing to the session state.
- Each action records which compiled rule fired in a Python dict keyed by the request id carried
  in the event; the result is read from there, never from shared state, and a post that was
  handled but left no record is an error, never a default outcome.
- `MessageNotHandledException` means "no rule matched".
- `close()` frees the C rulesets, which a dropped Host would leak. `delete_ruleset` alone keeps
  the session state a post allocated (measured: about 400 KB an engine), and `delete_state` on a
  session that only ever saw unmatched posts can crash; so every ruleset carries a "retire"
  rule, and closing posts a retire event to each ruleset (initialising its session through a
  fired action), then deletes the session state, then the ruleset.
"""
import itertools
import threading
from collections import OrderedDict

import durable_rules_engine
from durable.engine import Host, MessageNotHandledException

from .compiler import CompiledRulebook, Facts, Verdict

_ENGINE_LOCK = threading.Lock()
_RETIRE = "retire"          # the rule, and the event field, that only Engine.close() uses
_SESSION = "0"              # the one session id every ruleset uses


class EngineError(RuntimeError):
    """The rules engine did not give a trustworthy answer; never turned into an outcome."""


class _QuietHost(Host):
    """A durable-rules Host without the background dispatch timers."""

    def _run(self):
        """Start no timer threads: every action runs inside our own `post` call."""


def _recorder(fired: dict, rule_name: str):
    def record(c):
        fired[c.m["rid"]] = rule_name
    return record


class Engine:
    """One compiled rulebook loaded into its own durable-rules Host.

    Which rule fires depends only on the code and the typed facts (actions keep no state), so the
    answer for a (code, facts) pair already asked is remembered, per engine and so per rulebook
    version: `cache_size` answers at most; 0 sends every request through durable-rules.
    """

    def __init__(self, compiled: CompiledRulebook, cache_size: int = 4096):
        self._compiled = compiled
        self._cache: OrderedDict[tuple[str, Facts], str | None] = OrderedDict()
        self._cache_size = cache_size
        self._fired: dict[int, str] = {}
        self._request_ids = itertools.count()
        definitions = {}
        for ruleset, rules in compiled.rulesets.items():
            definitions[ruleset] = {name: dict(rule, run=_recorder(self._fired, name)) for name, rule in rules.items()}
            definitions[ruleset][_RETIRE] = {"all": [{"m": {_RETIRE: 1}}], "pri": len(rules),
                                             "run": _recorder(self._fired, _RETIRE)}
        with _ENGINE_LOCK:
            self._host = _QuietHost()
            self._host.register_rulesets(definitions)
        self._closed = False

    def evaluate(self, code: str, facts: Facts) -> Verdict | None:
        """The verdict of the rule that decides for this dotless code and these facts, or None."""
        ruleset = self._compiled.routes.get(code[:3])
        if ruleset is None:
            return None
        with _ENGINE_LOCK:
            if self._closed:
                raise EngineError("this rulebook version has been unloaded")
            key = (code, facts)
            if key in self._cache:
                self._cache.move_to_end(key)
                fired = self._cache[key]
                return None if fired is None else self._compiled.verdicts[fired]
            fired = self._post(ruleset, code, facts)
            if self._cache_size:
                self._cache[key] = fired
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return None if fired is None else self._compiled.verdicts[fired]

    def _post(self, ruleset: str, code: str, facts: Facts) -> str | None:
        """The compiled rule that fires for this request, or None (called with the lock held)."""
        rid = next(self._request_ids)
        message = self._compiled.message(rid, code, facts)
        try:
            state = self._host.post(ruleset, message)
        except MessageNotHandledException:
            self._fired.pop(rid, None)
            return None
        fired = self._fired.pop(rid, None)
        if isinstance(state, dict) and "exception" in state:
            raise EngineError(f"a rule action failed inside durable-rules: {state['exception']}")
        if fired is None:
            raise EngineError(f"durable-rules handled request {rid} in {ruleset} but no rule recorded a result")
        return fired

    def close(self):
        """Free the native rulesets; the engine refuses further requests."""
        with _ENGINE_LOCK:
            if self._closed:
                return
            self._closed = True
            for ruleset in self._host._ruleset_list:
                self._host.post(ruleset._name, {"rid": -1, _RETIRE: 1})
                ruleset.delete_state(_SESSION)
                durable_rules_engine.delete_ruleset(ruleset._handle)
            self._fired.clear()
            self._host._ruleset_list.clear()
            self._host._ruleset_directory.clear()
