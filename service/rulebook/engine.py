"""Running compiled rulesets in durable-rules 2.0.28, with every measured hazard designed out.

The hazards, measured: docs/DURABLE_RULES.md. In short:
- No durable-rules `Host`: the engine calls durable-rules' C extension (`durable_rules_engine`,
  which durable/engine.py wraps) directly. So there are no background dispatch timers (their
  threads steal results and crash), and none of the Host's per-post Python work (JSON-decoding
  the session state and the action's message, Closure and Promise objects, re-asserting the
  state, which our actions never change): measured, that work was most of a decision's cost.
- One process-wide lock around every call into the C engine, which has no locks of its own
  (one lock for all engines, because an old and a new engine coexist during a reload).
- One fixed session id per ruleset (events carry no `sid`, so durable-rules uses "0"), never
  deleted while the engine serves: no 1,024-session cap, no `delete_state` crash, flat memory.
  Actions write nothing to the session state.
- A decision is one event. `assert_event` answers 1 ("no rule matched") or 0 (handled). When
  handled, `start_action_for_state` gives the fired action as `{"<compiled rule>":{"m":<event>}}`
  and `complete_and_start_action` consumes it and must report no further action. The event in
  the action must be exactly the text this request posted, request id included, so a result
  left from another request can never be read as this one's. Any other status, a handled event
  without an action, a second action, a foreign event or an unknown rule name raises
  EngineError, never a default outcome; whatever was left pending in the session is completed
  first, so the next request starts clean (if that fails too, the engine refuses all requests).
- `close()` frees the C rulesets, which would otherwise leak. `delete_ruleset` alone keeps the
  session state a post allocated (measured: about 400 KB an engine), and `delete_state` on a
  session that only ever saw unmatched posts can crash; so every ruleset carries a "retire"
  rule, and closing posts a retire event to each ruleset (initialising its session through a
  fired and completed action), then deletes the session state, then the ruleset.
"""

import itertools
import json
import threading
from collections import OrderedDict

import durable_rules_engine

from service.rulebook.compiler import CompiledRulebook, MessagePlan
from service.rulebook.facts import Facts, Verdict

_ENGINE_LOCK = threading.Lock()
_RETIRE = "retire"  # the rule, and the event field, that only Engine.close() uses
_SESSION = "0"  # the one session id every ruleset uses (durable-rules' default)

# durable-rules 2.0.28 (src/rules/rules.h): what assert_event answers besides raising.
_HANDLED = 0  # a rule matched; its action waits in the session
_NOT_HANDLED = 1  # no rule matched (MessageNotHandledException in durable/engine.py)
_MAX_DRAIN = 1000  # pending actions completed after a failure before giving up

# The C calls of one decision, looked up once (module globals, so tests can substitute them).
_assert_event = durable_rules_engine.assert_event
_start_action_for_state = durable_rules_engine.start_action_for_state
_complete_and_start_action = durable_rules_engine.complete_and_start_action
_abandon_action = durable_rules_engine.abandon_action


class EngineError(RuntimeError):
    """The rules engine did not give a trustworthy answer; never turned into an outcome."""


