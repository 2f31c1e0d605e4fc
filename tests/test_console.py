"""The console's pages through Flask's test client: sign-in, roles, CSRF, forms and errors.
The browser journey is in test_console_browser.py."""

import io
import re

import pytest

from service.store.audit import Filters
from service.store.tokens import create_token, revoke_token
from service.workflow import cases

from .conftest import csrf_token, sign_in


def post_form(client, path: str, data: dict, form_page: str | None = None):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, form_page or path)})


def newest_records(app) -> list[dict]:
    records, _ = app.extensions["instance"].audit.page(Filters(), 100)
    return records


def test_pages_send_people_to_sign_in_first(client):
    response = client.get("/console/reviews")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/sign-in?next=/console/reviews")


def test_the_session_cookie_is_secure_http_only_and_holds_no_token(client, tokens):
    response = sign_in(client, tokens["pharmacist"])
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert tokens["pharmacist"] not in cookie


def test_pages_load_nothing_from_elsewhere_and_are_not_cached(client, tokens):
    sign_in(client, tokens["pharmacist"])
    response = client.get("/console/request")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert "http://" not in response.get_data(as_text=True) and "https://" not in response.get_data(as_text=True)


def test_a_bad_token_is_refused_on_the_page_and_on_the_record(app, client):
    response = client.post("/console/sign-in", data={"token": "ivig_nonsense", "csrf_token": csrf_token(client)})
    assert response.status_code == 401
    assert "unknown or has been revoked" in response.get_data(as_text=True)
    refusal = newest_records(app)[0]
    assert (refusal["kind"], refusal["status"]) == ("refusal", 401)


def test_a_form_without_its_csrf_token_is_refused(client, tokens):
    sign_in(client, tokens["clinician"])
    response = client.post("/console/request", data={"diagnosis_code": "G61.0"})
    assert response.status_code == 400
    assert "reload the page" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "target",
    [
        "/console/reviews\r\nSet-Cookie: forged=1",
        "/console/\nx",
        "https://elsewhere.example/console/",
        "//elsewhere.example/console/",
        "/console/../v1/audit",
        "/console/\\elsewhere",
        '/console/"><script>',
    ],
)
def test_a_sign_in_next_that_is_not_a_plain_console_path_goes_home(client, tokens, target):
    response = client.post(
        "/console/sign-in", data={"token": tokens["auditor"], "csrf_token": csrf_token(client), "next": target}
    )
    assert response.status_code == 302 and response.headers["Location"] == "/console/"
    form = client.get("/console/sign-in", query_string={"next": target}).get_data(as_text=True)
    assert 'name="next" value="/console/"' in form


def test_a_sign_in_next_inside_the_console_is_kept_with_its_query(client, tokens):
    target = "/console/audit?since=2026-11-01T10:00&outcome=approved"
    response = client.post(
        "/console/sign-in", data={"token": tokens["auditor"], "csrf_token": csrf_token(client), "next": target}
    )
    assert response.status_code == 302 and response.headers["Location"] == target


def test_sign_out_ends_the_session(client, tokens):
    sign_in(client, tokens["pharmacist"])
    post_form(client, "/console/sign-out", {}, "/console/reviews")
    assert client.get("/console/reviews").status_code == 302


def test_a_session_cookie_replayed_after_sign_out_opens_nothing(app, tokens):
    client = app.test_client()
    sign_in(client, tokens["pharmacist"])
    cookie = client.get_cookie("formulary_session").value
    post_form(client, "/console/sign-out", {}, "/console/reviews")
    replay = app.test_client()
    replay.set_cookie("formulary_session", cookie)
    assert replay.get("/console/reviews").status_code == 302


def test_signing_out_ends_only_that_session(app, tokens):
    first, second = app.test_client(), app.test_client()
    sign_in(first, tokens["pharmacist"])
    sign_in(second, tokens["pharmacist"])
    post_form(first, "/console/sign-out", {}, "/console/reviews")
    assert first.get("/console/reviews").status_code == 302
    assert second.get("/console/reviews").status_code == 200


