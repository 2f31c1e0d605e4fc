"""The rulebook version a service process serves, and reloading it without a restart.

A request takes the current version for its whole life (`use()`), so a reload never changes
the rules under a decision in flight; the replaced version's native rulesets are freed when
its last request finishes. Reloads are recorded in the database, and every process checks for
a newer activation at most once a second, so all workers and hosts converge on one version.
Each version activated is kept, with the texts it was read from, the first time it is activated
(service.store.rulebook_versions).

An instance that requires approvals (FORMULARY_RULEBOOK_APPROVALS above 0) serves a new version
only through an approved proposal (service.workflow.proposals): a reload is refused, and a start
with a changed rulebook file keeps serving the version activated last.
"""

import logging
import threading
import time
from contextlib import contextmanager

from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError

from service import clock
from service.decide.formulary import Formulary
from service.rulebook.lint import checked, load_checked
from service.rulebook.model import RulebookError
from service.rulebook.reader import load_rulebook
from service.store.database import writing
from service.store.rulebook_versions import (
    VersionNotFound,
    VersionRef,
    find_version,
    is_stored,
    read_stored,
    store_version,
    version_with_digest,
)
from service.store.tables import rulebook_activations

log = logging.getLogger(__name__)
CHECK_EVERY_SECONDS = 1.0


class ApprovalsRequired(Exception):
    """A reload on an instance whose new versions need approved proposals."""

    def __init__(self, required: int):
        self.required = required
        super().__init__(
            f"this instance requires {required} approval(s) of a rulebook proposal before a new version is "
            "served: propose the rulebook (POST /v1/rulebook/proposals, or formulary rulebook propose) instead"
        )


