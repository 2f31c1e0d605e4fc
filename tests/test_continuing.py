"""Continuing authorisations (issue 16), through the API: measurements recorded against an
authorisation, an authorisation with its baseline, measurements and chain, and the authorisations
due for review. On the test rulebook (180-day authorisations), on SQLite and PostgreSQL."""

import datetime
import json

import pytest
from sqlalchemy import select, update

from service.store.tables import authorisation_measurements, authorisations

from .conftest import bearer

TODAY = datetime.date(2026, 12, 1)
BASELINE = [{"measure": "igg_serum", "value": 320, "unit": "mg/dL", "taken_on": "2026-01-10"}]
MEASUREMENT = {"measure": "igg_serum", "value": 710, "unit": "mg/dL", "taken_on": "2026-11-20"}


def authorise(client, token, day, granted_on=TODAY, ref="MRN-0042") -> str:
    """An authorisation granted on `granted_on` (valid 180 days) with the baseline observations; its id."""
    day.set(granted_on)
    body = {
        "diagnosis": {"code": "G61.0"},
        "patient": {"age_years": 8, "sex": "female", "ref": ref},
        "observations": BASELINE,
    }
    response = client.post("/v1/decisions", json=body, headers=bearer(token))
    day.set(TODAY)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["authorisation_id"], response.get_json()
    return response.get_json()["authorisation_id"]


def measure(client, token, authorisation_id, body=MEASUREMENT):
    return client.post(f"/v1/authorisations/{authorisation_id}/measurements", json=body, headers=bearer(token))


def records(app, kind):
    from service.store.audit import Filters

    return [r for r in app.extensions["instance"].audit.stream(Filters()) if r["kind"] == kind]


def test_a_measurement_is_recorded_in_its_measures_canonical_unit_with_the_unit_given(app, client, tokens, day):
    authorisation_id = authorise(client, tokens["clinician"], day)
    response = measure(client, tokens["clinician"], authorisation_id)
    assert response.status_code == 201, response.get_json()
    measurement = response.get_json()
    assert (measurement["measure"], measurement["value"], measurement["unit"]) == ("igg_serum", 7.1, "g/L")
    assert (measurement["value_given"], measurement["unit_given"]) == (710, "mg/dL")
    assert measurement["taken_on"] == "2026-11-20" and measurement["recorded_by"] == "clinician"
    assert measurement["authorisation_id"] == authorisation_id and "binding" not in measurement
    [record] = records(app, "measurement")
    assert record["body"]["measurement"]["id"] == measurement["id"] and record["status"] == 201
    [decision] = records(app, "decision")
    assert record["patient_ref_hash"] == decision["patient_ref_hash"] and record["code"] == "G610"
    assert "MRN-0042" not in json.dumps(record)


@pytest.mark.parametrize(
    "change, field, code",
    [
        ({"unit": "g/dL"}, "unit", "unknown_unit"),
        ({"taken_on": "2026-12-02"}, "taken_on", "out_of_range"),
        ({"taken_on": "20/11/2026"}, "taken_on", "invalid_value"),
        ({"value": 30000}, "value", "out_of_range"),
        ({"value": "7.1"}, "value", "wrong_type"),
        ({"measure": "igg_trough"}, "measure", "unknown_value"),
        ({"taken_on": None}, "taken_on", "missing_field"),
        ({"note": "MRN-0042"}, "note", "unknown_field"),
    ],
)
def test_a_bad_measurement_is_a_400_naming_the_field_and_nothing_is_recorded(
    app, client, tokens, day, change, field, code
):
    authorisation_id = authorise(client, tokens["pharmacist"], day)
    response = measure(client, tokens["pharmacist"], authorisation_id, {**MEASUREMENT, **change})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert (error["field"], error["code"]) == (field, code), error
    assert records(app, "measurement") == []


def test_a_measurement_that_is_not_an_object_is_a_400(client, tokens, day):
    authorisation_id = authorise(client, tokens["pharmacist"], day)
    response = measure(client, tokens["pharmacist"], authorisation_id, [MEASUREMENT])
    assert response.status_code == 400
    assert response.get_json()["error"]["message"] == "the body must be an object, found a list"


def test_a_clinician_records_and_reads_only_the_authorisations_of_their_own_requests(app, client, tokens, day):
    from service.store.tokens import create_token

    other = create_token(app.extensions["instance"].database, "dr-other", "clinician")
    authorisation_id = authorise(client, tokens["clinician"], day)
    assert measure(client, other, authorisation_id).status_code == 403
    assert client.get(f"/v1/authorisations/{authorisation_id}", headers=bearer(other)).status_code == 403
    assert measure(client, tokens["auditor"], authorisation_id).status_code == 403  # not the auditor's role
    assert measure(client, tokens["clinician"], authorisation_id).status_code == 201
    assert measure(client, tokens["pharmacist"], authorisation_id).status_code == 201
    assert measure(client, tokens["admin"], authorisation_id).status_code == 201
    for role in ("clinician", "pharmacist", "auditor", "admin"):
        assert client.get(f"/v1/authorisations/{authorisation_id}", headers=bearer(tokens[role])).status_code == 200