def test_signing_in_and_out_and_reading_pages_are_on_the_record(app, client, tokens):
    sign_in(client, tokens["auditor"])
    assert client.get("/console/audit?patient_ref=MRN-0042").status_code == 200
    post_form(client, "/console/sign-out", {}, "/console/formulary")
    records = newest_records(app)
    assert [(r["kind"], r["requester"]) for r in records[:3]] == [
        ("sign_out", "auditor"),
        ("access", "auditor"),
        ("sign_in", "auditor"),
    ]
    access = records[1]
    assert access["body"]["action"] == "read_audit" and access["body"]["path"] == "/console/audit"
    assert access["patient_ref_hash"] == app.extensions["instance"].audit.patient_hash("MRN-0042")


def test_revoking_the_token_ends_its_console_sessions(app, client, tokens):
    sign_in(client, tokens["pharmacist"])
    assert client.get("/console/reviews").status_code == 200
    revoke_token(app.extensions["instance"].database, "pharmacist")
    assert client.get("/console/reviews").status_code == 302


@pytest.mark.parametrize(
    "role, path, status",
    [
        ("clinician", "/console/reviews", 403),
        ("clinician", "/console/audit", 403),
        ("clinician", "/console/preapproval", 403),
        ("auditor", "/console/request", 403),
        ("auditor", "/console/audit", 200),
        ("pharmacist", "/console/audit", 403),
        ("pharmacist", "/console/preapproval", 200),
        ("admin", "/console/audit", 200),
        ("clinician", "/console/formulary", 200),
    ],
)
def test_pages_follow_the_api_role_rules(client, tokens, role, path, status):
    sign_in(client, tokens[role])
    assert client.get(path).status_code == status


def test_the_menu_shows_only_what_the_role_may_open(client, tokens):
    sign_in(client, tokens["auditor"])
    page = client.get("/console/audit").get_data(as_text=True)
    assert "Audit log" in page and "Review queue" not in page and "New request" not in page


def test_a_decision_shows_its_outcome_rationale_and_evidence(client, tokens):
    sign_in(client, tokens["clinician"])
    response = post_form(client, "/console/request", {"diagnosis_code": "G61.0", "age_years": "8"})
    page = response.get_data(as_text=True)
    assert response.status_code == 201
    assert "Off-label, with controlled evidence of benefit" in page and "Evidence" in page


def test_bad_input_is_shown_beside_its_field_and_kept(client, tokens):
    sign_in(client, tokens["clinician"])
    response = post_form(client, "/console/request", {"diagnosis_code": "G61.0", "age_years": "200"})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert re.search(r'id="age_years-error">patient.age_years must be between 0 and 130', page)
    assert 'value="200"' in page and 'value="G61.0"' in page
    assert "Traceback" not in page


def test_choosing_a_candidate_updates_the_open_case_instead_of_opening_another(app, client, tokens):
    sign_in(client, tokens["pharmacist"])
    first = post_form(client, "/console/request", {"diagnosis_text": "chronic fatigue", "age_years": "40"}).get_data(
        as_text=True
    )
    case_id = re.search(r'name="case_id" value="([^"]+)"', first).group(1)
    code = re.search(r'name="pick_code" value="([^"]+)"', first).group(1)
    post_form(
        client,
        "/console/request",
        {"pick_code": code, "case_id": case_id, "age_years": "40", "diagnosis_text": "chronic fatigue"},
        "/console/request",
    )
    listed = cases.list_cases(app.extensions["instance"], cases.Queue(status=None))["cases"]
    assert [c["id"] for c in listed] == [case_id]
    assert listed[0]["decision"]["diagnosis"]["code"] == listed[0]["code"] == code


def test_a_misspelt_diagnosis_offers_its_code_with_the_outcome_if_confirmed(app, client, tokens):
    sign_in(client, tokens["clinician"])
    page = post_form(
        client, "/console/request", {"diagnosis_text": "guillian bare syndrom", "age_years": "8"}
    ).get_data(as_text=True)
    assert "Needs review" in page and "matched only approximately" in page
    assert 'name="pick_code" value="G61.0"' in page and "If so: Off-label, with controlled evidence of benefit" in page
    case_id = re.search(r'name="case_id" value="([^"]+)"', page).group(1)
    confirmed = post_form(
        client,
        "/console/request",
        {"pick_code": "G61.0", "case_id": case_id, "age_years": "8", "diagnosis_text": "guillian bare syndrom"},
        "/console/request",
    )
    assert "Off-label, with controlled evidence of benefit" in confirmed.get_data(as_text=True)


