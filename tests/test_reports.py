"""Stewardship reports (issue 17): each figure of the utilisation and stewardship reports checked
against a small hand-built history (decisions, pre-approvals, authorisations, administrations with
discrepancies, review cases, a measurement), the arguments, the roles and the CSV; on SQLite and
PostgreSQL."""

import csv
import datetime
import io
import shutil

import pytest
import yaml
from alembic import command
from alembic.config import Config
from sqlalchemy import func, insert, select, update

from service.store import preapproval_figures as preapproval_figures_module
from service.store.database import MIGRATIONS, writing
from service.store.tables import (
    administrations,
    audit_records,
    authorisations,
    decision_days,
    preapproval_figures,
    report_days,
    report_patients,
    review_cases,
    review_resolutions,
)
from service.web.openapi import DOCUMENT

from .conftest import TEST_RULEBOOK, bearer
from .test_administrations_api import GIVEN, ORDER  # the same patient, order and infusion
from .test_openapi import _conforms

TODAY = datetime.date(2026, 11, 22)
PRICE = {"amount": 50, "currency": "USD", "source": "test: a local contract price", "as_of": "2026-11-01"}


@pytest.fixture
def priced_rulebook(tmp_path):
    """The test rulebook with a local price for Privigen (and none for Octagam 10%)."""
    folder = tmp_path / "rulebook"
    shutil.copytree(TEST_RULEBOOK.parent, folder)
    products = folder / "data" / "products.yaml"
    data = yaml.safe_load(products.read_text())
    for product in data["products"]:
        if product["name"] == "Privigen":
            product["price_per_g"] = PRICE
    products.write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / TEST_RULEBOOK.name


@pytest.fixture
def app(make_app, priced_rulebook):
    return make_app(RULEBOOK=str(priced_rulebook))


def _post(client, token, path, body, status=201):
    response = client.post(path, json=body, headers=bearer(token))
    assert response.status_code == status, response.get_json()
    return response.get_json()


@pytest.fixture
def history(client, tokens, day):
    """Four patients' requests over four days, with what each report figure is checked against."""
    pharmacist, clinician = tokens["pharmacist"], tokens["clinician"]
    day.set(TODAY)
    # MRN-0042, polymyositis with corticosteroids: a pre-approval decides (off-label with evidence),
    # grants an authorisation and computes 162 g exact, 160 g in vials, for 81 of 90 kg.
    first = _post(client, pharmacist, "/v1/preapprovals", ORDER, 200)
    assert first["dose"]["grams"] == 162.0 and first["dose"]["rounded_grams"] == 160.0
    # An order above the profile's 2 g/kg maximum: held, under the authorisation (no new decision).
    above = _post(client, pharmacist, "/v1/preapprovals", ORDER | {"dose": {"g_per_kg": 3.0, "interval_days": 28}}, 200)
    assert above["dispense"] is False
    _post(client, pharmacist, "/v1/administrations", GIVEN | {"preapproval_id": first["preapproval_id"]})
    # Octagam 180 g under the same authorisation: product, dose and above_preapproved discrepancies.
    wrong = _post(
        client,
        pharmacist,
        "/v1/administrations",
        GIVEN
        | {
            "authorisation_id": first["authorisation"]["id"],
            "product": "Octagam 10%",
            "vials": [{"size_g": 20, "count": 9}],
            "grams_given": 178,
            "grams_wasted": 2,
        },
    )
    assert {d["kind"] for d in wrong["discrepancies"]} == {"product", "dose", "above_preapproved"}
    _post(client, pharmacist, f"/v1/discrepancies/{wrong['discrepancies'][0]['id']}/resolution", {"reason": "agreed"})
    # MRN-0044, polymyositis without corticosteroids: not supported.
    _post(
        client,
        clinician,
        "/v1/decisions",
        ORDER | {"patient": {"ref": "MRN-0044", "age_years": 60}, "therapies": {"concurrent": []}},
    )
    # MRN-0045, adult GBS: needs review; resolved two days later (48 hours).
    case = _post(
        client,
        clinician,
        "/v1/decisions",
        {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 40, "ref": "MRN-0045"}},
    )
    # MRN-0046, adult GBS, urgent: a provisional authorisation, its review due in 72 hours; never resolved.
    _post(
        client,
        clinician,
        "/v1/decisions",
        {
            "diagnosis": {"code": "G61.0"},
            "patient": {"age_years": 40, "ref": "MRN-0046"},
            "urgent": {"reason": "Rapidly progressing weakness; the neurologist cannot wait for a review."},
        },
    )
    # MRN-0047, primary immunodeficiency on a labelled product: approved, an authorisation whose
    # rule names outcome measures; one measurement recorded.
    pi = _post(
        client,
        clinician,
        "/v1/decisions",
        {"diagnosis": {"code": "D80.0"}, "patient": {"age_years": 30, "ref": "MRN-0047"}, "product": "Privigen"},
    )
    assert pi["outcome"] == "approved" and pi["authorisation_id"]
    _post(
        client,
        pharmacist,
        f"/v1/authorisations/{pi['authorisation_id']}/measurements",
        {"measure": "igg_serum", "value": 7.1, "unit": "g/L", "taken_on": "2026-11-22"},
    )
    day.set(TODAY + datetime.timedelta(days=2))
    _post(
        client,
        pharmacist,
        f"/v1/reviews/{case['review_case_id']}/resolution",
        {"resolution": "denied", "reason": "Not for adults here"},
    )
    day.set(TODAY + datetime.timedelta(days=4))
    return {"pi_authorisation": pi["authorisation_id"]}


