"""The rulebook version a service process serves, and reloading it without a restart.

A request takes the current version for its whole life (`use()`), so a reload never changes
the rules under a decision in flight; the replaced version's native rulesets are freed when
its last request finishes. Reloads are recorded in the database, and every process checks for
a newer activation at most once a second, so all workers and hosts converge on one version.
"""
import logging
import threading
import time
from contextlib import contextmanager

from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError

from service.store.database import utc_now, writing
from service.decide.formulary import Formulary
from service.rulebook.lint import lint_rulebook
from service.rulebook.model import RulebookError
from service.rulebook.reader import load_rulebook
from service.store.tables import rulebook_activations

log = logging.getLogger(__name__)
CHECK_EVERY_SECONDS = 1.0


class ActiveRulebook:
    def __init__(self, path, database, warm: bool = True):
        self._path, self._database, self._warm = path, database, warm
        self._lock = threading.Lock()
        self._users: dict[int, int] = {}
        self._retired: dict[int, Formulary] = {}
        self._current = self._build(Formulary.load(path))
        self._checked_at = time.monotonic()
        try:
            newest = self._newest_activation()
            if newest is None or newest.digest != self._current.rulebook.digest:
                self._record_activation(self._current, "service start")
        except SQLAlchemyError:  # serve the file's version; activations are followed once the database answers
            log.exception("could not read or record the rulebook activation at start")

    def _build(self, formulary: Formulary) -> Formulary:
        if self._warm:
            formulary.terminology.warm()
        return formulary

    @property
    def current(self) -> Formulary:
        return self._current

    @contextmanager
    def use(self):
        """The version to decide one request with, held until the request is done."""
        self._follow_activations()
        with self._lock:
            formulary = self._current
            self._users[id(formulary)] = self._users.get(id(formulary), 0) + 1
        try:
            yield formulary
        finally:
            with self._lock:
                self._users[id(formulary)] -= 1
                self._free_unused()

    def _swap(self, formulary: Formulary):
        with self._lock:
            old, self._current = self._current, formulary
            self._retired[id(old)] = old
            self._free_unused()

    def _free_unused(self):
        """Close retired versions no request still uses (called with the lock held)."""
        for key, formulary in list(self._retired.items()):
            if self._users.get(key, 0) == 0:
                formulary.close()
                del self._retired[key]
                self._users.pop(key, None)

    def reload(self, requested_by: str) -> dict:
        """Load, lint and serve the rulebook file again; raises RulebookError and keeps the old
        version when it has any problem."""
        rulebook = load_rulebook(self._path)
        problems = lint_rulebook(rulebook)
        if problems:
            raise RulebookError(problems)
        previous = self._current.rulebook
        if rulebook.digest == previous.digest:
            return self._summary(previous, changed=False)
        formulary = self._build(Formulary(rulebook))
        self._record_activation(formulary, requested_by)
        self._swap(formulary)
        return self._summary(rulebook, changed=True, previous=previous)

    @staticmethod
    def _summary(rulebook, changed: bool, previous=None) -> dict:
        summary = {"name": rulebook.name, "version": rulebook.version, "digest": rulebook.digest, "changed": changed}
        if previous is not None:
            summary["previous"] = {"version": previous.version, "digest": previous.digest}
        return summary

    def _record_activation(self, formulary: Formulary, by: str):
        record_activation(self._database, formulary.rulebook, by)

    def _newest_activation(self):
        with self._database.connect() as connection:
            return connection.execute(
                select(rulebook_activations).order_by(rulebook_activations.c.id.desc()).limit(1)).first()

    def _follow_activations(self):
        """Serve the version another process activated, if the rulebook file on disk is that version."""
        now = time.monotonic()
        if now - self._checked_at < CHECK_EVERY_SECONDS:
            return
        self._checked_at = now
        try:
            newest = self._newest_activation()
            if newest is None or newest.digest == self._current.rulebook.digest:
                return
            rulebook = load_rulebook(self._path)
            if rulebook.digest != newest.digest or lint_rulebook(rulebook):
                log.error("rulebook %s was activated elsewhere but the file here is %s; still serving %s",
                          newest.digest[:12], rulebook.digest[:12], self._current.rulebook.digest[:12])
                return
            self._swap(self._build(Formulary(rulebook)))
            log.info("now serving rulebook %s %s", rulebook.version, rulebook.digest[:12])
        except Exception:  # the current version keeps serving; the next check tries again
            log.exception("checking for a newer rulebook activation failed")

    def close(self):
        with self._lock:
            self._retired[id(self._current)] = self._current
            self._users.pop(id(self._current), None)
            self._free_unused()


def record_activation(database, rulebook, by: str):
    """Make `rulebook` the version every service process on this database should serve."""
    with writing(database) as connection:
        connection.execute(insert(rulebook_activations).values(
            name=rulebook.name, version=rulebook.version, digest=rulebook.digest, activated_at=utc_now(), activated_by=by))