def test_the_request_form_takes_the_route(client, tokens):
    sign_in(client, tokens["clinician"])
    form = client.get("/console/request").get_data(as_text=True)
    assert '<option value="subcutaneous"' in form and "intravenous (default)" in form
    fields = {"diagnosis_code": "D83.9", "age_years": "30"}
    approved = post_form(client, "/console/request", fields | {"product": "Gamunex-C", "route": "subcutaneous"})
    review = post_form(client, "/console/request", fields | {"product": "Privigen", "route": "subcutaneous"})
    assert "Approved: an FDA-labelled indication" in approved.get_data(as_text=True)
    assert "Needs review" in review.get_data(as_text=True)


def test_a_resolution_without_a_reason_shows_the_api_message(client, tokens):
    sign_in(client, tokens["pharmacist"])
    page = post_form(
        client, "/console/request", {"diagnosis_code": "D80.2", "age_years": "30", "patient_ref": "MRN-1"}
    ).get_data(as_text=True)
    case_id = re.search(r"/console/reviews/([0-9a-f-]{36})", page).group(1)
    response = post_form(
        client,
        f"/console/reviews/{case_id}/resolution",
        {"resolution": "approved", "reason": " "},
        f"/console/reviews/{case_id}",
    )
    assert response.status_code == 400
    assert 'id="reason-error">a reason is required' in response.get_data(as_text=True)
    done = post_form(
        client,
        f"/console/reviews/{case_id}/resolution",
        {"resolution": "denied", "reason": "no evidence"},
        f"/console/reviews/{case_id}",
    )
    assert done.status_code == 302
    again = post_form(
        client,
        f"/console/reviews/{case_id}/resolution",
        {"resolution": "approved", "reason": "oops"},
        f"/console/reviews/{case_id}",
    )
    assert again.status_code == 409 and "already denied" in again.get_data(as_text=True)


def test_an_unknown_case_is_a_page_not_json(client, tokens):
    sign_in(client, tokens["pharmacist"])
    response = client.get("/console/reviews/no-such-case")
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "No review case no-such-case" in response.get_data(as_text=True)


def test_an_upload_that_is_not_utf8_is_refused_beside_the_file_field(client, tokens):
    sign_in(client, tokens["pharmacist"])
    response = client.post(
        "/console/preapproval/batch",
        content_type="multipart/form-data",
        data={
            "csrf_token": csrf_token(client, "/console/preapproval"),
            "file": (io.BytesIO(b"\xff\xfe\x00"), "list.csv"),
        },
    )
    assert response.status_code == 400
    assert 'id="file-error">the CSV is not UTF-8 text: line 1 (byte offset 0, byte 0xff)' in response.get_data(
        as_text=True
    )


def test_the_audit_page_filters_pages_and_exports(client, tokens):
    sign_in(client, tokens["clinician"])
    for age in (8, 9, 10):
        post_form(client, "/console/request", {"diagnosis_code": "G61.0", "age_years": str(age)})
    post_form(client, "/console/sign-out", {}, "/console/request")
    sign_in(client, tokens["auditor"])
    page = client.get("/console/audit?outcome=off_label_with_evidence&code=G61").get_data(as_text=True)
    assert page.count("<tr>") == 1 + 3  # the header row and three decisions
    export = client.get("/console/audit.csv?outcome=off_label_with_evidence&code=G61").get_data(as_text=True)
    assert len(export.strip().splitlines()) == 1 + 3
    bad = client.get("/console/audit?since=yesterday")
    assert bad.status_code == 400 and "since must be an ISO 8601 date" in bad.get_data(as_text=True)
    for query, message in (
        ("outcome=perhaps", "outcome must be one of"),
        ("code=XYZ", "is not an ICD-10-CM code"),
        ("requester=%00", "requester must be printable text"),
    ):
        refused = client.get(f"/console/audit?{query}")  # the form again, the message beside its field
        assert refused.status_code == 400 and message in refused.get_data(as_text=True)
        assert 'name="outcome"' in refused.get_data(as_text=True)
    export = client.get("/console/audit.csv?outcome=perhaps")  # the export refused as a page, not JSON
    assert export.status_code == 400 and export.mimetype == "text/html" and "needs_review, not_supported" in export.text