class ActiveRulebook:
    def __init__(self, path, database, warm: bool = True, approvals: int = 0, due=None):
        """`approvals`: how many a proposal needs (0: reloads allowed). `due()`, if given, runs at
        each check for a newer activation, before it: it activates approved proposals whose
        effective date has come (service.workflow.proposals.activate_due)."""
        self._path, self._database, self._warm = path, database, warm
        self._approvals, self._due = approvals, due
        self._lock = threading.Lock()
        self._users: dict[int, int] = {}
        self._retired: dict[int, Formulary] = {}
        self._current = self._build(Formulary.load(path))
        self._checked_at = time.monotonic()
        try:
            self._activate_due()
            newest = self._newest_activation()
            file_digest = self._current.rulebook.digest
            if newest is not None and newest.digest != file_digest and self._approvals > 0:
                self._follow_the_approved(newest.digest)
            elif newest is not None and self._rolled_back_from_file(newest.digest):
                # A version the file has been before was rolled back from: a restarted worker
                # follows the rollback rather than undo it.
                self.follow_now()
            elif newest is None or newest.digest != file_digest:
                record_activation(self._database, self._current.rulebook, "service start")
            elif not is_stored(self._database, newest.digest):  # activated before versions were kept (0009)
                with writing(self._database) as connection:
                    store_version(connection, self._current.rulebook, "service start")
        except SQLAlchemyError:  # serve the file's version; activations are followed once the database answers
            log.exception("could not read or record the rulebook activation at start")

    def _rolled_back_from_file(self, newest_digest: str) -> bool:
        """Whether the newest activation is another stored version and the file's version is one
        served before (not a new file deployed): then a start must not activate the file."""
        file_digest = self._current.rulebook.digest
        return (
            newest_digest != file_digest
            and is_stored(self._database, newest_digest)
            and is_stored(self._database, file_digest)
        )

    def _follow_the_approved(self, newest_digest: str) -> None:
        """At a start where approvals are required and the file is not the version activated last:
        serve that version, never the file (a changed file is served through a proposal)."""
        if not is_stored(self._database, newest_digest):
            raise RuntimeError(
                f"the rulebook file {self._path} is not the version activated last ({newest_digest[:12]}), which "
                "was activated before versions were kept and cannot be served again; with "
                f"FORMULARY_RULEBOOK_APPROVALS={self._approvals} a start does not activate the file: restore the "
                "file served before, or start once with FORMULARY_RULEBOOK_APPROVALS=0"
            )
        if not is_stored(self._database, self._current.rulebook.digest):
            log.warning(
                "the rulebook file %s is %s (%s), which was never activated; this instance requires %d approval(s), "
                "so it serves the version activated last (%s) until the file is proposed and approved",
                self._path,
                self._current.rulebook.version,
                self._current.rulebook.digest[:12],
                self._approvals,
                newest_digest[:12],
            )
        self.follow_now()

    def _activate_due(self) -> None:
        """Serve the approved proposals whose day has come (the `due` hook); a failure is logged and
        the next check tries again, never failing the request that checked."""
        if self._due is None:
            return
        try:
            self._due()
        except Exception:
            log.exception("activating the rulebook proposals due failed")

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

    def reload(self, audit, requested_by: str) -> dict:
        """Load, lint and serve the rulebook file again, on the record; raises RulebookError and
        keeps the old version when it has any problem; ApprovalsRequired, recorded, when this
        instance serves new versions only through approved proposals."""
        _refuse_without_approvals(self._approvals, audit, requested_by)
        rulebook = _checked_or_recorded(self._path, audit, requested_by)
        previous = self._current.rulebook
        stored = False
        if rulebook.digest == previous.digest:
            summary = self._summary(previous, changed=False)
        else:
            formulary = self._build(Formulary(rulebook))
            stored = record_activation(self._database, rulebook, requested_by)
            self._swap(formulary)
            summary = self._summary(rulebook, changed=True, previous=previous)
        _record_reload(audit, requested_by, summary, stored)
        return summary

    def roll_back(self, audit, ref: "VersionRef", reason: str, requested_by: str) -> dict:
        """Serve a stored version again at once (see roll_back); the others follow within a second."""
        previous = self._current.rulebook
        rulebook, summary = roll_back(self._database, audit, ref, reason, requested_by, previous)
        if summary["changed"]:
            self._swap(self._build(Formulary(rulebook)))
        return summary

    @staticmethod
    def _summary(rulebook, changed: bool, previous=None) -> dict:
        summary = {"name": rulebook.name, "version": rulebook.version, "digest": rulebook.digest, "changed": changed}
        if previous is not None:
            summary["previous"] = {"version": previous.version, "digest": previous.digest}
        return summary

    def _newest_activation(self):
        with self._database.connect() as connection:
            return connection.execute(
                select(rulebook_activations).order_by(rulebook_activations.c.id.desc()).limit(1)
            ).first()

    def follow_now(self):
        """Serve the version activated last at once (after this process activated one itself)."""
        self._checked_at = 0.0
        self._follow_activations()

    def _follow_activations(self):
        """Serve the version another process activated: the rulebook file on disk if it is that
        version, else the version the database keeps (a rollback)."""
        now = time.monotonic()
        if now - self._checked_at < CHECK_EVERY_SECONDS:
            return
        self._checked_at = now
        self._activate_due()
        try:
            newest = self._newest_activation()
            if newest is None or newest.digest == self._current.rulebook.digest:
                return
            try:
                rulebook = load_rulebook(self._path)
            except RulebookError:  # the file here does not load: the database may keep the version
                rulebook = None
            if rulebook is None or rulebook.digest != newest.digest:
                # Not the file's version: a stored one (a rollback, a proposal), read back from the database.
                try:
                    rulebook = read_stored(version_with_digest(self._database, newest.digest))
                except VersionNotFound:
                    log.error(
                        "rulebook %s was activated elsewhere but neither the file here nor the database holds "
                        "it; still serving %s",
                        newest.digest[:12],
                        self._current.rulebook.digest[:12],
                    )
                    return
            self._swap(self._build(Formulary(checked(rulebook))))
            log.info("now serving rulebook %s %s", rulebook.version, rulebook.digest[:12])
        except RulebookError as error:  # the version activated elsewhere does not pass lint here
            log.error(
                "rulebook %s was activated elsewhere but cannot be served here (%s); still serving %s",
                newest.digest[:12] if newest is not None else "?",
                "; ".join(error.problems),
                self._current.rulebook.digest[:12],
            )
        except Exception:  # the current version keeps serving; the next check tries again
            log.exception("checking for a newer rulebook activation failed")

    def close(self):
        with self._lock:
            self._retired[id(self._current)] = self._current
            self._users.pop(id(self._current), None)
            self._free_unused()