def _get(client, token, path, status=200):
    """The response, checked against the OpenAPI document."""
    response = client.get(path, headers=bearer(token))
    assert response.status_code == status, response.get_data(as_text=True)
    _conforms(DOCUMENT, path.split("?")[0], "get", response)
    return response


def test_utilisation_by_diagnosis_counts_what_was_asked_authorised_given_and_what_it_cost(client, tokens, history):
    report = _get(client, tokens["auditor"], "/v1/reports/utilisation?since=2026-11-01&until=2026-11-30").get_json()
    assert report["period"] == {"since": "2026-11-01", "until": "2026-11-30"} and report["group_by"] == "diagnosis"
    groups = {g["key"]: g for g in report["groups"]}
    assert set(groups) == {"gbs", "polymyositis", "primary_immunodeficiency"}
    myositis = groups["polymyositis"]
    assert myositis["label"] == "Polymyositis" and myositis["requests"] == 2 and myositis["preapprovals"] == 2
    assert myositis["decisions"] == {"approved": 0, "off_label_with_evidence": 1, "needs_review": 0, "not_supported": 1}
    assert (myositis["authorisations"], myositis["administrations"], myositis["patients"]) == (1, 2, 2)
    assert (myositis["grams_authorised"], myositis["grams_given"], myositis["grams_wasted"]) == (160.0, 338.0, 2.0)
    # 160 g of Privigen at 50 USD/g; the 180 g of Octagam opened have no price, and say so.
    assert myositis["cost"] == [{"currency": "USD", "amount": 8000.0}] and myositis["grams_without_price"] == 180.0
    assert myositis["cost_note"] == "180 g given with no price are not in the cost"
    gbs = groups["gbs"]
    assert gbs["decisions"]["needs_review"] == 2 and gbs["authorisations"] == 1 and gbs["patients"] == 2
    assert gbs["cost"] == [] and gbs["grams_given"] == 0.0
    total = report["total"]
    assert (total["requests"], total["patients"], total["authorisations"], total["grams_opened"]) == (5, 5, 3, 340.0)


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        (
            "outcome",  # the second pre-approval made no decision (the authorisation covered it)
            {
                "off_label_with_evidence": 1,
                None: 1,
                "not_supported": 1,
                "needs_review": 2,
                "approved": 1,
                "provisional": 1,
            },
        ),
        ("evidence", {"controlled": 3, "not_addressed": 2}),
        (
            "rule",
            {
                "polymyositis-with-corticosteroids": 1,
                "polymyositis-without-corticosteroids": 1,
                "gbs-adults": 2,
                "pi-labelled": 1,
            },
        ),
        ("requester", {"clinician": 4, "pharmacist": 1}),
        ("month", {"2026-11": 5}),
        ("product", {"Privigen": 1, "Octagam 10%": 1}),
    ],
)
def test_utilisation_groups_by_each_grouping(client, tokens, history, group_by, expected):
    report = _get(
        client, tokens["pharmacist"], f"/v1/reports/utilisation?since=2026-11-01&until=2026-11-30&group_by={group_by}"
    )
    groups = report.get_json()["groups"]
    # Patients per group: every source's patients, counted once.
    assert {g["key"]: g["patients"] for g in groups} == expected