def test_facts_added_on_the_case_page_decide_it_again(app, client, tokens):
    sign_in(client, tokens["clinician"])
    page = post_form(client, "/console/request", {"diagnosis_code": "G61.0", "patient_ref": "MRN-7"}).get_data(
        as_text=True
    )
    case_id = re.search(r"/console/reviews/([0-9a-f-]{36})", page).group(1)
    empty = post_form(client, f"/console/reviews/{case_id}/facts", {}, f"/console/reviews/{case_id}")
    assert empty.status_code == 400 and "fill in at least one fact" in empty.get_data(as_text=True)
    done = post_form(client, f"/console/reviews/{case_id}/facts", {"age_years": "8"}, f"/console/reviews/{case_id}")
    assert done.status_code == 302
    assert "Decided again with the added facts: Off-label" in client.get(done.headers["Location"]).get_data(
        as_text=True
    )
    assert cases.get_case(app.extensions["instance"], case_id)["status"] == "closed_by_rules"


def test_a_clinician_cannot_open_or_add_to_another_clinicians_case(app, client, tokens):
    sign_in(client, tokens["clinician"])
    page = post_form(client, "/console/request", {"diagnosis_code": "G61.0"}).get_data(as_text=True)
    case_id = re.search(r"/console/reviews/([0-9a-f-]{36})", page).group(1)
    post_form(client, "/console/sign-out", {}, "/console/request")
    sign_in(client, create_token(app.extensions["instance"].database, "other.clinician", "clinician"))
    assert client.get(f"/console/reviews/{case_id}").status_code == 403
    assert (
        post_form(client, f"/console/reviews/{case_id}/facts", {"age_years": "8"}, "/console/request").status_code
        == 403
    )
    assert post_form(client, "/console/request", {"pick_code": "G61.0", "case_id": case_id}).status_code == 403
    # On the record as the API records the same refusal: its code and its reason.
    refused = [r for r in newest_records(app) if r["kind"] == "refusal" and r["requester"] == "other.clinician"]
    assert [(r["status"], r["body"]["error"]["code"]) for r in refused] == [(403, "forbidden")] * 3
    assert "a clinician may read only the cases of their own requests" in [
        r["body"]["error"]["message"] for r in refused
    ]


def test_choosing_a_candidate_for_a_closed_case_says_so(client, tokens):
    sign_in(client, tokens["pharmacist"])
    page = post_form(client, "/console/request", {"diagnosis_text": "chronic fatigue"}).get_data(as_text=True)
    case_id = re.search(r'name="case_id" value="([^"]+)"', page).group(1)
    post_form(
        client,
        f"/console/reviews/{case_id}/resolution",
        {"resolution": "denied", "reason": "unclear"},
        f"/console/reviews/{case_id}",
    )
    again = post_form(client, "/console/request", {"pick_code": "G61.0", "case_id": case_id})
    assert again.status_code == 409 and "facts can be added only to an open or pended case" in again.get_data(
        as_text=True
    )


def test_a_patients_authorisations_are_listed_by_their_reference(client, tokens):
    sign_in(client, tokens["clinician"])
    post_form(client, "/console/request", {"diagnosis_code": "D83.9", "age_years": "30", "patient_ref": "MRN-55"})
    page = client.get("/console/authorisations?patient_ref=MRN-55").get_data(as_text=True)
    assert "1 authorisation for MRN-55" in page and "D83.9" in page and "Active" in page
    assert "No authorisation is on record" in client.get("/console/authorisations?patient_ref=MRN-56").get_data(
        as_text=True
    )


# --- Qualifying criteria (issue 16) on the decision form ------------------------------------------


@pytest.fixture
def _on_2026_12_01(monkeypatch):
    import datetime

    from service import clock

    moment = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
    monkeypatch.setattr(clock, "now", lambda: moment)


def _criteria_form(**rows):
    return {
        "diagnosis_code": "C91.10",
        "confirmed_by": "haematologist",
        "prescriber_specialty": "haematologist",
        "onset_date": "2025-06-01",
        "course": "initial",
        **rows,
    }


