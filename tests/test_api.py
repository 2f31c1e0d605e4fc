"""The HTTP service: decisions on the record before the caller sees them, roles, errors, audit."""

import csv
import io
import json
import subprocess
import time

import pytest
from sqlalchemy import text

from service.store.audit import AuditUnavailable, Filters
from service.store.tokens import ROLES

from .conftest import bearer, sign_in

GBS_CHILD = {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8, "sex": "female", "ref": "MRN-0042"}}


def post_decision(client, token, body=GBS_CHILD):
    return client.post("/v1/decisions", json=body, headers=bearer(token))


def records(app, **filters):
    from service.store.audit import Filters

    return list(app.extensions["instance"].audit.stream(Filters(**filters)))


def test_decision_is_recorded_before_it_is_returned(app, client, tokens):
    response = post_decision(client, tokens["clinician"])
    assert response.status_code == 201
    decision = response.get_json()
    assert decision["outcome"] == "off_label_with_evidence" and decision["rule"]["id"] == "gbs-children"
    assert decision["decided_at"].endswith("Z") and len(decision["decision_id"]) == 36
    assert response.headers["Location"] == f"/v1/decisions/{decision['decision_id']}"
    [record] = records(app, outcome="off_label_with_evidence")
    assert record["decision_id"] == decision["decision_id"] and record["requester"] == "clinician"
    assert record["body"]["decision"] == decision
    assert record["rulebook_digest"] == decision["rulebook"]["digest"] and record["matched_by"] == "code"
    assert (
        client.get(f"/v1/decisions/{decision['decision_id']}", headers=bearer(tokens["clinician"])).get_json()
        == decision
    )


def test_a_clinician_reads_only_their_own_decisions(client, tokens, app):
    from service.store.tokens import create_token

    other = create_token(app.extensions["instance"].database, "dr-other", "clinician")
    decision_id = post_decision(client, tokens["clinician"]).get_json()["decision_id"]
    assert client.get(f"/v1/decisions/{decision_id}", headers=bearer(other)).status_code == 403
    assert client.get(f"/v1/decisions/{decision_id}", headers=bearer(tokens["pharmacist"])).status_code == 200


def test_the_audit_write_failing_gives_503_and_no_decision(client, tokens, app, monkeypatch):
    def fail(*args, **kwargs):
        raise AuditUnavailable("disk full")

    monkeypatch.setattr(app.extensions["instance"].audit, "append", fail)
    response = post_decision(client, tokens["clinician"])
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "audit_unavailable"
    assert "outcome" not in response.get_json()


# A database that answers reads but refuses writes to the chain head, as a read-only one does.
REFUSE_HEAD_WRITES = {
    "sqlite": [
        "CREATE TRIGGER refuse_head_writes BEFORE UPDATE ON audit_head "
        "BEGIN SELECT RAISE(ABORT, 'the database is read-only'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_head_writes() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RAISE EXCEPTION 'the database is read-only'; END $$",
        "CREATE TRIGGER refuse_head_writes BEFORE UPDATE ON audit_head "
        "FOR EACH ROW EXECUTE FUNCTION refuse_head_writes()",
    ],
}


def test_healthz_is_503_while_the_audit_log_cannot_be_written_though_reads_work(app, client, tokens):
    engine = app.extensions["instance"].sql_engine
    with engine.begin() as connection:
        for statement in REFUSE_HEAD_WRITES[engine.dialect.name]:
            connection.exec_driver_sql(statement)
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["reason"] == "the database does not answer or cannot be written"
    refused = post_decision(client, tokens["clinician"])
    assert refused.status_code == 503 and refused.get_json()["error"]["code"] == "audit_unavailable"
    assert client.get("/v1/rulebook", headers=bearer(tokens["auditor"])).status_code == 200
    unrecorded = client.get("/v1/audit?limit=1", headers=bearer(tokens["auditor"]))  # no access off the record
    assert unrecorded.status_code == 503 and unrecorded.get_json()["error"]["code"] == "audit_unavailable"
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "DROP TRIGGER refuse_head_writes" + (" ON audit_head" if engine.dialect.name == "postgresql" else "")
        )
    assert client.get("/healthz").status_code == 200
    assert post_decision(client, tokens["clinician"]).status_code == 201


