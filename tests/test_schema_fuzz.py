"""Schemathesis against the OpenAPI document served at /openapi.json, in process, on SQLite.

Every operation of the document is fuzzed with generated requests (schema-valid and schema-invalid;
in the long run also schemathesis's coverage cases: boundaries, missing and extra parameters, other
methods) sent to the Flask app of the `app` fixture:
- as admin (every role check passes, so the request reaches the endpoint's own validation);
- without a valid token, for the operations under /v1/ (a smaller subset): each must answer 401.

Checks on every response: no 5xx; the status code is one the document lists for the operation;
the content type and the body match what the document says for that status.

Before fuzzing, the app is seeded with decisions of several outcomes, review cases (one pended,
one approved), authorisations and a pre-approval, so list endpoints return real records. For an
operation with a path parameter, each generated request is also sent once more aimed at a record
that exists (chosen from the generated value, so a replayed example sends the same requests); the
same for `patient_ref` of /v1/authorisations, and `authorisation_id` of an authorisation.

The normal run sends a small profile (25 generated cases an operation as admin, 10 without a
token, no coverage phase); `-m long` sends 1,000 an operation as admin and 100 without a token,
plus the coverage phase's cases. Each case without a token is sent two or three times (as
generated, with no Authorization header, and aimed at a known record).

A last test sends requests that the generators almost never produce (numbers at the edges of
what JSON and SQLite hold, dates at the ends of the calendar, lone surrogates, CSV files as old
spreadsheets write them) and applies the same checks. A table of requests and statuses per
operation is printed at the end of the module.
"""

import io
import json
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.web.openapi import DOCUMENT

from .conftest import bearer