def test_stewardship_figures_come_from_what_was_recorded(client, tokens, history):
    report = _get(client, tokens["admin"], "/v1/reports/stewardship?since=2026-11-01&until=2026-11-30").get_json()
    decisions = report["decisions"]
    assert decisions["total"] == 5
    assert decisions["by_outcome"]["needs_review"] == {"count": 2, "share": 0.4}
    assert decisions["by_outcome"]["approved"] == {"count": 1, "share": 0.2}
    assert decisions["by_evidence"] == {
        "controlled": {"count": 3, "share": 0.6},
        "not_addressed": {"count": 2, "share": 0.4},
    }
    adherence = report["adherence"]
    assert (adherence["administrations"], adherence["checked"], adherence["within_dose_and_interval"]) == (2, 2, 1)
    assert adherence["share_within"] == 0.5 and adherence["above_maximum"] == 1
    preapprovals = report["preapprovals"]
    assert (preapprovals["preapprovals"], preapprovals["dispensed"], preapprovals["orders_above_maximum"]) == (2, 1, 1)
    # 2 g/kg x (90 kg actual - 81 kg adjusted) = 18 g; 162 g exact became 160 g in vials.
    assert preapprovals["weight_saving"]["grams_saved"] == 18.0
    assert preapprovals["rounding"] == preapprovals["rounding"] | {
        "grams_exact": 162.0,
        "grams_rounded": 160.0,
        "grams_difference": -2.0,
    }
    turnaround = report["review_turnaround"]
    assert (turnaround["cases_opened"], turnaround["resolved"]) == (2, 1)
    assert turnaround["median_hours"] == 48.0 and turnaround["p90_hours"] == 48.0
    assert turnaround["overdue_open"] == 1  # the urgent case, due in 72 hours, open after four days
    assert [b["cases"] for b in turnaround["buckets"]] == [0, 1, 0, 0]
    # Nothing is due for renewal in November: no capture figure, said as none rather than 0%.
    assert report["outcome_capture"]["authorisations"] == 0 and report["outcome_capture"]["share"] is None
    discrepancies = report["discrepancies"]
    assert discrepancies["open"] == 2 and discrepancies["recorded_in_period"] == 3


def test_outcome_capture_counts_authorisations_due_with_a_measurement(app, client, tokens, history):
    with app.extensions["instance"].sql_engine.connect() as connection:
        until = connection.execute(
            select(authorisations.c.valid_until).where(authorisations.c.id == history["pi_authorisation"])
        ).scalar_one()
    report = _get(client, tokens["admin"], f"/v1/reports/stewardship?since=2026-11-01&until={until}").get_json()
    capture = report["outcome_capture"]
    # Only the PI authorisation's rule names outcome measures; it was measured once.
    assert (capture["authorisations"], capture["with_measurement"], capture["share"]) == (1, 1, 1.0)
    assert capture["meets_target"] is True and capture["target"] == 0.9


def _figures(engine) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(select(preapproval_figures).order_by(preapproval_figures.c.record_id))
        return [dict(row._mapping) for row in rows]