# --- Roles: every endpoint x every role, no token and a bad token. ---

ENDPOINTS = [
    ("post", "/v1/decisions", {"clinician", "pharmacist", "admin"}, 201),
    ("get", "/v1/decisions/{id}", {"clinician", "pharmacist", "auditor", "admin"}, 200),
    ("get", "/v1/rulebook", {"clinician", "pharmacist", "auditor", "committee", "admin"}, 200),
    ("get", "/v1/rulebook/rules/gbs-children", {"clinician", "pharmacist", "auditor", "committee", "admin"}, 200),
    # By default an instance requires approved proposals: an admin's reload is refused, 409.
    ("post", "/v1/rulebook/reload", {"admin"}, 409),
    ("get", "/v1/rulebook/proposals", {"pharmacist", "auditor", "committee", "admin"}, 200),
    ("get", "/v1/audit", {"auditor", "admin"}, 200),
    ("get", "/v1/audit.csv", {"auditor", "admin"}, 200),
    ("get", "/v1/audit/verify", {"auditor", "admin"}, 200),
]


def test_every_endpoint_answers_every_role_as_the_role_rules_say(client, tokens):
    # The decision to read belongs to the clinician, so every role that may read one can read it.
    decision_id = post_decision(client, tokens["clinician"]).get_json()["decision_id"]
    # Every role a token can carry, then callers without a valid token.
    callers = [
        *((role, bearer(tokens[role])) for role in ROLES),
        ("nobody", {}),
        ("bad token", bearer("ivig_not-a-token")),
    ]
    for method, path, allowed, success in ENDPOINTS:
        path = path.replace("{id}", decision_id)
        body = {"json": GBS_CHILD} if path == "/v1/decisions" else {}
        for who, headers in callers:
            status = getattr(client, method)(path, headers=headers, **body).status_code
            expected = success if who in allowed else 401 if who in ("nobody", "bad token") else 403
            assert status == expected, (method, path, who)
    assert client.get("/healthz").status_code == 200 and client.get("/openapi.json").status_code == 200


def test_a_revoked_token_is_refused(client, tokens, app):
    from service.store.tokens import revoke_token

    revoke_token(app.extensions["instance"].database, "clinician")
    assert post_decision(client, tokens["clinician"]).status_code == 401


def test_a_token_revoked_while_in_use_is_refused_at_once_by_this_process(client, tokens, app):
    from service.store.tokens import revoke_token

    assert post_decision(client, tokens["clinician"]).status_code == 201  # its lookup is now cached
    revoke_token(app.extensions["instance"].database, "clinician")
    assert post_decision(client, tokens["clinician"]).status_code == 401


def test_a_token_revoked_from_the_shell_is_refused_within_the_cache_bound(client, tokens, app, database_url):
    from service.store.tokens import CACHE_SECONDS

    from .service_process import FORMULARY, service_env

    assert post_decision(client, tokens["clinician"]).status_code == 201  # its lookup is now cached
    env = service_env(app.extensions["instance"].path, database_url)
    subprocess.run([str(FORMULARY), "tokens", "revoke", "clinician"], env=env, check=True, capture_output=True)
    time.sleep(CACHE_SECONDS + 0.75)  # the documented bound (from the CLI's commit, earlier still), plus slack
    assert post_decision(client, tokens["clinician"]).status_code == 401
    assert post_decision(client, tokens["pharmacist"]).status_code == 201


# --- Errors: clear, JSON, naming the field; never a stack trace. ---