def test_an_authorisation_that_does_not_exist_is_a_404(client, tokens, day):
    missing = "00000000-0000-0000-0000-000000000000"
    response = measure(client, tokens["pharmacist"], missing)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
    assert client.get(f"/v1/authorisations/{missing}", headers=bearer(tokens["pharmacist"])).status_code == 404


def test_an_ended_authorisation_still_takes_measurements(client, tokens, day):
    authorisation_id = authorise(client, tokens["pharmacist"], day, granted_on=TODAY - datetime.timedelta(days=200))
    assert measure(client, tokens["pharmacist"], authorisation_id).status_code == 201
    detail = client.get(f"/v1/authorisations/{authorisation_id}", headers=bearer(tokens["pharmacist"])).get_json()
    assert detail["authorisation"]["active"] is False and len(detail["measurements"]) == 1


def test_measurement_rows_are_bound_to_their_record_and_an_edited_one_is_named_by_verify(app, client, tokens, day):
    authorisation_id = authorise(client, tokens["pharmacist"], day)
    measurement = measure(client, tokens["pharmacist"], authorisation_id).get_json()
    verified = client.get("/v1/audit/verify", headers=bearer(tokens["auditor"])).get_json()
    assert verified["ok"] is True and verified["rows"] == 2  # the authorisation and the measurement
    with app.extensions["instance"].database.begin() as connection:
        connection.execute(
            update(authorisation_measurements)
            .where(authorisation_measurements.c.id == measurement["id"])
            .values(value=12.0)
        )
    verified = client.get("/v1/audit/verify", headers=bearer(tokens["auditor"])).get_json()
    assert verified["ok"] is False
    assert verified["broken_row"]["table"] == "authorisation_measurements"
    assert verified["broken_row"]["id"] == measurement["id"]
    assert "does not match its binding" in verified["reason"]


def test_an_authorisation_bound_before_previous_id_existed_still_verifies(app):
    audit = app.extensions["instance"].audit
    row = {column.name: f"x-{column.name}" for column in authorisations.columns if column.name != "binding"}
    row["record_id"], row["previous_id"] = 7, None
    before = {name: value for name, value in row.items() if name != "previous_id"}  # as bound before 0007
    assert audit.row_intact(authorisations, {**row, "binding": audit.binding(authorisations, before)})
    continued = {**row, "previous_id": "an-earlier-one"}
    assert not audit.row_intact(authorisations, {**continued, "binding": audit.binding(authorisations, before)})


def test_an_authorisation_is_read_with_its_baseline_measurements_oldest_first_and_chain(app, client, tokens, day):
    first = authorise(client, tokens["clinician"], day, granted_on=TODAY - datetime.timedelta(days=170))
    second = authorise(client, tokens["clinician"], day, granted_on=TODAY - datetime.timedelta(days=5))
    with app.extensions["instance"].database.begin() as connection:  # as the continuation slice will set it
        connection.execute(update(authorisations).where(authorisations.c.id == second).values(previous_id=first))
    later = {**MEASUREMENT, "value": 8.2, "unit": "g/L", "taken_on": "2026-11-28"}
    assert measure(client, tokens["clinician"], second, later).status_code == 201
    assert measure(client, tokens["clinician"], second).status_code == 201
    response = client.get(f"/v1/authorisations/{second}", headers=bearer(tokens["clinician"]))
    assert response.status_code == 200
    detail = response.get_json()
    assert detail["authorisation"]["id"] == second and detail["authorisation"]["previous_id"] == first
    assert detail["baseline"] == BASELINE
    assert [(m["taken_on"], m["value"], m["unit"]) for m in detail["measurements"]] == [
        ("2026-11-20", 7.1, "g/L"),
        ("2026-11-28", 8.2, "g/L"),
    ]
    assert [link["id"] for link in detail["chain"]] == [first, second]
    from_first = client.get(f"/v1/authorisations/{first}", headers=bearer(tokens["clinician"])).get_json()
    assert [link["id"] for link in from_first["chain"]] == [first, second] and from_first["measurements"] == []
    [access] = [r for r in records(app, "access") if r["body"]["action"] == "read_authorisation"][:1]  # newest first
    assert access["body"]["path"] == f"/v1/authorisations/{first}" and access["requester"] == "clinician"
    assert "MRN-0042" not in response.get_data(as_text=True)


def due(client, token, query):
    return client.get(f"/v1/authorisations?{query}", headers=bearer(token))