def test_a_preapproval_writes_its_figures_and_migration_0015_rebuilds_the_same_from_the_records(app, history):
    engine = app.extensions["instance"].database
    written = _figures(engine)
    weights = {"actual_kg": 90.0, "dosing_kg": 81.0, "max_g_per_kg": 2.0}
    figures = ("dispense", *preapproval_figures_module.PATHS)
    assert [{k: v for k, v in row.items() if k in figures} for row in written] == [
        {"dispense": True, "grams": 162.0, "rounded_grams": 160.0, "g_per_kg": 2.0, "ordered_g_per_kg": 2.0, **weights},
        # Held above the maximum: the dose at the order's 3 g/kg, with no vials to round it to.
        {"dispense": False, "grams": 243.0, "rounded_grams": None, "g_per_kg": 3.0, "ordered_g_per_kg": 3.0, **weights},
    ]
    # With the record's indexed fields the reports group by, copied from the record.
    with engine.connect() as connection:
        records = connection.execute(
            select(audit_records).where(audit_records.c.id.in_([row["record_id"] for row in written]))
        ).all()
    copied = ("created_at", "requester", "outcome", "rule_id", "code", "patient_ref_hash")
    assert [{k: row[k] for k in copied} for row in written] == [
        {k: getattr(record, k) for k in copied} for record in sorted(records, key=lambda r: r.id)
    ]
    assert written[0]["code"] == "M3320" and written[0]["requester"] == "pharmacist"
    _rebuilt(engine, "0014")
    assert _figures(engine) == written


