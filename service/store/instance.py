"""Configuration from the environment and the instance folder, shared by the app and the CLI.

FORMULARY_INSTANCE_PATH   folder for the SQLite database, the secret and logs (default ./instance)
FORMULARY_DATABASE_URL    SQLAlchemy URL (default: SQLite in the instance folder); PostgreSQL as
                          postgresql+psycopg://user@host/db for several instances behind a balancer
FORMULARY_SECRET          key for the audit chain and patient identifiers (default: generated once
                          into <instance>/secret, readable by the owner only)
FORMULARY_RULEBOOK        the rulebook to serve (default rules/ivig.yaml)
FORMULARY_ANCHOR_EVERY    anchor the audit chain's head every this many records (default 1000)
FORMULARY_ANCHOR_MINUTES  and when records were added this many minutes after the newest anchor
                          (default 5); anchors go to <instance>/anchors.jsonl (service/store/anchors.py)
FORMULARY_RULEBOOK_APPROVALS  how many approvals, by others than its proposer, a rulebook proposal
                          needs before it is activated (default 2). Above 0, a new rulebook is served
                          only through a proposal: `reload` is refused and a start does not activate
                          a changed rulebook file. 0 is for a single-person install.
"""

import os
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from service.rulebook.shipped import default_rulebook_path
from service.store import anchors
from service.store.audit import AuditStore
from service.store.database import create_owner_only, migrate, open_database
from service.store.supply_phases import PhaseFollower


def _secret(instance_path: Path) -> bytes:
    """FORMULARY_SECRET, else the instance's secret file, created owner-only on first use."""
    if os.environ.get("FORMULARY_SECRET"):
        return os.environ["FORMULARY_SECRET"].encode()
    path = instance_path / "secret"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text().strip()
        if not value:
            raise RuntimeError(
                f"{path} is empty: restore the instance secret or remove the file and the audit log"
            ) from None
        return value.encode()
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _approvals(overrides: dict) -> int:
    given = overrides.get("RULEBOOK_APPROVALS")
    if given is None:
        given = os.environ.get("FORMULARY_RULEBOOK_APPROVALS", "").strip() or 2
    if not str(given).isdigit():
        raise RuntimeError(
            f"FORMULARY_RULEBOOK_APPROVALS must be a whole number of approvals, 0 or more; found {given!r}"
        )
    return int(given)


@dataclass
class Instance:
    path: Path
    database_url: str
    rulebook_path: Path
    secret: bytes
    anchor_every: int = 1000
    anchor_minutes: float = 5.0
    rulebook_approvals: int = 2

    @classmethod
    def from_env(cls, overrides: dict | None = None) -> "Instance":
        overrides = overrides or {}
        path = Path(overrides.get("INSTANCE_PATH") or os.environ.get("FORMULARY_INSTANCE_PATH") or "instance").resolve()
        path.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner-only when created here
        (path / "logs").mkdir(mode=0o700, exist_ok=True)
        create_owner_only(path / "logs" / "service.log")  # before the service's log handler opens it
        url = (
            overrides.get("DATABASE_URL")
            or os.environ.get("FORMULARY_DATABASE_URL")
            or f"sqlite:///{path / 'formulary.db'}"
        )
        rulebook = Path(overrides.get("RULEBOOK") or default_rulebook_path())
        every = overrides.get("ANCHOR_EVERY") or os.environ.get("FORMULARY_ANCHOR_EVERY") or 1000
        minutes = overrides.get("ANCHOR_MINUTES") or os.environ.get("FORMULARY_ANCHOR_MINUTES") or 5
        try:
            anchoring = int(every), float(minutes)
        except ValueError:
            anchoring = (0, 0.0)
        if anchoring[0] < 1 or not anchoring[1] > 0:
            raise RuntimeError(
                "FORMULARY_ANCHOR_EVERY must be a whole number of records and FORMULARY_ANCHOR_MINUTES a number "
                f"of minutes, both above 0; found {every!r} and {minutes!r}"
            )
        return cls(path, url, rulebook, _secret(path), *anchoring, _approvals(overrides))

    @cached_property
    def sql_engine(self):
        """The database engine; it connects only when used, so a service can start while the
        database is down and answer 503 until it returns."""
        return open_database(self.database_url)

    @cached_property
    def database(self):
        """The engine, after migrating the database to the newest schema (once it succeeds)."""
        migrate(self.sql_engine)
        return self.sql_engine

    @cached_property
    def audit(self) -> AuditStore:
        return AuditStore(
            self.sql_engine,
            self.secret,
            anchors.Anchors(self.path / anchors.FILE_NAME, self.anchor_every, self.anchor_minutes),
        )

    @cached_property
    def supply_phase(self) -> PhaseFollower:
        """The supply phase this process follows (service/store/supply_phases.py)."""
        return PhaseFollower(self.sql_engine, self.audit)