@pytest.mark.usefixtures("_on_2026_12_01")
def test_the_request_form_takes_observation_rows_and_criteria(app, client, tokens):
    sign_in(client, tokens["clinician"])
    page = client.get("/console/request").get_data(as_text=True)
    assert 'name="obs_measure_0"' in page and 'name="confirmed_by"' in page and 'name="course"' in page
    low = {"obs_measure_1": "igg_serum", "obs_value_1": "320", "obs_unit_1": "mg/dL", "obs_taken_on_1": "2026-11-01"}
    response = post_form(client, "/console/request", _criteria_form(**low))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert "Off-label, with controlled evidence of benefit" in response.get_data(as_text=True)
    [record] = [r for r in newest_records(app) if r["kind"] == "decision"][:1]
    kept = record["body"]["request"]
    assert kept["observations"] == [{"measure": "igg_serum", "value": 320.0, "unit": "mg/dL", "taken_on": "2026-11-01"}]
    assert kept["diagnosis"]["confirmed_by"] == "haematologist" and kept["course"] == "initial"


@pytest.mark.usefixtures("_on_2026_12_01")
def test_a_stale_observation_row_shows_the_missing_date(client, tokens):
    sign_in(client, tokens["clinician"])
    stale = {"obs_measure_0": "igg_serum", "obs_value_0": "3", "obs_unit_0": "g/L", "obs_taken_on_0": "2026-08-01"}
    page = post_form(client, "/console/request", _criteria_form(**stale)).get_data(as_text=True)
    assert "igg_serum taken on or after 2026-09-02" in page


@pytest.mark.usefixtures("_on_2026_12_01")
@pytest.mark.parametrize(
    "row, field",
    [
        (
            {"obs_measure_2": "igg_serum", "obs_value_2": "3", "obs_unit_2": "x10^9/L", "obs_taken_on_2": "2026-11-01"},
            "obs_unit_2",
        ),
        (
            {"obs_measure_1": "igg_serum", "obs_value_1": "3", "obs_unit_1": "g/L", "obs_taken_on_1": "2027-01-01"},
            "obs_taken_on_1",
        ),
        ({"obs_measure_0": "igg_serum", "obs_value_0": "3", "obs_unit_0": "g/L"}, "obs_taken_on_0"),
        (
            {"obs_measure_0": "igg_serum", "obs_value_0": "low", "obs_unit_0": "g/L", "obs_taken_on_0": "2026-11-01"},
            "obs_value_0",
        ),
        ({"onset_date": "2030-01-01"}, "onset_date"),
    ],
)
def test_a_bad_observation_row_is_shown_beside_its_field(client, tokens, row, field):
    sign_in(client, tokens["clinician"])
    response = post_form(client, "/console/request", _criteria_form(**row))
    assert response.status_code == 400
    assert f'id="{field}-error"' in response.get_data(as_text=True)


# --- Continuing authorisations (issue 16): due for review, baseline and measurements ----------------


def _authorised_on(client, token, monkeypatch, day, ref="MRN-60") -> str:
    """An authorisation (180 days) granted through the API on `day`, with a baseline observation."""
    import datetime

    from service import clock

    from .conftest import bearer

    monkeypatch.setattr(clock, "now", lambda: datetime.datetime.combine(day, datetime.time(12), datetime.UTC))
    body = {
        "diagnosis": {"code": "G61.0"},
        "patient": {"age_years": 8, "ref": ref},
        "observations": [{"measure": "igg_serum", "value": 320, "unit": "mg/dL", "taken_on": "2026-01-10"}],
    }
    response = client.post("/v1/decisions", json=body, headers=bearer(token))
    monkeypatch.setattr(clock, "now", lambda: datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC))
    return response.get_json()["authorisation_id"]