class Engine:
    """One compiled rulebook loaded into its own durable-rules rulesets.

    Which rule fires depends only on the code and the typed facts (actions keep no state), so the
    answer for a (code, facts) pair already asked is remembered, per engine and so per rulebook
    version: `cache_size` answers at most; 0 sends every request through durable-rules.
    """

    def __init__(self, compiled: CompiledRulebook, cache_size: int = 4096):
        self._compiled = compiled
        self._routes = compiled.routes
        self._verdicts = compiled.verdicts
        self._message_json = compiled.message_json
        self._cache: OrderedDict[tuple[str, Facts], str | None] = OrderedDict()
        self._cache_size = cache_size
        self._request_ids = itertools.count()
        self._handles: dict[str, int] = {}
        self._plans: dict[str, MessagePlan] = {}
        self._closed = False
        self._broken: str | None = None
        texts = {}
        for ruleset, rules in compiled.rulesets.items():
            if _RETIRE in rules:
                raise EngineError(f"ruleset {ruleset}: the rule name {_RETIRE!r} is reserved")
            definition = dict(rules)
            definition[_RETIRE] = {"all": [{"m": {_RETIRE: 1}}], "pri": len(rules)}
            texts[ruleset] = json.dumps(definition, ensure_ascii=False)
            # What each event carries is read off the very text durable-rules compiles (see MessagePlan).
            self._plans[ruleset] = compiled.message_plan(texts[ruleset])
        with _ENGINE_LOCK:
            try:
                for ruleset, text in texts.items():
                    self._handles[ruleset] = durable_rules_engine.create_ruleset(ruleset, text)
            except BaseException:
                for handle in self._handles.values():
                    durable_rules_engine.delete_ruleset(handle)
                self._handles.clear()
                raise

    def evaluate(self, code: str, facts: Facts) -> Verdict | None:
        """The verdict of the rule that decides for this dotless code and these facts, or None."""
        ruleset = self._routes.get(code[:3])
        if ruleset is None:
            return None
        with _ENGINE_LOCK:
            if self._closed:
                raise EngineError("this rulebook version has been unloaded")
            if self._broken:
                raise EngineError(self._broken)
            if not self._cache_size:
                fired = self._post(ruleset, code, facts)
            else:
                key = (code, facts)
                cache = self._cache
                if key in cache:
                    cache.move_to_end(key)
                    fired = cache[key]
                else:
                    fired = self._post(ruleset, code, facts)
                    cache[key] = fired
                    if len(cache) > self._cache_size:
                        cache.popitem(last=False)
        return None if fired is None else self._verdicts[fired]

    def _post(self, ruleset: str, code: str, facts: Facts) -> str | None:
        """The compiled rule that fires for this request, or None (called with the lock held)."""
        rid = next(self._request_ids)
        try:
            event = self._message_json(rid, code, facts, self._plans[ruleset])
        except (TypeError, ValueError) as error:
            raise EngineError(f"request {rid} cannot be posted to durable-rules: {error}") from error
        fired = self._fire(self._handles[ruleset], ruleset, rid, event)
        if fired is not None and fired not in self._verdicts:
            raise EngineError(
                f"durable-rules fired {fired!r} for request {rid} in {ruleset}, which is no compiled rule"
            )
        return fired

    def _fire(self, handle: int, ruleset: str, rid: int, event: str) -> str | None:
        """Assert one event; the name of the action it fired (completed), or None when nothing matched."""
        try:
            status, state = _assert_event(handle, event)
        except Exception as error:
            raise EngineError(f"durable-rules refused request {rid} in {ruleset}: {error}") from error
        if status == _NOT_HANDLED:
            return None
        if status != _HANDLED:
            self._drain(handle, state, lease=False)
            raise EngineError(f"durable-rules answered status {status} for request {rid} in {ruleset}")
        started = more = None
        try:
            started = _start_action_for_state(handle, state)
            if started is not None:
                more = _complete_and_start_action(handle, state)
        except Exception as error:
            self._drain(handle, state, lease=started is not None)
            raise EngineError(
                f"durable-rules failed running the action for request {rid} in {ruleset}: {error}"
            ) from error
        if started is None:
            self._drain(handle, state, lease=False)
            raise EngineError(f"durable-rules handled request {rid} in {ruleset} but started no action")
        if more is not None:
            self._drain(handle, state, lease=True)
            raise EngineError(f"durable-rules fired more than one action for request {rid} in {ruleset}")
        result = started[1]
        tail = '":{"m":' + event + "}}"
        if not (result.startswith('{"') and result.endswith(tail)):
            raise EngineError(
                f"durable-rules answered request {rid} in {ruleset} with another event's action: {result[:300]}"
            )
        return result[2 : -len(tail)]

    def _drain(self, handle: int, state: int, lease: bool):
        """Complete every action still pending in a session after a failure, so that no later
        request can read it; if even that fails, refuse every further request.

        `lease`: an action was started and not completed. Its lease is lifted first (otherwise
        durable-rules hides the session's actions for 30 s); only then, because abandoning frees
        the action context, which in a session that never started an action is uninitialised.
        """
        try:
            if lease:
                _abandon_action(handle, state)
            pending = _start_action_for_state(handle, state)
            for _ in range(_MAX_DRAIN):
                if pending is None:
                    return
                pending = _complete_and_start_action(handle, state)
        except Exception as error:
            self._broken = (
                f"durable-rules could not clear a failed decision from its session ({error}); reload the rulebook"
            )
            return
        self._broken = f"durable-rules kept more than {_MAX_DRAIN} actions pending; reload the rulebook"

    def close(self):
        """Free the native rulesets; the engine refuses further requests."""
        with _ENGINE_LOCK:
            if self._closed:
                return
            self._closed = True
            for ruleset, handle in self._handles.items():
                try:
                    retired = self._fire(handle, ruleset, -1, f'{{"rid":-1,"{_RETIRE}":1}}') == _RETIRE
                except EngineError:
                    retired = False
                if retired:  # only a session initialised through a completed action is safe to delete
                    durable_rules_engine.delete_state(handle, _SESSION)
                durable_rules_engine.delete_ruleset(handle)
            self._handles.clear()