def _rebuilt(engine, before: str):
    """Migrate down to `before` and up again: the derived tables rebuilt from what is recorded."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with writing(engine) as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, before)
        command.upgrade(config, "head")


def _counted(engine) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(report_patients).order_by(report_patients.c.source, report_patients.c.source_id)
        )
        return [dict(row._mapping) for row in rows]


def test_each_row_naming_a_patient_is_counted_as_written_and_migration_0016_derives_the_same(app, history):
    engine = app.extensions["instance"].database
    written = _counted(engine)
    by_source = {}
    for row in written:
        by_source.setdefault(row["source"], []).append(row)
    # Five decisions (the pre-approval's and four patients'), two pre-approvals, two administrations
    # and the authorisations granted (the pre-approval's, the urgent one's, primary immunodeficiency's).
    assert {source: len(rows) for source, rows in by_source.items()} == {
        "administration": 2,
        "authorisation": 3,
        "decision": 5,
        "preapproval": 2,
    }
    with engine.connect() as connection:
        granted = connection.execute(select(authorisations)).all()
        requesters = dict(connection.execute(select(audit_records.c.decision_id, audit_records.c.requester)).all())
    # An authorisation by its decision's requester; what was given by its authorisation's rule and basis.
    assert sorted((r["source_id"], r["requester"], r["rule_id"]) for r in by_source["authorisation"]) == sorted(
        (u.id, requesters[u.decision_id], u.rule_id) for u in granted
    )
    first = next(u for u in granted if u.id != history["pi_authorisation"] and u.code == "M3320")
    assert {(r["rule_id"], r["outcome"], r["product"], r["requester"]) for r in by_source["administration"]} == {
        (first.rule_id, first.basis, "Privigen", None),
        (first.rule_id, first.basis, "Octagam 10%", None),
    }
    assert all(r["product"] is None for r in written if r["source"] != "administration")
    _rebuilt(engine, "0015")
    assert _counted(engine) == written


def _days(engine) -> list[dict]:
    with engine.connect() as connection:
        t = decision_days.c
        return [
            dict(row._mapping)
            for row in connection.execute(select(decision_days).order_by(t.day, t.outcome, t.rule_id))
        ]


def test_each_decision_is_counted_into_its_day_as_written_and_migration_0017_derives_the_same(app, history):
    engine = app.extensions["instance"].database
    written = _days(engine)
    with engine.connect() as connection:
        a = audit_records.c
        decided = connection.execute(select(a.created_at, a.outcome, a.rule_id).where(a.kind == "decision")).all()
    # One count a (day, outcome, rule), summing to the decision records; a refusal counts nowhere.
    expected: dict[tuple, int] = {}
    for created_at, outcome, rule_id in decided:
        key = (created_at[:10], outcome or "", rule_id or "")
        expected[key] = expected.get(key, 0) + 1
    assert {(r["day"], r["outcome"], r["rule_id"]): r["decisions"] for r in written} == expected
    assert sum(expected.values()) == len(decided) >= 5
    _rebuilt(engine, "0016")
    assert _days(engine) == written


def _tallied(engine) -> dict[tuple, dict]:
    with engine.connect() as connection:
        rows = connection.execute(select(report_days)).all()
    key = ("grouping", "day", "value", "currency")
    return {
        tuple(row._mapping[k] for k in key): {k: v for k, v in row._mapping.items() if k not in key} for row in rows
    }


def test_each_row_is_added_to_its_day_under_each_grouping_as_written_and_migration_0018_derives_the_same(app, history):
    engine = app.extensions["instance"].database
    written = _tallied(engine)
    with engine.connect() as connection:
        decided = connection.execute(select(audit_records.c.outcome).where(audit_records.c.kind == "decision")).all()
        granted = connection.execute(select(authorisations.c.id)).all()
    days = {key: figures for key, figures in written.items() if key[0] == "outcome"}  # every row has one
    assert sum(f["requests"] for f in days.values()) == len(decided) == 5
    assert sum(f["decided_not_supported"] for f in days.values()) == 1
    assert sum(f["authorisations"] for f in days.values()) == len(granted) == 3
    # Two pre-approvals, one dispensing 160 g in vials; Privigen 160 g priced at 50 USD/g, Octagam not priced.
    assert sum(f["preapprovals"] for f in days.values()) == 2
    assert sum(f["grams_authorised"] for f in days.values()) == 160.0
    costs = {}
    for key, f in days.items():
        if f["administrations"]:
            costs[key[3]] = f["cost"] if key[3] not in costs else costs[key[3]] + f["cost"]
    assert costs == {"USD": 160 * 50, "": None}
    assert sum(f["grams_without_price"] for f in days.values()) == 180.0
    # What was given is not grouped by requester, and only what was given is grouped by product.
    assert not any(f["administrations"] for key, f in written.items() if key[0] == "requester")
    assert {key[2] for key in written if key[0] == "product"} == {"Privigen", "Octagam 10%"}
    assert all(f["requests"] == f["preapprovals"] == 0 for key, f in written.items() if key[0] == "product")
    _rebuilt(engine, "0017")
    assert _tallied(engine) == written


def test_rows_bound_once_checked_are_counted_once(app, history):
    """Binding rows the service wrote rewrites them as they were: their figures are not added again.
    A row written outside the service, counted nowhere until then, is added when it is bound."""
    engine, audit = app.extensions["instance"].database, app.extensions["instance"].audit
    before = _tallied(engine)
    with engine.begin() as connection:
        given = dict(connection.execute(select(administrations).limit(1)).one()._mapping)
        connection.execute(insert(administrations).values(given | {"id": "outside-1", "source_id": "outside-1"}))
        connection.execute(update(authorisations).values(record_id=None, binding=None))
        connection.execute(update(administrations).values(record_id=None, binding=None))
    audit.bind_existing(audit.unbound_rows(), "admin")
    after = _tallied(engine)
    changed = {key: (before.get(key), figures) for key, figures in after.items() if before.get(key) != figures}
    assert {key[0] for key in changed} == {"code", "rule_id", "outcome", "product"}
    assert all(
        f["administrations"] - (b or {"administrations": 0})["administrations"] == 1 for b, f in changed.values()
    )


def _firsts(engine) -> dict:
    with engine.connect() as connection:
        return dict(connection.execute(select(review_cases.c.id, review_cases.c.first_resolved_at)).all())


def test_a_case_keeps_its_first_resolutions_time_and_migration_0019_derives_the_same(app, client, tokens, history, day):
    engine = app.extensions["instance"].database
    [(urgent,)] = engine.connect().execute(select(review_cases.c.id).where(review_cases.c.status == "open")).all()
    asked = _post(
        client,
        tokens["pharmacist"],
        f"/v1/reviews/{urgent}/resolution",
        {"resolution": "more_information", "reason": "Which antibodies?"},
    )
    day.set(TODAY + datetime.timedelta(days=5))
    _post(client, tokens["pharmacist"], f"/v1/reviews/{urgent}/resolution", {"resolution": "denied", "reason": "No"})
    firsts = _firsts(engine)
    with engine.connect() as connection:
        r = review_resolutions.c
        expected = dict(connection.execute(select(r.case_id, func.min(r.created_at)).group_by(r.case_id)).all())
    assert firsts[urgent] == asked["resolutions"][0]["created_at"] == expected[urgent]  # the first, not the last
    assert {case: at for case, at in firsts.items() if at} == expected and len(expected) == 2
    _rebuilt(engine, "0018")
    assert _firsts(engine) == firsts


def test_a_period_with_nothing_recorded_reports_zeros_and_no_shares(client, tokens, history):
    report = _get(client, tokens["admin"], "/v1/reports/stewardship?since=2025-01-01&until=2025-01-31").get_json()
    assert report["decisions"]["total"] == 0 and report["decisions"]["by_outcome"]["approved"]["share"] is None
    assert report["review_turnaround"]["median_hours"] is None and report["adherence"]["share_within"] is None
    utilisation = _get(client, tokens["admin"], "/v1/reports/utilisation?since=2025-01-01&until=2025-01-31").get_json()
    assert utilisation["groups"] == [] and utilisation["total"]["patients"] == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("group_by=ward", "group_by"),
        ("since=2026-13-01", "since"),
        ("until=yesterday", "until"),
        ("since=2026-11-30&until=2026-11-01", "since"),
        ("since=2000-01-01&until=2026-11-01", "since"),
        ("patient_ref=MRN-1", "patient_ref"),
    ],
)
def test_a_bad_report_argument_is_a_400_naming_the_field(client, tokens, query, field):
    for path in ("/v1/reports/utilisation", "/v1/reports/utilisation.csv", "/v1/reports/stewardship"):
        if field == "group_by" and path.endswith("stewardship"):
            continue
        error = _get(client, tokens["auditor"], f"{path}?{query}", 400).get_json()["error"]
        assert error["field"] == field, (path, error)
        assert "MRN-1" not in error["message"]


@pytest.mark.parametrize("role", ["clinician", "committee"])
def test_reports_are_for_auditors_pharmacists_and_admins(client, tokens, role):
    for path in ("/v1/reports/utilisation", "/v1/reports/utilisation.csv", "/v1/reports/stewardship"):
        assert client.get(path, headers=bearer(tokens[role])).status_code == 403
        assert client.get(path).status_code == 401


def test_the_utilisation_csv_has_a_row_a_group_and_its_texts_cannot_run_as_formulas(app, client, tokens, history, day):
    day.set(TODAY)
    audit = app.extensions["instance"].audit
    for name in ("=1+1", "@SUM(1)"):  # a requester name a spreadsheet would run (as test_csv_injection does)
        audit.append("decision", {}, requester=name, status=201, outcome="approved")
    response = _get(
        client, tokens["auditor"], "/v1/reports/utilisation.csv?since=2026-11-01&until=2026-11-30&group_by=requester"
    )
    assert response.mimetype == "text/csv"
    assert "utilisation-requester-2026-11-01-2026-11-30.csv" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    by_group = {row["group"]: row for row in rows}
    assert set(by_group) == {"'=1+1", "'@SUM(1)", "clinician", "pharmacist", "total"}
    assert by_group["'=1+1"]["label"] == "'=1+1" and by_group["'=1+1"]["decisions_approved"] == "1"
    assert by_group["clinician"]["requests"] == "4" and by_group["total"]["patients"] == "5"
    assert by_group["pharmacist"]["grams_authorised"] == "160.0" and by_group["pharmacist"]["cost"] == ""