@pytest.mark.parametrize(
    "body, field, code",
    [
        ({"diagnosis": {"code": "G61.0"}, "patient": {"age_years": "8"}}, "patient.age_years", "wrong_type"),
        ({"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 131}}, "patient.age_years", "out_of_range"),
        ({"diagnosis": {"code": "G61.0"}, "patient": {"age_years": -1}}, "patient.age_years", "out_of_range"),
        ({"diagnosis": {"code": "G61.0"}, "patient": {"weight_kg": 0}}, "patient.weight_kg", "out_of_range"),
        ({"diagnosis": {"code": "G61.0"}, "dose": {"g_per_kg": 50}}, "dose.g_per_kg", "out_of_range"),
        (
            {"diagnosis": {"code": "G61.0"}, "therapies": {"failed": ["unicorn dust"]}},
            "therapies.failed[0]",
            "unknown_therapy",
        ),
        ({"diagnosis": {"code": "G61.0"}, "product": "Imaginol"}, "product", "unknown_product"),
        ({"diagnosis": {"code": "G61.99"}}, "diagnosis.code", "invalid_code"),
        ({"diagnosis": {"code": "G61.0"}, "favourite_colour": "blue"}, "favourite_colour", "unknown_field"),
        ({"patient": {"age_years": 8}}, "diagnosis", "missing_field"),
        ([1, 2, 3], "", "wrong_type"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(client, tokens, body, field, code):
    response = client.post("/v1/decisions", json=body, headers=bearer(tokens["pharmacist"]))
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert (error["code"], error["field"] or "") == (code, field)
    assert error["message"]


def test_an_invalid_code_comes_with_suggestions(client, tokens):
    error = post_decision(client, tokens["admin"], {"diagnosis": {"code": "G61.99"}}).get_json()["error"]
    assert "G61.9" in [s["code"] for s in error["suggestions"]]


def test_malformed_json_non_json_big_bodies_and_unknown_routes_get_json_errors(client, tokens):
    headers = bearer(tokens["admin"])
    bad = client.post("/v1/decisions", data="{not json", headers={**headers, "Content-Type": "application/json"})
    assert (bad.status_code, bad.get_json()["error"]["code"]) == (400, "invalid_json")
    form = client.post("/v1/decisions", data="code=G61.0", headers={**headers, "Content-Type": "text/plain"})
    assert form.status_code == 415 and form.get_json()["error"]["code"] == "unsupported_media_type"
    big = client.post(
        "/v1/decisions",
        data=json.dumps({"diagnosis": {"text": "x" * 70_000}}),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert big.status_code == 413 and big.get_json()["error"]["code"] == "body_too_large"
    missing = client.get("/v1/nothing-here", headers=headers)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "body",
    [
        b'{"diagnosis": {"text": "\\ud800"}}',  # an escaped lone surrogate
        b'{"diagnosis": {"code": "G61.0"}, "patient": {"ref": "MRN-\\uDC00"}}',
        '{"diagnosis": {"text": "Guillain\u2013Barr\u00e9 \ud800"}}'.encode("utf-8", "surrogatepass"),  # raw bytes
    ],
)
def test_text_that_is_not_valid_unicode_is_refused(client, tokens, body):
    response = client.post(
        "/v1/decisions", data=body, headers={**bearer(tokens["admin"]), "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert (
        response.get_json()["error"]["code"] == "invalid_json"
        and "surrogate" in response.get_json()["error"]["message"]
    )


def test_escaped_and_accented_text_is_accepted(client, tokens):
    body = '{"diagnosis": {"text": "Guillain-Barr\\u00e9 syndrome"}, "patient": {"age_years": 8}}'
    response = client.post(
        "/v1/decisions", data=body, headers={**bearer(tokens["admin"]), "Content-Type": "application/json"}
    )
    assert response.status_code == 201 and response.get_json()["diagnosis"]["code"].startswith("G61.0")


def test_the_api_neither_reads_nor_sets_a_session_cookie(client, tokens):
    sign_in(client, tokens["admin"])  # the browser now holds a console session
    assert client.post("/v1/decisions", json=GBS_CHILD).status_code == 401  # the cookie is no credential here
    response = post_decision(client, tokens["admin"])
    assert response.status_code == 201 and "Set-Cookie" not in response.headers


def test_an_internal_error_is_a_500_without_a_stack_trace(client, tokens, app, monkeypatch):
    formulary = app.extensions["active_rulebook"].current
    monkeypatch.setattr(formulary, "decide_request", lambda request: 1 / 0)
    response = post_decision(client, tokens["admin"])
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "Traceback" not in body and "ZeroDivisionError" not in body
    assert response.headers["X-Request-Id"] in response.get_json()["error"]["message"]


def test_refused_requests_are_on_the_record_without_the_token(client, tokens, app):
    client.post("/v1/decisions", json={"diagnosis": {"code": "G61.99"}}, headers=bearer(tokens["pharmacist"]))
    client.get("/v1/audit", headers=bearer(tokens["clinician"]))
    client.get("/v1/audit", headers=bearer("ivig_wrong"))
    refusals = [r for r in records(app) if r["kind"] == "refusal"]
    assert sorted(r["status"] for r in refusals) == [400, 401, 403]
    everything = json.dumps(records(app))
    assert not any(token in everything for token in tokens.values()) and "ivig_wrong" not in everything


# --- The audit log: filters, paging, CSV, verification, patient identifiers. ---


def _fill(client, tokens):
    requests = [
        ("clinician", {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8, "ref": "MRN-0042"}}),
        (
            "clinician",
            {
                "diagnosis": {"code": "M33.20"},
                "patient": {"age_years": 50, "ref": "MRN-0042"},
                "therapies": {"concurrent": ["corticosteroids"]},
            },
        ),
        ("pharmacist", {"diagnosis": {"code": "G30.9"}, "patient": {"age_years": 80, "ref": "MRN-0099"}}),
        (
            "pharmacist",
            {"diagnosis": {"code": "M33.22"}, "patient": {"age_years": 60}, "therapies": {"concurrent": []}},
        ),
    ]
    return [post_decision(client, tokens[who], body).get_json() for who, body in requests]


def test_audit_filters_find_what_they_name(client, tokens):
    decisions = _fill(client, tokens)
    headers = bearer(tokens["auditor"])

    def ids(query):
        response = client.get(f"/v1/audit?{query}", headers=headers)
        assert response.status_code == 200, response.get_json()
        return [r["decision_id"] for r in response.get_json()["records"] if r["kind"] == "decision"]

    assert ids("patient_ref=MRN-0042") == [decisions[1]["decision_id"], decisions[0]["decision_id"]]
    assert ids("code=M33.2") == [decisions[3]["decision_id"], decisions[1]["decision_id"]]  # descendants too
    assert ids("code=m3322") == [decisions[3]["decision_id"]]
    assert ids("outcome=not_supported") == [
        d["decision_id"] for d in decisions[2:][::-1] if d["outcome"] == "not_supported"
    ]
    assert ids("rule=gbs-children") == [decisions[0]["decision_id"]]
    assert ids("requester=pharmacist") == [decisions[3]["decision_id"], decisions[2]["decision_id"]]
    assert ids(f"since={decisions[2]['decided_at']}") == [decisions[3]["decision_id"], decisions[2]["decision_id"]]
    assert ids(f"until={decisions[1]['decided_at']}") == [decisions[0]["decision_id"]]
    assert ids("since=2000-01-01&until=2000-01-02") == []


def test_audit_pages_newest_first_with_a_cursor(client, tokens):
    decisions = _fill(client, tokens)
    headers, seen, cursor = bearer(tokens["auditor"]), [], None
    while True:
        page = client.get("/v1/audit?limit=3" + (f"&cursor={cursor}" if cursor else ""), headers=headers).get_json()
        seen += page["records"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [r["id"] for r in seen] == sorted((r["id"] for r in seen), reverse=True)
    assert [r["decision_id"] for r in seen if r["kind"] == "decision"] == [
        d["decision_id"] for d in reversed(decisions)
    ]


@pytest.mark.parametrize(
    "query, field",
    [
        ("outcome=maybe", "outcome"),
        ("code=G61.99", "code"),
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("colour=red", "colour"),
        ("requester=%00", "requester"),  # PostgreSQL cannot compare text with NUL: was a 503
        ("rule=a%0Ab", "rule"),
        ("patient_ref=MRN-00%0042", "patient_ref"),
    ],
)
def test_bad_audit_filters_are_400s(client, tokens, query, field):
    response = client.get(f"/v1/audit?{query}", headers=bearer(tokens["auditor"]))
    assert response.status_code == 400 and response.get_json()["error"]["field"] == field
    assert "MRN" not in response.get_data(as_text=True)


def test_audit_csv_streams_the_same_selection(client, tokens):
    decisions = _fill(client, tokens)
    response = client.get("/v1/audit.csv?patient_ref=MRN-0042", headers=bearer(tokens["auditor"]))
    assert response.status_code == 200 and response.mimetype == "text/csv" and response.is_streamed
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0]["kind"] == "access"  # the export itself, recorded before it streams
    assert [r["decision_id"] for r in rows[1:]] == [decisions[1]["decision_id"], decisions[0]["decision_id"]]
    assert rows[1]["code"] == "M33.20" and "MRN-0042" not in response.get_data(as_text=True)


def test_verify_passes_on_an_untouched_chain(client, tokens):
    _fill(client, tokens)
    result = client.get("/v1/audit/verify", headers=bearer(tokens["auditor"])).get_json()
    assert result.items() >= {"ok": True, "records": 4, "first_broken": None, "reason": None}.items()


def _tamper(app, statements: str):
    with app.extensions["instance"].database.begin() as connection:
        for statement in statements.split(";"):
            connection.execute(text(statement))


@pytest.mark.parametrize(
    "statement, first_broken, reason",
    [
        (
            "UPDATE audit_records SET content = replace(content, 'off_label_with_evidence', 'approved') WHERE id = 1",
            1,
            "altered",
        ),
        ("UPDATE audit_records SET outcome = 'approved' WHERE id = 2", 2, "searchable fields differ"),
        ("DELETE FROM audit_records WHERE id = 2", 2, "missing"),
        (
            "UPDATE audit_records SET id = -2 WHERE id = 2; UPDATE audit_records SET id = 2 WHERE id = 3;"
            "UPDATE audit_records SET id = 3 WHERE id = -2",
            2,
            "does not follow",
        ),
        ("DELETE FROM audit_records WHERE id = 4", 4, "records at the end were removed"),
    ],
)
def test_verify_names_the_first_broken_record(client, tokens, app, statement, first_broken, reason):
    _fill(client, tokens)
    _tamper(app, statement)
    result = client.get("/v1/audit/verify", headers=bearer(tokens["auditor"])).get_json()
    assert result["ok"] is False and result["first_broken"] == first_broken and reason in result["reason"]


def test_patient_identifiers_are_never_stored_or_logged_in_clear(client, tokens, app, tmp_path):
    _fill(client, tokens)
    client.get("/v1/audit?patient_ref=MRN-0042", headers=bearer(tokens["auditor"]))
    client.get("/v1/audit?patient_ref=MRN-0042", headers=bearer(tokens["clinician"]))  # refused, on the record
    with app.extensions["instance"].database.connect() as connection:
        dumped = json.dumps(
            [
                list(map(str, row))
                for table in ("audit_records", "api_tokens", "rulebook_activations")
                for row in connection.execute(text(f"SELECT * FROM {table}"))
            ]
        )
    assert "MRN-0042" not in dumped and "MRN-0099" not in dumped and len(dumped) > 1000
    for file in (tmp_path / "instance").rglob("*"):
        if file.is_file():
            assert b"MRN-0042" not in file.read_bytes(), file


# --- The formulary as data, and reloading it. ---


def test_rulebook_endpoints_serve_the_formulary(app, client, tokens):
    data = client.get("/v1/rulebook", headers=bearer(tokens["clinician"])).get_json()
    served = app.extensions["active_rulebook"].current.rulebook
    assert data["rulebook"]["version"] == served.version and [r["id"] for r in data["rules"]] == [
        r.id for r in served.rules
    ]
    rule = client.get("/v1/rulebook/rules/gbs-children", headers=bearer(tokens["clinician"])).get_json()
    assert rule["outcome"] == "off_label_with_evidence" and rule["evidence"]
    assert client.get("/v1/rulebook/rules/nope", headers=bearer(tokens["clinician"])).status_code == 404


def test_a_refusal_the_audit_log_cannot_record_becomes_a_503_that_keeps_its_request_id(
    app, client, tokens, monkeypatch, caplog
):
    audit = app.extensions["instance"].audit
    append = audit.append

    def refusals_fail(kind, *args, **kwargs):
        if kind == "refusal":
            raise OSError("no space left on device")
        return append(kind, *args, **kwargs)

    monkeypatch.setattr(audit, "append", refusals_fail)
    with caplog.at_level("INFO", logger="service"):
        response = client.get("/v1/audit?limit=0", headers={**bearer(tokens["auditor"]), "X-Request-Id": "req-42"})
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "audit_unavailable"
    assert response.headers["X-Request-Id"] == "req-42"
    assert any("GET /v1/audit 503" in line and "request=req-42" in line for line in caplog.messages)


def test_reads_of_patient_data_are_access_records_naming_who_and_what_never_the_identifier(app, client, tokens):
    body = {
        "diagnosis": {"code": "M33.20"},
        "patient": {"age_years": 50, "sex": "male", "ref": "MRN-0042", "weight_kg": 90, "height_cm": 180},
    }
    decision = client.post("/v1/decisions", json=body, headers=bearer(tokens["clinician"])).get_json()
    audit = app.extensions["instance"].audit
    patient = audit.patient_hash("MRN-0042")
    reads = [
        ("pharmacist", f"/v1/decisions/{decision['decision_id']}", "read_decision", None),
        ("clinician", f"/v1/reviews/{decision['review_case_id']}", "read_case", None),
        ("pharmacist", "/v1/reviews?status=open", "list_reviews", None),
        ("auditor", "/v1/authorisations?patient_ref=MRN-0042", "read_authorisations", patient),
        ("auditor", "/v1/audit?patient_ref=MRN-0042", "read_audit", patient),
        ("auditor", "/v1/audit?patient_ref=%20MRN-0042%E2%80%8B", "read_audit", patient),  # read as the view reads it
        ("admin", "/v1/audit.csv", "read_audit", None),
    ]
    for role, path, action, patient_hash in reads:
        assert client.get(path, headers=bearer(tokens[role])).status_code == 200, path
        (record,), _ = audit.page(Filters(), 1)
        assert (record["kind"], record["requester"], record["status"]) == ("access", role, 200)
        assert record["body"]["action"] == action and record["body"]["path"] == path.split("?")[0]
        assert record["patient_ref_hash"] == patient_hash
    assert client.get(reads[0][1], headers=bearer(tokens["clinician"] + "x")).status_code == 401
    (refused,), _ = audit.page(Filters(), 1)
    assert refused["kind"] == "refusal"  # a refused read is a refusal, not an access
    assert client.get("/v1/rulebook", headers=bearer(tokens["auditor"])).status_code == 200
    assert audit.page(Filters(), 1)[0][0]["id"] == refused["id"]  # the formulary is not patient data
    everything = json.dumps([record for record in audit.stream(Filters())])
    assert "MRN-0042" not in everything


def test_control_characters_in_a_path_cannot_forge_a_log_line(client, tokens, caplog):
    forged = "/v1/x\n2026-01-01 00:00:00 1 INFO service GET /v1/audit 200 1.0ms by=admin request=forged"
    with caplog.at_level("INFO", logger="service"):
        response = client.get(forged.replace("\n", "%0A").replace(" ", "%20"), headers=bearer(tokens["auditor"]))
    assert response.status_code == 404
    (line,) = [message for message in caplog.messages if "/v1/x" in message]
    method, path, status, _, by, _ = line.split(" ")  # one line of six fields: the path is one of them
    assert "\n" not in line and (method, status, by) == ("GET", "404", "by=-")
    assert path.startswith("/v1/x%0A2026-01-01%2000:00:00%201%20INFO")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/decisions",
        "/v1/reviews/any-case/resolution",
        "/v1/reviews/any-case/facts",
        "/v1/preapprovals",
        "/v1/preapprovals/batch",
    ],
)
@pytest.mark.parametrize("shape", ["[", '{"a":'])
def test_json_nested_a_thousand_levels_deep_is_refused_naming_the_problem(client, tokens, path, shape):
    body = shape * 1000 + ("]" if shape == "[" else "}") * 1000  # about 2 KB (the objects' keys: 5 KB)
    response = client.post(path, data=body, headers={**bearer(tokens["admin"]), "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "json_too_deep"
    assert "more than 16 levels deep" in response.get_json()["error"]["message"]


def test_json_as_deep_as_a_request_needs_is_read(client, tokens):
    batch = [
        {
            "diagnosis": {"code": "G61.0"},
            "patient": {"ref": "MRN-1"},
            "product": "Gamunex-C",
            "therapies": {"failed": ["corticosteroids"]},
        }
    ]
    response = client.post("/v1/preapprovals/batch", json=batch, headers=bearer(tokens["admin"]))
    assert response.status_code == 200


# --- Qualifying criteria (issue 16): the new request facts through the API and the audit log --------

CLL_LOW_IGG = {
    "diagnosis": {"code": "C91.10", "confirmed_by": "haematologist", "onset_date": "2025-06-01"},
    "patient": {"age_years": 70, "ref": "MRN-0777"},
    "prescriber": {"specialty": "haematologist"},
    "course": "initial",
    "therapies": {"failed": [{"name": "prednisone", "weeks": 12, "reason": "intolerance"}]},
    "observations": [{"measure": "igg_serum", "value": 320, "unit": "mg/dL", "taken_on": "2026-11-01"}],
}


@pytest.fixture
def _on_2026_12_01(monkeypatch):
    import datetime

    from service import clock

    moment = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
    monkeypatch.setattr(clock, "now", lambda: moment)


@pytest.mark.usefixtures("_on_2026_12_01")
def test_request_facts_decide_and_are_kept_in_the_audit_record_without_the_patient_ref(app, client, tokens):
    response = post_decision(client, tokens["clinician"], CLL_LOW_IGG)
    assert response.status_code == 201, response.get_json()
    decision = response.get_json()
    assert (decision["outcome"], decision["rule"]["id"]) == ("off_label_with_evidence", "cll-low-igg")
    [record] = [r for r in records(app) if r.get("decision_id") == decision["decision_id"]]
    kept = record["body"]["request"]
    assert kept["observations"] == CLL_LOW_IGG["observations"]
    assert kept["diagnosis"] == CLL_LOW_IGG["diagnosis"] and kept["course"] == "initial"
    assert kept["prescriber"] == {"specialty": "haematologist"} and kept["therapies"] == CLL_LOW_IGG["therapies"]
    assert "MRN-0777" not in json.dumps(record)


@pytest.mark.usefixtures("_on_2026_12_01")
def test_a_stale_observation_opens_a_review_case_naming_the_date_it_needs(client, tokens):
    stale = {**CLL_LOW_IGG, "observations": [{**CLL_LOW_IGG["observations"][0], "taken_on": "2026-08-01"}]}
    decision = post_decision(client, tokens["clinician"], stale).get_json()
    assert decision["outcome"] == "needs_review"
    assert decision["missing"] == ["igg_serum taken on or after 2026-09-02"]


@pytest.mark.usefixtures("_on_2026_12_01")
@pytest.mark.parametrize(
    "change, field",
    [
        (
            {"observations": [{"measure": "igg_serum", "value": 3, "unit": "g/dL", "taken_on": "2026-11-01"}]},
            "observations[0].unit",
        ),
        (
            {"observations": [{"measure": "igg_serum", "value": 3, "unit": "g/L", "taken_on": "2026-12-02"}]},
            "observations[0].taken_on",
        ),
        (
            {"observations": [{"measure": "igg_serum", "value": 300, "unit": "g/L", "taken_on": "2026-11-01"}]},
            "observations[0].value",
        ),
        ({"course": "forever"}, "course"),
        ({"prescriber": {"specialty": "astrologer"}}, "prescriber.specialty"),
    ],
)
def test_bad_request_facts_are_400s_naming_the_field_and_not_the_patient(client, tokens, change, field):
    response = post_decision(client, tokens["clinician"], {**CLL_LOW_IGG, **change})
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"]["field"] == field, body
    assert "MRN-0777" not in json.dumps(body)