def activated_rulebook(database, path):
    """The version activated last, as the services serve it (outside a service: the CLI): the
    stored version, or the rulebook file when none is stored or the file is that version."""
    with database.connect() as connection:
        newest = connection.execute(
            select(rulebook_activations.c.digest).order_by(rulebook_activations.c.id.desc()).limit(1)
        ).scalar()
    rulebook = load_checked(path)
    if newest is None or newest == rulebook.digest:
        return rulebook
    try:
        return checked(read_stored(version_with_digest(database, newest)))
    except VersionNotFound:
        return rulebook


def record_activation(database, rulebook, by: str) -> bool:
    """Make `rulebook` the version every service process on this database should serve, and keep
    it with its texts if it is not kept yet (then True), in one transaction."""
    with writing(database) as connection:
        return activate_in(connection, rulebook, by)


def activate_in(connection, rulebook, by: str) -> bool:
    """record_activation within a transaction the caller holds (with what else it commits)."""
    stored = store_version(connection, rulebook, by)
    connection.execute(
        insert(rulebook_activations).values(
            name=rulebook.name,
            version=rulebook.version,
            digest=rulebook.digest,
            activated_at=clock.utc_now(),
            activated_by=by,
        )
    )
    return stored


def activate(database, audit, path, requested_by: str, approvals: int = 0) -> dict:
    """Make the rulebook file the version every running service serves (each follows within
    CHECK_EVERY_SECONDS), on the record; raises RulebookError, recorded, when it has any problem,
    and ApprovalsRequired, recorded, when `approvals` are required."""
    _refuse_without_approvals(approvals, audit, requested_by)
    rulebook = _checked_or_recorded(path, audit, requested_by)
    stored = record_activation(database, rulebook, requested_by)
    summary = {"name": rulebook.name, "version": rulebook.version, "digest": rulebook.digest}
    _record_reload(audit, requested_by, summary, stored)
    return summary


def roll_back(database, audit, ref: VersionRef, reason: str, requested_by: str, serving=None) -> tuple:
    """Make a stored version the one every service process serves again (a rollback), on the record
    with its reason: (the rulebook, the summary). `serving`: the rulebook served now, if known.
    Raises VersionNotFound, AmbiguousVersion, or RulebookError when its texts no longer read back
    or no longer pass lint (nothing changes)."""
    rulebook = checked(read_stored(find_version(database, ref)))
    if serving is None:
        with database.connect() as connection:
            newest = connection.execute(
                select(rulebook_activations.c.digest).order_by(rulebook_activations.c.id.desc()).limit(1)
            ).scalar()
        changed = newest != rulebook.digest
    else:
        changed = rulebook.digest != serving.digest
    if changed:
        record_activation(database, rulebook, requested_by)
    summary = {
        **ActiveRulebook._summary(rulebook, changed=changed, previous=serving),
        "rolled_back": True,
        "reason": reason,
    }
    _record_reload(audit, requested_by, summary, False)
    return rulebook, summary


def _refuse_without_approvals(approvals: int, audit, requested_by: str) -> None:
    if approvals > 0:
        refusal = ApprovalsRequired(approvals)
        audit.append(
            "rulebook_reload", {"refused": True, "problems": [str(refusal)]}, requester=requested_by, status=409
        )
        raise refusal


def _checked_or_recorded(path, audit, requested_by: str):
    """The rulebook file, loaded and linted; a refused one is an audit record before the error goes on."""
    try:
        return load_checked(path)
    except RulebookError as error:
        audit.append(
            "rulebook_reload", {"refused": True, "problems": error.problems}, requester=requested_by, status=422
        )
        raise


def _record_reload(audit, requested_by: str, summary: dict, stored: bool):
    """The reload on the record; `version_stored` when this activation kept a version new to the database."""
    audit.append(
        "rulebook_reload",
        {**summary, "version_stored": True} if stored else summary,
        requester=requested_by,
        status=200,
        rulebook_version=summary["version"],
        rulebook_digest=summary["digest"],
    )
