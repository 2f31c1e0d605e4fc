"""Shared fixtures: the test rulebook, small rulebooks written to a temporary folder, and the
shipped rulebook for content-independent checks.

Code tests decide on the test rulebook in tests/rulebook/ (a fixture, not clinical policy), so
the committee's edits to rules/ivig.yaml and data/ never break them; what the shipped rulebook
decides is tested only by its own cases (rules/ivig.tests.yaml, tests/test_rulebook_cases.py).
"""

import datetime
from pathlib import Path

import pytest
import yaml

from service import clock
from service.decide.formulary import Formulary
from service.rulebook.shipped import SHIPPED_RULEBOOK

# The rulebook the service, console, CLI, workflow and terminology tests decide on.
TEST_RULEBOOK = Path(__file__).resolve().parent / "rulebook" / "ivig-test.yaml"


@pytest.fixture(autouse=True, scope="session")
def _code_set_cache_of_this_session(tmp_path_factory):
    """The ICD-10-CM cache (service/rulebook/disk_cache.py) in a folder of the test session (built
    on first use, as a new install does), never the user's own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FORMULARY_CACHE_DIR", str(tmp_path_factory.mktemp("formulary-cache")))
        yield


@pytest.fixture(autouse=True)
def _decide_on_the_test_rulebook(monkeypatch):
    """FORMULARY_RULEBOOK names the test rulebook in every test, so code that falls back to the
    default rulebook (the CLI, Instance.from_env) never reads the shipped one by accident."""
    monkeypatch.setenv("FORMULARY_RULEBOOK", str(TEST_RULEBOOK))


# What every verified product states besides its labels: who makes it, how it is given, its vials
# and the prescribing information its label facts were read from.
PRODUCT_FACTS = {
    "manufacturer": "A manufacturer",
    "routes": ["intravenous"],
    "vial_sizes_g": [5, 10],
    "prescribing_information": {"source": "Test prescribing information", "revised": "2026-01"},
}

MINI_DATA = {
    "products.yaml": {
        "indications": {"cidp": "Chronic inflammatory demyelinating polyneuropathy", "pi": "Primary immunodeficiency"},
        "products": [
            {
                "name": "Alpha",
                **PRODUCT_FACTS,
                "labels": [{"indication": "cidp", "age_years": {"at_least": 18}}, {"indication": "pi"}],
            },
            {"name": "Beta", **PRODUCT_FACTS, "labels": [{"indication": "pi", "age_years": {"at_least": 2}}]},
            {"name": "Gamma", **PRODUCT_FACTS, "labels": [{"indication": "pi", "age_years": {"at_least": 12}}]},
        ],
    },
    "therapies.yaml": {
        "therapies": {
            "corticosteroids": {"name": "Corticosteroids", "synonyms": ["prednisone"]},
            "rituximab": {"name": "Rituximab"},
        }
    },
    "sources.yaml": {
        "sources": {
            "review": {"title": "A review", "publisher": "A publisher", "date": "2020"},
            "labels": {"title": "Product labels", "publisher": "FDA", "date": "2024"},
        }
    },
}

MINI_DIAGNOSES = {
    "gbs": {"name": "Guillain-Barré syndrome", "codes": ["G61.0"], "synonyms": ["GBS"]},
    "cidp": {"name": "CIDP", "codes": ["G61.81"]},
    "pi": {"name": "Primary immunodeficiency", "codes": ["D80.0", "D83"]},
    "myositis": {"name": "Polymyositis and dermatomyositis", "codes": ["M33"]},
    "polymyositis": {"name": "Polymyositis", "codes": ["M33.2"]},
}


def evidence(strength="controlled", source="review", effect="benefit"):
    entry = {"source": source, "finding": "a finding", "strength": strength}
    if strength in ("controlled", "limited"):
        entry["effect"] = effect
    return [entry]


# What a positive rule with repeated courses must say about continuations (lint refuses it otherwise).
REVIEWER_JUDGES = {"reviewer_judges": "A reviewer judges each continuation (test rulebook)."}

MINI_RULES = [
    {
        "id": "gbs-children",
        "title": "GBS in children",
        "diagnosis": "gbs",
        "when": {"age_years": {"under": 18}},
        "outcome": "off_label_with_evidence",
        "review_criteria": REVIEWER_JUDGES,
        "rationale": "r",
        "evidence": evidence(),
    },
    {
        "id": "gbs-adults",
        "title": "GBS in adults",
        "diagnosis": "gbs",
        "when": {"age_years": {"at_least": 18}},
        "outcome": "needs_review",
        "rationale": "r",
        "evidence": evidence("limited"),
    },
    {
        "id": "cidp-labelled",
        "title": "CIDP, labelled",
        "diagnosis": "cidp",
        "outcome": "approved",
        "labelled_indication": "cidp",
        "review_criteria": REVIEWER_JUDGES,
        "rationale": "r",
        "evidence": evidence(source="labels"),
    },
    {
        "id": "cidp-evidence",
        "title": "CIDP, unlabelled",
        "diagnosis": "cidp",
        "outcome": "needs_review",
        "rationale": "r",
        "evidence": evidence("mixed"),
    },
    {
        "id": "pi-labelled",
        "title": "PI",
        "diagnosis": "pi",
        "outcome": "approved",
        "labelled_indication": "pi",
        "review_criteria": REVIEWER_JUDGES,
        "rationale": "r",
        "evidence": evidence(source="labels"),
    },
    {
        "id": "pi-other",
        "title": "PI, unlabelled product",
        "diagnosis": "pi",
        "outcome": "needs_review",
        "rationale": "r",
        "evidence": evidence("limited"),
    },
    {
        "id": "myositis-with-steroids",
        "title": "Myositis with steroids",
        "diagnosis": "myositis",
        "when": {"concurrent_therapies": {"includes": ["corticosteroids"]}},
        "outcome": "off_label_with_evidence",
        "review_criteria": REVIEWER_JUDGES,
        "rationale": "r",
        "evidence": evidence(),
    },
    {
        "id": "myositis-without-steroids",
        "title": "Myositis without steroids",
        "diagnosis": "myositis",
        "when": {"concurrent_therapies": {"excludes": ["corticosteroids"]}},
        "outcome": "not_supported",
        "rationale": "r",
        "evidence": evidence(effect="no_benefit"),
    },
    {
        "id": "polymyositis-severe",
        "title": "Severe polymyositis after steroids",
        "diagnosis": "polymyositis",
        "when": {"severity": ["severe"], "failed_therapies": {"includes": ["corticosteroids"]}},
        "outcome": "needs_review",
        "rationale": "r",
        "evidence": evidence("limited"),
    },
]


MINI_DOSING = {
    "default": "immunomodulatory",
    "weight": {
        "source": "The weight rule of rules/ivig.yaml",
        "ideal_kg_at_five_feet": {"male": 50, "female": 45.5},
        "ideal_kg_per_inch_over_five_feet": 2.3,
        "other_sexes_use": "female",
        "adjustment_factor": 0.4,
        "actual_weight_for": {"under_age_years": 18, "under_height_cm": 152, "pregnant": True},
    },
    "rounding": {"source": "The rounding rule of rules/ivig.yaml", "tolerance": 0.1},
    "profiles": {
        "replacement": {"g_per_kg": {"min": 0.3, "max": 0.8}, "interval_days": {"min": 21, "max": 28}},
        "immunomodulatory": {"g_per_kg": {"min": 0.4, "max": 2.0}, "interval_days": {"min": 21}},
        "acute": {"g_per_kg": {"min": 0.4, "max": 2.0}, "courses": 1},
    },
}


class _WrittenOut(yaml.SafeDumper):
    """Writes a value shared between places out in each (the reader refuses anchors and aliases)."""

    def ignore_aliases(self, data):
        return True


def dump_yaml(content) -> str:
    return yaml.dump(content, Dumper=_WrittenOut, sort_keys=False, allow_unicode=True)


def write_rulebook(folder: Path, rules=None, diagnoses=None, data=None, name="mini.yaml") -> Path:
    """Write a rulebook and its reference data into `folder`; returns the rulebook path."""
    data_dir = folder / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for file, content in (data or MINI_DATA).items():
        (data_dir / file).write_text(dump_yaml(content))
    path = folder / name
    path.write_text(
        dump_yaml(
            {
                "rulebook": {"name": "Mini", "version": "1.0", "effective": "2026-01-01", "reference_data": "data"},
                "authorisations": {"granted_by": ["approved", "off_label_with_evidence"], "days": 180},
                "dosing": MINI_DOSING,
                "diagnoses": MINI_DIAGNOSES if diagnoses is None else diagnoses,
                "rules": MINI_RULES if rules is None else rules,
            },
        )
    )
    return path


@pytest.fixture
def mini_path(tmp_path) -> Path:
    return write_rulebook(tmp_path)


@pytest.fixture
def mini(mini_path):
    # No answer cache: every engine test decision goes through durable-rules itself.
    formulary = Formulary.load(mini_path, cache_size=0)
    yield formulary
    formulary.close()


@pytest.fixture(scope="session")
def fixture_formulary():
    """The test rulebook, loaded once: for tests that decide without the HTTP service."""
    formulary = Formulary.load(TEST_RULEBOOK)
    yield formulary
    formulary.close()


@pytest.fixture(scope="session")
def shipped():
    """The shipped rulebook, for checks that hold for any valid rulebook (never for what it decides)."""
    formulary = Formulary.load(SHIPPED_RULEBOOK)
    yield formulary
    formulary.close()


# --- The HTTP service on a temporary database: SQLite always, PostgreSQL when it is reachable. ---

import re  # noqa: E402
import uuid  # noqa: E402

import sqlalchemy  # noqa: E402

from service.store.database import migrate, open_database  # noqa: E402
from service.store.tokens import ROLES, create_token  # noqa: E402
from service.web.app import create_app  # noqa: E402

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_schema_url():
    """A fresh schema in the local PostgreSQL test database, or a skip saying why not."""
    try:
        engine = sqlalchemy.create_engine(POSTGRES_URL)
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with engine.begin() as connection:
            connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except Exception as error:
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432 (database test): {type(error).__name__}")
    return engine, schema, f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'formulary.db'}"
        return
    engine, schema, url = _postgres_schema_url()
    yield url
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


@pytest.fixture
def engine(database_url):
    """A migrated database, without the app."""
    engine = open_database(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def make_app(tmp_path, database_url, monkeypatch):
    """Builds apps on this test's instance and database, with config overrides; closes them after."""
    monkeypatch.delenv("FORMULARY_SECRET", raising=False)
    made = []

    def make(**config):
        application = create_app(
            {
                "INSTANCE_PATH": str(tmp_path / "instance"),
                "DATABASE_URL": database_url,
                "RULEBOOK": str(TEST_RULEBOOK),
                "WARM": False,
                **config,
            }
        )
        made.append(application)
        return application

    yield make
    for application in made:
        application.extensions["active_rulebook"].close()
        application.extensions["instance"].database.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def tokens(app) -> dict[str, str]:
    """One token per role, named after it."""
    database = app.extensions["instance"].database
    return {role: create_token(database, role, role) for role in ROLES}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def csrf_token(client, path="/console/sign-in") -> str:
    """The CSRF token a console form at `path` carries."""
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in(client, token: str):
    """Sign in to the console as its form does, with the CSRF token from the sign-in page."""
    response = client.post("/console/sign-in", data={"token": token, "csrf_token": csrf_token(client)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


@pytest.fixture
def shell_instance(tmp_path, monkeypatch) -> Path:
    """The `formulary` command's instance: a new folder in tmp_path, its SQLite database and secret."""
    monkeypatch.setenv("FORMULARY_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("FORMULARY_DATABASE_URL", raising=False)
    monkeypatch.delenv("FORMULARY_SECRET", raising=False)
    return tmp_path / "instance"


@pytest.fixture
def single_person_install(monkeypatch):
    """An instance that requires no approvals of rulebook proposals, so the file may be reloaded
    (FORMULARY_RULEBOOK_APPROVALS=0); apps, the CLI and served processes read it."""
    monkeypatch.setenv("FORMULARY_RULEBOOK_APPROVALS", "0")


@pytest.fixture
def day(monkeypatch):
    """The service's clock, at noon UTC of `day.set(date)` (TODAY, 2026-12-01, to start with)."""

    class Day:
        date = datetime.date(2026, 12, 1)

        def set(self, date):
            self.date = date

    current = Day()
    monkeypatch.setattr(clock, "now", lambda: datetime.datetime.combine(current.date, datetime.time(12), datetime.UTC))
    return current


@pytest.fixture
def cli_instance(tmp_path, monkeypatch):
    """An instance for the CLI on the test rulebook, on 2026-12-01, with an app on the same database."""
    from service.web.app import create_app

    monkeypatch.setenv("FORMULARY_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("FORMULARY_RULEBOOK", str(TEST_RULEBOOK))
    monkeypatch.delenv("FORMULARY_DATABASE_URL", raising=False)
    monkeypatch.delenv("FORMULARY_SECRET", raising=False)
    moment = {"now": datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)}
    monkeypatch.setattr(clock, "now", lambda: moment["now"])
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "RULEBOOK": str(TEST_RULEBOOK), "WARM": False})
    yield app, moment
    app.extensions["active_rulebook"].close()
    app.extensions["instance"].database.dispose()
