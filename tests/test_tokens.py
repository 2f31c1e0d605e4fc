"""Bearer-token lookups and their short cache: a revoked token stops working promptly.

A process remembers a valid token's (name, role) for at most tokens.CACHE_SECONDS. A revocation
in the same process (revoke_token) is honoured at once; one from another process (the CLI,
another worker or host) within the second the README promises. Unknown or revoked tokens are
never remembered.
"""

import subprocess
import time

import pytest
import sqlalchemy
from sqlalchemy import event, update

from service.store import tokens
from service.store.database import migrate, open_database
from service.store.tables import api_tokens
from service.store.tokens import create_token, principal_for, revoke_token

from .service_process import FORMULARY, admin_token, running_service, service_env

PROMISED_SECONDS = 1.0  # README: a revoked token is refused by every process within 1 second
MARGIN = 0.75  # scheduling slack on a busy machine, on top of the promise


def count_queries(engine) -> list:
    queries = []
    event.listen(engine, "before_cursor_execute", lambda *args: queries.append(args[2]))
    return queries


def revoke_elsewhere(database_url: str, name: str):
    """Revoke as another process would: committed through another engine, this process's cache untouched."""
    other = sqlalchemy.create_engine(database_url)
    with other.begin() as connection:
        connection.execute(
            update(api_tokens).where(api_tokens.c.name == name).values(revoked_at="2026-01-01T00:00:00.000000Z")
        )
    other.dispose()


def test_a_valid_token_is_looked_up_once_then_remembered(engine):
    token = create_token(engine, "ward-7", "clinician")
    queries = count_queries(engine)
    assert principal_for(engine, token) == ("ward-7", "clinician")
    asked = len(queries)
    assert asked >= 1
    for _ in range(50):
        assert principal_for(engine, token) == ("ward-7", "clinician")
    assert len(queries) == asked


def test_unknown_and_revoked_tokens_are_never_remembered(engine):
    queries = count_queries(engine)
    assert principal_for(engine, "ivig_unknown") is None
    first = len(queries)
    assert principal_for(engine, "ivig_unknown") is None
    assert len(queries) == 2 * first  # asked the database again
    token = create_token(engine, "late", "pharmacist")
    assert principal_for(engine, token) == ("late", "pharmacist")


def test_a_revocation_in_this_process_is_honoured_at_once(engine):
    token = create_token(engine, "ward-7", "clinician")
    assert principal_for(engine, token) == ("ward-7", "clinician")  # now cached
    revoke_token(engine, "ward-7")
    assert principal_for(engine, token) is None
    assert principal_for(engine, token) is None


def test_a_revocation_by_another_process_is_honoured_within_the_promised_second(engine, database_url):
    token = create_token(engine, "ward-7", "clinician")
    assert principal_for(engine, token) == ("ward-7", "clinician")  # now cached
    revoke_elsewhere(database_url, "ward-7")
    revoked_at = time.monotonic()
    while principal_for(engine, token) is not None:
        assert time.monotonic() - revoked_at < PROMISED_SECONDS + MARGIN, "a revoked token outlived the promise"
        time.sleep(0.02)
    assert principal_for(engine, token) is None


def test_a_lookup_that_overlaps_a_revocation_is_not_remembered(engine, monkeypatch):
    token = create_token(engine, "ward-7", "clinician")
    real_lookup = tokens.principal_for_digest

    def lookup_then_revoked(engine_, digest):
        found = real_lookup(engine_, digest)  # read while the token was still active
        revoke_token(engine_, "ward-7")  # the revocation commits before the answer is cached
        return found

    monkeypatch.setattr(tokens, "principal_for_digest", lookup_then_revoked)
    assert principal_for(engine, token) == ("ward-7", "clinician")  # the request in flight
    monkeypatch.setattr(tokens, "principal_for_digest", real_lookup)
    assert principal_for(engine, token) is None  # and nothing stale was kept


def test_the_cache_is_per_database(tmp_path):
    first, second = (open_database(f"sqlite:///{tmp_path / name}") for name in ("a.db", "b.db"))
    for engine in (first, second):
        migrate(engine)
    token = create_token(first, "ward-7", "clinician")
    assert principal_for(first, token) == ("ward-7", "clinician")
    assert principal_for(second, token) is None
    first.dispose()
    second.dispose()


@pytest.mark.slow
def test_the_cli_revoking_a_token_stops_every_worker_of_a_running_service_within_the_bound(tmp_path):
    env = service_env(tmp_path / "instance")
    with running_service(env, workers=2) as service:
        admin = admin_token(service.banner)
        created = subprocess.run(
            [str(FORMULARY), "tokens", "create", "--name", "ward-7", "--role", "clinician"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        token = created.stdout.strip().splitlines()[-1]
        body = {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8}}
        for _ in range(20):  # used on both workers, so cached in both
            assert service.call("POST", "/v1/decisions", token, body)[0] == 201
        subprocess.run([str(FORMULARY), "tokens", "revoke", "ward-7"], env=env, check=True, capture_output=True)
        time.sleep(PROMISED_SECONDS + MARGIN)  # the promise, counted from the CLI's commit (earlier still)
        statuses = [service.call("POST", "/v1/decisions", token, body)[0] for _ in range(20)]
        assert statuses == [401] * 20
        assert service.call("GET", "/v1/audit?limit=1", admin)[0] == 200  # other tokens still work


def test_creating_and_revoking_a_token_from_the_shell_is_on_the_record_without_the_token(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from service.cli import main
    from service.store.audit import Filters
    from service.store.instance import Instance

    monkeypatch.setenv("FORMULARY_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("FORMULARY_DATABASE_URL", raising=False)
    monkeypatch.delenv("FORMULARY_SECRET", raising=False)
    created = CliRunner().invoke(main, ["tokens", "create", "--name", "ward-7", "--role", "clinician"])
    token = created.output.splitlines()[-1]
    assert CliRunner().invoke(main, ["tokens", "revoke", "ward-7"]).exit_code == 0
    assert CliRunner().invoke(main, ["tokens", "revoke", "ward-7"]).exit_code == 1  # nothing left to revoke
    records, _ = Instance.from_env().audit.page(Filters(), 10)
    assert [(r["kind"], r["requester"], r["body"]) for r in reversed(records)] == [
        ("token_created", "cli", {"name": "ward-7", "role": "clinician"}),
        ("token_revoked", "cli", {"name": "ward-7", "role": "clinician"}),
    ]
    assert token.startswith("ivig_") and token not in str(records)