def test_the_due_for_review_page_lists_ending_and_overdue_authorisations_soonest_first(client, tokens, monkeypatch):
    import datetime

    today = datetime.date(2026, 12, 1)
    later = _authorised_on(client, tokens["clinician"], monkeypatch, today - datetime.timedelta(days=160), "MRN-61")
    ended = _authorised_on(client, tokens["clinician"], monkeypatch, today - datetime.timedelta(days=185), "MRN-62")
    _authorised_on(client, tokens["clinician"], monkeypatch, today - datetime.timedelta(days=100), "MRN-63")
    sign_in(client, tokens["pharmacist"])
    response = client.get("/console/authorisations/due")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Due for review" in page
    assert page.index(f"/console/authorisations/{ended}") < page.index(f"/console/authorisations/{later}")
    assert "Overdue: ended 6 days ago" in page and "Ends in 19 days" in page
    assert "Not measured since it started" in page and page.count("<td>igg_serum</td>") == 2
    assert len(re.findall(r'href="/console/authorisations/[0-9a-f-]{36}"', page)) == 2  # not the one ending in 79 days
    assert "MRN-6" not in page
    assert client.get("/console/authorisations/due?cursor=nonsense").status_code == 400


def test_the_menu_shows_due_for_review_to_every_role(client, tokens):
    sign_in(client, tokens["auditor"])
    assert 'href="/console/authorisations/due"' in client.get("/console/audit").get_data(as_text=True)


def test_the_authorisation_page_shows_the_baseline_and_records_a_measurement(app, client, tokens, monkeypatch):
    import datetime

    authorisation_id = _authorised_on(client, tokens["clinician"], monkeypatch, datetime.date(2026, 11, 1))
    sign_in(client, tokens["clinician"])
    path = f"/console/authorisations/{authorisation_id}"
    page = client.get(path).get_data(as_text=True)
    assert "Baseline" in page and "320 mg/dL" in page and "No measurement is recorded yet" in page
    response = post_form(
        client,
        f"{path}/measurements",
        {"measure": "igg_serum", "value": "710", "unit": "mg/dL", "taken_on": "2026-11-20"},
        path,
    )
    assert response.status_code == 302 and response.headers["Location"] == path
    page = client.get(path).get_data(as_text=True)
    assert "Measurement recorded: igg_serum 7.1 g/L" in page and "7.1 g/L" in page and "710.0 mg/dL" in page
    assert [r["kind"] for r in newest_records(app)].count("measurement") == 1


def test_a_bad_measurement_is_shown_beside_its_field_and_kept(app, client, tokens, monkeypatch):
    import datetime

    authorisation_id = _authorised_on(client, tokens["clinician"], monkeypatch, datetime.date(2026, 11, 1))
    sign_in(client, tokens["pharmacist"])
    path = f"/console/authorisations/{authorisation_id}"
    for change, field, message in (
        ({"unit": "/uL"}, "unit", "unit must be one of g/L, mg/dL for igg_serum"),
        ({"value": "7,1"}, "value", "value must be a number, found &#39;7,1&#39;"),
        ({"taken_on": "2026-12-02"}, "taken_on", "taken_on is after today"),
        ({"taken_on": ""}, "taken_on", "taken_on is required"),
    ):
        form = {"measure": "igg_serum", "value": "7.1", "unit": "g/L", "taken_on": "2026-11-20", **change}
        response = post_form(client, f"{path}/measurements", form, path)
        page = response.get_data(as_text=True)
        assert response.status_code == 400
        assert re.search(rf'id="{field}-error">{re.escape(message)}', page), page
    assert "measurement" not in [r["kind"] for r in newest_records(app)]
    assert client.post(f"{path}/measurements", data={"measure": "igg_serum"}).status_code == 400  # no CSRF token


def test_a_clinician_sees_only_the_authorisations_of_their_own_requests(app, client, tokens, monkeypatch):
    import datetime

    authorisation_id = _authorised_on(client, tokens["clinician"], monkeypatch, datetime.date(2026, 11, 1))
    other = create_token(app.extensions["instance"].database, "other.clinician", "clinician")
    sign_in(client, other)
    path = f"/console/authorisations/{authorisation_id}"
    assert client.get(path).status_code == 403
    assert client.get("/console/authorisations/00000000-0000-0000-0000-000000000000").status_code == 404