# The document as a client receives it (JSON round trip); test_the_fuzzed_document_is_the_served_one
# checks it equals what GET /openapi.json answers.
SERVED = json.loads(json.dumps(DOCUMENT))
# The long run adds schemathesis's coverage phase (boundaries, missing and extra parameters, other
# methods: a few hundred deterministic cases on the larger operations); the quick run only fuzzes.
schema = schemathesis.openapi.from_dict(SERVED)
quick = schemathesis.openapi.from_dict(
    SERVED, config=schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": False}}})
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
_HEALTH = [
    HealthCheck.function_scoped_fixture,
    HealthCheck.too_slow,
    HealthCheck.filter_too_much,
    HealthCheck.data_too_large,
]


def profile(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, suppress_health_check=_HEALTH)


QUICK_ADMIN, QUICK_NO_TOKEN = profile(25), profile(10)
LONG_ADMIN, LONG_NO_TOKEN = profile(1000), profile(100)


@pytest.fixture
def database_url(tmp_path):
    """SQLite only in this file (overrides the SQLite/PostgreSQL parametrization of conftest)."""
    return f"sqlite:///{tmp_path / 'formulary.db'}"


@pytest.fixture
def app(make_app):
    """The anonymous-refusal limit out of reach: every request here must get its own status (the
    limit's 429 is tested in test_flood.py), and a run sends thousands from one address."""
    return make_app(ANON_LIMIT=10**9)


# --- Seed data -----------------------------------------------------------------------------------


@dataclass
class Known:
    decisions: list[str]
    cases: list[str]
    rules: list[str]
    patients: list[str]
    authorisations: list[str]


@pytest.fixture
def known(app, client, tokens) -> Known:
    admin, clinician, pharmacist = bearer(tokens["admin"]), bearer(tokens["clinician"]), bearer(tokens["pharmacist"])

    def post(path, body, headers, status=201):
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == status, (path, body, response.get_json())
        return response.get_json()

    requests = [
        ({"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8, "ref": "MRN-1"}}, clinician),  # off-label
        ({"diagnosis": {"code": "D80.0"}, "patient": {"age_years": 40, "ref": "MRN-2"}}, admin),  # approved
        ({"diagnosis": {"code": "G61.0"}, "patient": {"ref": "MRN-3"}}, clinician),  # missing age
        ({"diagnosis": {"code": "M33.20"}, "patient": {"age_years": 50, "sex": "male", "ref": "MRN-4"}}, clinician),
        ({"diagnosis": {"text": "chronic fatigue"}, "patient": {"ref": "MRN-5"}}, admin),  # candidates
        ({"diagnosis": {"code": "G61.0"}, "patient": {"ref": "MRN-6"}}, admin),
        ({"diagnosis": {"code": "G61.0"}, "patient": {"ref": "MRN-7"}}, pharmacist),
        ({"diagnosis": {"code": "R53.82"}}, admin),  # no rule
    ]
    decisions = [post("/v1/decisions", body, headers) for body, headers in requests]
    cases = [d["review_case_id"] for d in decisions if d["review_case_id"]]
    assert len(cases) >= 4, decisions
    post(f"/v1/reviews/{cases[0]}/resolution", {"resolution": "more_information", "reason": "age?"}, pharmacist)
    post(f"/v1/reviews/{cases[1]}/resolution", {"resolution": "approved", "reason": "ok", "valid_days": 90}, admin)
    post(
        "/v1/preapprovals",
        {
            "patient": {"ref": "MRN-1", "age_years": 8, "weight_kg": 25},
            "diagnosis": {"code": "G61.0"},
            "product": "Privigen",
            "dose": {"g_per_kg": 2.0, "interval_days": 28},
        },
        admin,
        status=200,
    )
    granted = [d["authorisation_id"] for d in decisions if d["authorisation_id"]]
    assert granted, decisions
    post(
        f"/v1/authorisations/{granted[0]}/measurements",
        {"measure": "igg_serum", "value": 710, "unit": "mg/dL", "taken_on": "2026-01-20"},
        pharmacist,
    )
    rules = [rule.id for rule in app.extensions["active_rulebook"].current.rulebook.rules]
    return Known([d["decision_id"] for d in decisions], cases, rules, [f"MRN-{i}" for i in range(1, 8)], granted)


# --- Sending and checking ------------------------------------------------------------------------

SENT: dict[tuple[str, str], Counter] = defaultdict(Counter)  # (run, operation) -> status -> requests
CASES: Counter = Counter()  # (run, operation) -> generated cases
SECONDS: Counter = Counter()  # (run, operation) -> time in requests and checks
PATH_POOLS = {
    "decision_id": "decisions",
    "case_id": "cases",
    "rule_id": "rules",
    "authorisation_id": "authorisations",
}


def _pick(value, pool: list[str]) -> str:
    """A known id chosen from a generated value: the same value always picks the same id."""
    return pool[zlib.crc32(repr(value).encode("utf-8", "surrogatepass")) % len(pool)]


def aimed_at_known_records(case, known: Known) -> list:
    """The generated case again, with its path parameters (or patient_ref) naming records that exist."""
    derived = []
    names = [name for name in (case.path_parameters or {}) if name in PATH_POOLS]
    if names:
        other = case.derive(keep_auth=True)
        for name in names:
            other.path_parameters[name] = _pick(case.path_parameters[name], getattr(known, PATH_POOLS[name]))
        derived.append(other)
    if case.operation.path == "/v1/authorisations":
        query = dict(case.query or {})
        query["patient_ref"] = _pick(query.get("patient_ref"), known.patients)
        derived.append(case.derive(query=query, keep_auth=True))
    return derived


def send(run: str, case, app, headers: dict | None = None):
    """Send one request to the app and check the response against the document."""
    started = time.perf_counter()
    response = case.call(app=app, headers=headers)
    SENT[run, case.operation.label][response.status_code] += 1
    try:
        case.validate_response(response, checks=CHECKS, headers=headers, transport_kwargs={"app": app})
    finally:
        SECONDS[run, case.operation.label] += time.perf_counter() - started
    return response


def as_admin(run: str, case, app, tokens, known):
    CASES[run, case.operation.label] += 1
    headers = bearer(tokens["admin"])
    for each in (case, *aimed_at_known_records(case, known)):
        send(run, each, app, headers)


def without_token(run: str, case, app, known):
    """Sent as generated (no Authorization, or a made-up one) and with no Authorization at all: 401."""
    CASES[run, case.operation.label] += 1
    bare = case.derive(headers={k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"})
    for each in (case, bare, *aimed_at_known_records(bare, known)):
        response = send(run, each, app)
        if each.method.upper() != case.operation.method.upper():
            continue  # the coverage phase also tries methods the path does not have: 405 before any token check
        assert response.status_code == 401, (
            f"{case.operation.label} answered {response.status_code} to a request without a valid token: "
            f"{response.text[:300]}\n{each.as_curl_command()}"
        )


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    """Print, after the module, the requests sent per operation and their statuses."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not SENT:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line("schemathesis: generated cases / requests sent / seconds / statuses, per run and operation")
        for run, label in sorted(SENT):
            statuses = " ".join(f"{status}:{n}" for status, n in sorted(SENT[run, label].items()))
            reporter.write_line(
                f"  {run:14} {label:40} {CASES[run, label]:6} {sum(SENT[run, label].values()):6} "
                f"{SECONDS[run, label]:6.1f}s  {statuses}"
            )


# --- The tests -----------------------------------------------------------------------------------


def test_the_fuzzed_document_is_the_served_one(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == SERVED
    assert {op.ok().label for op in schema.get_all_operations()} >= {"POST /v1/decisions", "GET /v1/audit"}


@quick.parametrize()
@QUICK_ADMIN
def test_every_operation_as_admin(case, app, tokens, known):
    as_admin("admin", case, app, tokens, known)


@quick.include(path_regex=r"^/v1/").parametrize()
@QUICK_NO_TOKEN
def test_every_operation_without_a_token(case, app, known):
    without_token("no token", case, app, known)


@pytest.mark.long
@schema.parametrize()
@LONG_ADMIN
def test_every_operation_as_admin_long(case, app, tokens, known):
    as_admin("admin long", case, app, tokens, known)


@pytest.mark.long
@schema.include(path_regex=r"^/v1/").parametrize()
@LONG_NO_TOKEN
def test_every_operation_without_a_token_long(case, app, known):
    without_token("no token long", case, app, known)


# --- Requests the generators almost never produce ----------------------------------------------


def _json(text: str) -> dict:
    return {"data": text, "content_type": "application/json"}


EDGE_REQUESTS = {
    "age written with an exponent": lambda: (
        "POST",
        "/v1/decisions",
        _json('{"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 1e-05}}'),
    ),
    "age a 400-digit whole number": lambda: (
        "POST",
        "/v1/decisions",
        _json('{"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 1' + "0" * 400 + "}}"),
    ),
    "diagnosis text a lone surrogate": lambda: ("POST", "/v1/decisions", _json('{"diagnosis": {"text": "\\ud800"}}')),
    "patient ref a lone surrogate": lambda: (
        "POST",
        "/v1/decisions",
        _json('{"diagnosis": {"code": "G61.0"}, "patient": {"ref": "MRN-\\udc00"}}'),
    ),
    "audit cursor past 2**63": lambda: ("GET", "/v1/audit?cursor=99999999999999999999", {}),
    "audit since the first day, with an offset": lambda: ("GET", "/v1/audit?since=0001-01-01T00:00:00%2B01:00", {}),
    "audit.csv until the last day, with an offset": lambda: (
        "GET",
        "/v1/audit.csv?until=9999-12-31T23:59:59-01:00",
        {},
    ),
    "CSV infusion list with CR line endings": lambda: (
        "POST",
        "/v1/preapprovals/batch",
        {"data": "patient_ref,diagnosis_code,product\rMRN-1,G61.0,Privigen\r", "content_type": "text/csv"},
    ),
    "CSV upload in Windows-1252": lambda: (
        "POST",
        "/v1/preapprovals/batch",
        {
            "data": {
                "file": (
                    io.BytesIO("patient_ref,diagnosis_text,product\nMRN-1,Guillain-Barré,Privigen\n".encode("cp1252")),
                    "orders.csv",
                )
            },
            "content_type": "multipart/form-data",
        },
    ),
}


@pytest.mark.parametrize("name", list(EDGE_REQUESTS))
def test_edge_requests_get_a_documented_answer(name, client, tokens):
    method, url, kwargs = EDGE_REQUESTS[name]()
    response = client.open(url, method=method, headers=bearer(tokens["admin"]), **kwargs)
    assert response.status_code < 500, (
        f"{name}: {method} {url} answered {response.status_code} {response.get_data(as_text=True)}"
    )
    schema[url.split("?")[0]][method].Case().validate_response(response, checks=CHECKS)
