"""Opening the database (SQLite by default, PostgreSQL by URL) and migrating it to the latest schema."""
import datetime
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def utc_now() -> str:
    """Now, as fixed-width ISO 8601 UTC text ("2026-11-22T21:04:05.123456Z")."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_today() -> datetime.date:
    return datetime.datetime.now(datetime.timezone.utc).date()


def open_database(url: str) -> Engine:
    """An engine for the URL; SQLite gets WAL, full fsync on commit, and write transactions
    (`writing`) that take the write lock at BEGIN, so two processes appending to the audit chain
    queue up instead of failing."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection):
            # Reads begin DEFERRED (they never wait for a writer in WAL mode); writing() asks for
            # IMMEDIATE, so writers queue for the lock at BEGIN rather than fail midway.
            connection.exec_driver_sql(f"BEGIN {connection.get_execution_options().get('sqlite_begin', 'DEFERRED')}")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


@contextmanager
def writing(engine: Engine):
    """A transaction that will write: on SQLite it holds the write lock from its BEGIN."""
    with engine.connect() as connection:
        connection.execution_options(sqlite_begin="IMMEDIATE")
        with connection.begin():
            yield connection


def migrate(engine: Engine):
    """Create or upgrade the schema to the newest migration; safe to run at every start."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with writing(engine) as connection:
        if connection.dialect.name == "postgresql":
            # Several workers or hosts may start at once: one migrates, the others wait, then find it done.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7262201)")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