@pytest.fixture
def expiring(app, client, tokens, day) -> dict[str, str]:
    """Authorisations whose last valid day is today + N days, by N (granted 179 - N days ago)."""
    made = {}
    for days_left, ref in ((79, "MRN-1"), (9, "MRN-2"), (30, "MRN-3"), (31, "MRN-4"), (0, "MRN-5"), (-6, "MRN-6")):
        granted_on = TODAY + datetime.timedelta(days=days_left - 179)
        made[days_left] = authorise(client, tokens["pharmacist"], day, granted_on=granted_on, ref=ref)
    made[-40] = authorise(client, tokens["pharmacist"], day, granted_on=TODAY - datetime.timedelta(days=219))
    return made


def test_authorisations_expiring_within_n_days_are_listed_soonest_first(client, tokens, expiring):
    response = due(client, tokens["pharmacist"], "expiring_within_days=30")
    assert response.status_code == 200, response.get_json()
    listed = response.get_json()["authorisations"]
    assert [a["id"] for a in listed] == [expiring[0], expiring[9], expiring[30]]
    assert [a["days_left"] for a in listed] == [0, 9, 30] and all(a["active"] for a in listed)
    assert response.get_json()["next_cursor"] is None


def test_overdue_authorisations_are_listed_when_asked_unless_a_later_one_continues_them(app, client, tokens, expiring):
    listed = due(client, tokens["pharmacist"], "expiring_within_days=30&include_overdue=true").get_json()
    assert [a["days_left"] for a in listed["authorisations"]] == [-6, 0, 9, 30]  # not 40 days ago
    with app.extensions["instance"].database.begin() as connection:
        connection.execute(
            update(authorisations).where(authorisations.c.id == expiring[79]).values(previous_id=expiring[-6])
        )
    listed = due(client, tokens["pharmacist"], "expiring_within_days=30&include_overdue=true").get_json()
    assert [a["days_left"] for a in listed["authorisations"]] == [0, 9, 30]


def test_the_due_list_pages_with_a_cursor_and_filters_by_patient(client, tokens, expiring):
    first = due(client, tokens["pharmacist"], "expiring_within_days=365&limit=2").get_json()
    assert [a["id"] for a in first["authorisations"]] == [expiring[0], expiring[9]]
    second = due(client, tokens["pharmacist"], f"expiring_within_days=365&limit=2&cursor={first['next_cursor']}")
    assert [a["id"] for a in second.get_json()["authorisations"]] == [expiring[30], expiring[31]]
    last = due(
        client, tokens["pharmacist"], f"expiring_within_days=365&limit=2&cursor={second.get_json()['next_cursor']}"
    )
    assert [a["id"] for a in last.get_json()["authorisations"]] == [expiring[79]]
    assert last.get_json()["next_cursor"] is None
    mine = due(client, tokens["pharmacist"], "expiring_within_days=365&patient_ref=MRN-3").get_json()
    assert [a["id"] for a in mine["authorisations"]] == [expiring[30]]


@pytest.mark.parametrize(
    "query, field",
    [
        ("expiring_within_days=0", "expiring_within_days"),
        ("expiring_within_days=366", "expiring_within_days"),
        ("expiring_within_days=soon", "expiring_within_days"),
        ("expiring_within_days=30&include_overdue=yes", "include_overdue"),
        ("expiring_within_days=30&limit=0", "limit"),
        ("expiring_within_days=30&cursor=nonsense", "cursor"),
        ("expiring_within_days=30&sort=latest", "sort"),
        ("", "patient_ref"),  # without expiring_within_days, a patient is required as before
    ],
)
def test_bad_due_list_arguments_are_400s_naming_the_field(client, tokens, day, query, field):
    response = due(client, tokens["pharmacist"], query)
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field


def test_a_patients_authorisations_are_still_listed_by_patient_ref(app, client, tokens, day):
    authorisation_id = authorise(client, tokens["clinician"], day)
    listed = due(client, tokens["clinician"], "patient_ref=MRN-0042").get_json()["authorisations"]
    assert [a["id"] for a in listed] == [authorisation_id] and listed[0]["previous_id"] is None
    with app.extensions["instance"].database.connect() as connection:
        assert connection.execute(select(authorisations.c.previous_id)).scalar() is None


def test_each_due_authorisation_names_the_baseline_measures_not_measured_since_it_started(client, tokens, expiring):
    since = {**MEASUREMENT, "taken_on": "2026-11-20"}  # after every one started
    before = {**MEASUREMENT, "taken_on": "2026-05-01"}  # before the one ending in 30 days started (2026-06-14)
    assert measure(client, tokens["pharmacist"], expiring[9], since).status_code == 201
    assert measure(client, tokens["pharmacist"], expiring[30], before).status_code == 201
    listed = due(client, tokens["pharmacist"], "expiring_within_days=30").get_json()["authorisations"]
    assert {a["id"]: a["unmeasured"] for a in listed} == {
        expiring[0]: ["igg_serum"],
        expiring[9]: [],
        expiring[30]: ["igg_serum"],
    }