def test_a_continuation_is_asked_for_on_the_authorisation_page_and_shows_the_measures_compared(
    app, client, tokens, day
):
    import datetime

    from .conftest import bearer

    day.set(datetime.date(2026, 6, 4))
    body = {
        "diagnosis": {"code": "G61.81"},
        "patient": {"age_years": 50, "ref": "MRN-70"},
        "observations": [
            {"measure": "incat", "value": 6, "unit": "points", "taken_on": "2026-06-01"},
            {"measure": "mrc_sum", "value": 40, "unit": "points", "taken_on": "2026-06-01"},
        ],
    }
    first = client.post("/v1/decisions", json=body, headers=bearer(tokens["clinician"])).get_json()["authorisation_id"]
    day.set(datetime.date(2026, 12, 1))
    sign_in(client, tokens["clinician"])
    path = f"/console/authorisations/{first}"
    assert "Ask for a continuation" in client.get(path).get_data(as_text=True)
    for measure, value in (("incat", "6"), ("mrc_sum", "30")):
        form = {"measure": measure, "value": value, "unit": "points", "taken_on": "2026-11-20"}
        assert post_form(client, f"{path}/measurements", form, path).status_code == 302
    response = post_form(client, f"{path}/continuation", {}, path)
    assert response.status_code == 302 and "/console/decisions/" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "No demonstrated benefit" in page and "measures against the baseline" in page
    assert "incat improved by at least 1 points" in page and "<td>no</td>" in page
    assert "review case" in page and "MRN-70" not in page
    again = post_form(client, f"{path}/continuation", {}, path)  # a new request joins the open case
    assert again.status_code == 302
    assert "the open case it joined" in client.get(again.headers["Location"]).get_data(as_text=True)


def test_an_urgent_request_from_the_console_gets_a_provisional_authorisation_and_the_queue_shows_it_due(
    app, client, tokens, day
):
    sign_in(client, tokens["clinician"])
    form = {
        "patient_ref": "MRN-80",
        "age_years": "40",
        "diagnosis_code": "G61.0",
        "urgent_reason": "Walking ability lost within 2 days.",
    }
    response = post_form(client, "/console/request", form, "/console/request")
    page = response.get_data(as_text=True)
    assert response.status_code == 201
    assert "Urgent: a provisional authorisation for one course is given" in page
    assert 'Provisional authorisation <a href="/console/authorisations/' in page and "MRN-80" not in page.replace(
        'value="MRN-80"', ""
    )
    sign_in(client, tokens["pharmacist"])
    queue = client.get("/console/reviews").get_data(as_text=True)
    assert "Due retrospective review" in queue and "due 2026-12-04 12:00 UTC" in queue
    day.set(__import__("datetime").date(2026, 12, 5))
    sign_in(client, tokens["pharmacist"])  # the session of four days ago has ended
    assert "Overdue retrospective review" in client.get("/console/reviews").get_data(as_text=True)


def test_the_due_for_review_page_shows_a_clinician_only_their_own_requests(app, client, tokens, monkeypatch):
    import datetime

    mine = _authorised_on(client, tokens["clinician"], monkeypatch, datetime.date(2026, 6, 10), "MRN-90")
    other = create_token(app.extensions["instance"].database, "other.clinician", "clinician")
    theirs = _authorised_on(client, other, monkeypatch, datetime.date(2026, 6, 10), "MRN-91")
    sign_in(client, tokens["clinician"])
    page = client.get("/console/authorisations/due").get_data(as_text=True)
    assert f"/console/authorisations/{mine}" in page and f"/console/authorisations/{theirs}" not in page


@pytest.mark.parametrize(
    "weeks, status, shown",
    [
        ("corticosteroids:12", 201, "Off-label, with controlled evidence of benefit"),
        ("corticosteroids:11", 201, "Needs review"),
        ("corticosteroids:twelve", 400, 'id="failed_weeks-error">failed_weeks: write each therapy as NAME:WEEKS'),
        ("aspirin:12", 400, 'id="failed_weeks-error">'),
    ],
)
def test_the_request_form_takes_how_long_each_failed_therapy_was_tried(client, tokens, day, weeks, status, shown):
    sign_in(client, tokens["clinician"])
    form = {
        "diagnosis_code": "D69.41",
        "age_years": "40",
        "confirmed_by": "haematologist",
        "prescriber_specialty": "haematologist",
        "phase": "chronic",
        "course": "initial",
        "obs_measure_0": "platelets",
        "obs_value_0": "20000",
        "obs_unit_0": "/uL",
        "obs_taken_on_0": "2026-11-25",
        "failed_weeks": weeks,
    }
    response = post_form(client, "/console/request", form, "/console/request")
    assert response.status_code == status
    assert shown in response.get_data(as_text=True)
