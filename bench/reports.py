"""The stewardship reports over 1,000,000 audit records and 200,000 administrations.

    .venv/bin/python bench/reports.py [--records 1000000] [--administrations 200000] [--database-url URL]
                                      [--instance DIR] [--figures FILE]

`--instance DIR` keeps the SQLite instance folder: the first run builds the history there, later
runs reuse it (and migrate it to the newest schema, as a service starting would) and only time the
reports. With `--database-url`, `--instance` reuses the PostgreSQL database in the same way.
`--figures FILE` saves the year's reports as JSON, or, when FILE exists, checks that they equal it
(run the version before a change with it, then the change, on the same history).

Builds a year of history directly in a fresh database (SQLite in a temporary folder by default; a
PostgreSQL URL to measure there): decisions, pre-approvals whose signed content holds the grams,
weights and dosing profile as the service records them (and their figures, copied as the
service copies them), administration records, and the rows
the reports read (authorisations, administrations, discrepancies and their resolutions, review
cases and resolutions, measurements). Records are inserted in bulk with their content but no
valid chain (the reports never read the chain; bench/audit_scale.py measures verify). Then it
times each report through the HTTP API (Flask test client, as auditor), over the whole year and
over one month, and prints each figure.
"""

import argparse
import datetime
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.store import decision_days, preapproval_figures, report_days, report_patients  # noqa: E402
from service.store.audit import canonical  # noqa: E402
from service.store.tables import (  # noqa: E402
    administrations,
    audit_records,
    authorisation_measurements,
    authorisations,
    discrepancies,
    discrepancy_resolutions,
    review_cases,
    review_resolutions,
)
from service.store.tokens import create_token  # noqa: E402
from service.web.app import create_app  # noqa: E402
from service.workflow.reports import GROUPS  # noqa: E402

START = datetime.datetime(2025, 12, 1, tzinfo=datetime.UTC)
DAYS = 365
OUTCOMES = ["approved", "off_label_with_evidence", "needs_review", "not_supported"]
PRODUCTS = ["Privigen", "Gamunex-C", "Octagam 10%", "Panzyga"]
KINDS = ["dose", "interval", "product", "above_preapproved", "dose_unchecked"]
BATCH = 10_000


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Builder:
    def __init__(self, app, records: int, given: int):
        self.instance = app.extensions["instance"]
        self.engine = self.instance.sql_engine
        rulebook = app.extensions["active_rulebook"].current.rulebook
        self.rules = [(r.id, rulebook.diagnoses[r.diagnosis].codes[0].replace(".", "")) for r in rulebook.rules]
        self.measured = [r for r, measures in rulebook.continuation_measures().items() if measures]
        self.records, self.given = records, given
        self.rng = random.Random(17)
        self.pending: dict = {}
        self.tallies: list = []  # added to report_days a batch at a time, as the service adds them
        self.next_id = 1

    def moment(self, fraction: float) -> datetime.datetime:
        return START + datetime.timedelta(seconds=fraction * DAYS * 86400)

    def add(self, table, row: dict):
        rows = self.pending.setdefault(table, [])
        rows.append(row)
        if len(rows) >= BATCH:
            self.flush(table)

    def tally(self, tally):
        self.tallies.append(tally)
        if len(self.tallies) >= BATCH:
            self.flush(report_days.report_days)

    def flush(self, table=None):
        if table in (None, report_days.report_days) and self.tallies:
            with self.engine.begin() as connection:
                report_days.add(connection, self.tallies)
            self.tallies = []
        for each in [table] if table is not None else list(self.pending):
            rows = self.pending.pop(each, [])
            if rows:
                with self.engine.begin() as connection:
                    connection.execute(insert(each), rows)
                    if each is audit_records:  # counted with the records, as the service does
                        decision_days.add(connection, rows)

    def record(self, kind: str, moment: datetime.datetime, body: dict, **fields) -> int:
        record_id, self.next_id = self.next_id, self.next_id + 1
        columns = {
            "kind": kind,
            "created_at": _stamp(moment),
            "requester": fields.get("requester"),
            "status": fields.get("status", 201),
            "decision_id": fields.get("decision_id"),
            "outcome": fields.get("outcome"),
            "rule_id": fields.get("rule_id"),
            "code": fields.get("code"),
            "matched_by": "code" if fields.get("code") else None,
            "patient_ref_hash": fields.get("patient_ref_hash"),
            "rulebook_version": "2026.11.0",
            "rulebook_digest": "d" * 64,
        }
        content = canonical({"id": record_id, **columns, "body": body})
        self.add(
            audit_records, {"id": record_id, **columns, "content": content, "prev_hash": "0" * 64, "hash": "0" * 64}
        )
        counted = report_patients.of_record(record_id, columns)  # as the service writes it with the record
        if counted is not None:
            self.add(report_patients.report_patients, counted)
        self.tally(report_days.of_decision(record_id, columns))
        return record_id

    def build(self):
        rng = self.rng
        patients = [self.instance.audit.patient_hash(f"MRN-{n:05d}") for n in range(50_000)]
        preapprovals = self.given
        decisions = self.records - preapprovals - self.given
        authorised: list[tuple[str, str, str, str, str]] = []  # id, patient, code, rule, valid_from
        for n in range(decisions):
            moment = self.moment(n / decisions)
            rule_id, code = rng.choice(self.rules)
            outcome = rng.choice(OUTCOMES)
            patient = rng.choice(patients)
            decision_id = str(uuid.UUID(int=n + 1))
            body = {
                "request": {"diagnosis": {"code": code}, "patient": {"age_years": rng.randrange(90)}},
                "decision": {
                    "outcome": outcome,
                    "rule": {"id": rule_id, "title": "A rule"},
                    "rationale": "The rule's rationale, as the committee wrote it. " * 4,
                    "evidence": [{"source": "review", "finding": "A finding. " * 5, "strength": "controlled"}],
                },
            }
            requester = f"clinician-{rng.randrange(40)}"
            self.record(
                "decision",
                moment,
                body,
                requester=requester,
                decision_id=decision_id,
                outcome=outcome,
                rule_id=rule_id,
                code=code,
                patient_ref_hash=patient,
            )
            if outcome in ("approved", "off_label_with_evidence") and rng.random() < 0.5:
                self._authorisation(moment, patient, code, rule_id, decision_id, requester, authorised)
            if outcome == "needs_review":
                self._case(moment, patient, code, decision_id)
        for n in range(preapprovals):
            moment = self.moment(n / preapprovals)
            self._preapproval(moment, rng.choice(authorised))
        for n in range(self.given):
            moment = self.moment(n / self.given)
            self._administration(moment, rng.choice(authorised))
        self.flush()
        with self.engine.begin() as connection:
            connection.execute(text("UPDATE audit_head SET last_id = :last WHERE id = 1"), {"last": self.next_id - 1})
            connection.execute(text("ANALYZE"))  # as a database in service for a while would have

    def _authorisation(self, moment, patient, code, rule_id, decision_id, requester, authorised):
        rng = self.rng
        authorisation_id = str(uuid.uuid4())
        valid_from = moment.date()
        row = {
            "id": authorisation_id,
            "created_at": _stamp(moment),
            "patient_ref_hash": patient,
            "diagnosis_id": None,
            "code": code,
            "basis": "approved",
            "rule_id": rule_id,
            "products": "[]",
            "dosing": json.dumps({"id": "immunomodulatory", "g_per_kg": {"min": 1, "max": 2}}),
            "valid_from": valid_from.isoformat(),
            "valid_until": (valid_from + datetime.timedelta(days=179)).isoformat(),
            "decision_id": decision_id,
            "case_id": None,
            "rulebook_version": "2026.11.0",
            "rulebook_digest": "d" * 64,
            "record_id": None,
            "binding": None,
            "previous_id": authorised[-1][0] if authorised and rng.random() < 0.2 else None,
        }
        self.add(authorisations, row)
        grouped = report_patients.of_authorisation(row, requester)
        self.add(report_patients.report_patients, grouped)
        self.tally(report_days.of_bound(authorisations, row, grouped))
        authorised.append((authorisation_id, patient, code, rule_id, valid_from.isoformat()))
        if rule_id in self.measured and rng.random() < 0.8:
            self.add(
                authorisation_measurements,
                {
                    "id": str(uuid.uuid4()),
                    "authorisation_id": authorisation_id,
                    "created_at": _stamp(moment),
                    "measure": "igg_serum",
                    "value": 7.0,
                    "unit": "g/L",
                    "value_given": 7.0,
                    "unit_given": "g/L",
                    "taken_on": (valid_from + datetime.timedelta(days=rng.randrange(150))).isoformat(),
                    "recorded_by": "pharmacist",
                    "record_id": None,
                    "binding": None,
                },
            )

    def _case(self, moment, patient, code, decision_id):
        rng = self.rng
        case_id = str(uuid.uuid4())
        resolved = moment + datetime.timedelta(hours=rng.expovariate(1 / 40)) if rng.random() < 0.9 else None
        self.add(
            review_cases,
            {
                "id": case_id,
                "opened_at": _stamp(moment),
                "updated_at": _stamp(moment),
                "status": "approved" if rng.random() < 0.9 else "open",
                "requester": "clinician-1",
                "patient_ref_hash": patient,
                "code": code,
                "opening_decision_id": decision_id,
                "latest_decision_id": decision_id,
                "request": "{}",
                "version": 1,
                "reason": "rule_review",
                "due_at": _stamp(moment + datetime.timedelta(hours=72)) if rng.random() < 0.1 else None,
                "first_resolved_at": _stamp(resolved) if resolved else None,  # as the service keeps it
            },
        )
        if resolved:
            self.add(
                review_resolutions,
                {
                    "id": str(uuid.uuid4()),
                    "case_id": case_id,
                    "created_at": _stamp(resolved),
                    "resolution": "approved",
                    "reason": "Meets the criteria",
                    "valid_days": None,
                    "reviewer": "pharmacist",
                    "references_id": None,
                    "record_id": None,
                    "binding": None,
                },
            )

    def _preapproval(self, moment, authorisation):
        rng = self.rng
        authorisation_id, patient, code, rule_id, _ = authorisation
        actual = rng.uniform(45, 130)
        dosing = min(actual, round(actual * 0.9, 1))
        g_per_kg = rng.choice([0.4, 1.0, 2.0, 2.5])
        grams = round(g_per_kg * dosing, 1)
        body = {
            "order": {
                "patient": {"ref_hash": patient},
                "product": rng.choice(PRODUCTS),
                "dose": {"g_per_kg": g_per_kg},
            },
            "result": {
                "dispense": g_per_kg <= 2.0,
                "reasons": [
                    {"check": c, "ok": True, "message": f"the {c} check passed, in words. " * 3} for c in KINDS
                ],
                "authorisation": {"id": authorisation_id, "rule_id": rule_id, "code": code},
                "decision": None,
                "dosing_profile": {
                    "id": "immunomodulatory",
                    "g_per_kg": {"min": 1.0, "max": 2.0},
                    "interval_days": {"min": 21, "max": None},
                    "courses": None,
                    "monthly": False,
                },
                "weight": {"actual_kg": round(actual, 1), "dosing_kg": dosing, "basis": "adjusted weight"},
                "dose": {"g_per_kg": g_per_kg, "grams": grams, "rounded_grams": 5 * round(grams / 5), "vials": []},
            },
        }
        record_id = self.record(
            "preapproval",
            moment,
            body,
            requester="pharmacist",
            status=200,
            rule_id=rule_id,
            code=code,
            patient_ref_hash=patient,
        )
        table, figures = preapproval_figures.row(body)  # as the service writes them with the record
        copied = {"created_at": _stamp(moment), "requester": "pharmacist", "outcome": None, "rule_id": rule_id}
        row = {**figures, **copied, "code": code, "patient_ref_hash": patient, "record_id": record_id}
        self.add(table, row)
        self.tally(report_days.of_bound(table, row, None))

    def _administration(self, moment, authorisation):
        rng = self.rng
        authorisation_id, patient, code, rule_id, _ = authorisation
        administration_id = str(uuid.uuid4())
        product = rng.choice(PRODUCTS)
        given = float(rng.choice([30, 40, 60, 80, 120, 160]))
        wasted = float(rng.choice([0, 0, 0, 2, 5]))
        record_id = self.record(
            "administration",
            moment,
            {"administration": {"id": administration_id}},
            requester="pharmacist",
            rule_id=rule_id,
            code=code,
            patient_ref_hash=patient,
        )
        given_row = {
            "id": administration_id,
            "created_at": _stamp(moment),
            "source_id": None,
            "authorisation_id": authorisation_id,
            "preapproval_id": None,
            "patient_ref_hash": patient,
            "code": code,
            "product": product,
            "lot": "L1",
            "vials": "[]",
            "grams_given": given,
            "grams_wasted": wasted,
            "given_on": moment.date().isoformat(),
            "site": "Day unit",
            "recorded_by": "pharmacist",
            "price_per_g": None if product == "Panzyga" else 60.0,
            "currency": None if product == "Panzyga" else "USD",
            "record_id": record_id,
            "binding": None,
        }
        self.add(administrations, given_row)
        grouped = report_patients.of_administration(given_row, rule_id, "approved")
        self.add(report_patients.report_patients, grouped)
        self.tally(report_days.of_bound(administrations, given_row, grouped))
        if rng.random() < 0.1:
            discrepancy_id = str(uuid.uuid4())
            self.add(
                discrepancies,
                {
                    "id": discrepancy_id,
                    "administration_id": administration_id,
                    "created_at": _stamp(moment),
                    "kind": rng.choice(KINDS),
                    "message": "what differed",
                    "expected": "x",
                    "actual": "y",
                    "record_id": record_id,
                    "binding": None,
                },
            )
            if rng.random() < 0.7:
                self.add(
                    discrepancy_resolutions,
                    {
                        "id": str(uuid.uuid4()),
                        "discrepancy_id": discrepancy_id,
                        "created_at": _stamp(moment),
                        "reason": "agreed",
                        "resolved_by": "pharmacist",
                        "record_id": None,
                        "binding": None,
                    },
                )


def timed(label: str, action):
    """Wall time, and this process's CPU time (the database's work too: SQLite runs in process),
    which a loaded machine inflates far less."""
    started, cpu = time.perf_counter(), time.process_time()
    result = action()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"{label:<72} {wall * 1000:9.1f} ms (cpu {cpu * 1000:7.1f} ms)")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--administrations", type=int, default=200_000)
    parser.add_argument(
        "--database-url", help="a PostgreSQL URL (an empty schema); default: SQLite in a temporary folder"
    )
    parser.add_argument(
        "--instance",
        help="an instance folder to keep: built on the first run, reused (and migrated) on later runs",
    )
    parser.add_argument(
        "--figures",
        help="a JSON file of the year's reports: written when absent, else the reports must equal it "
        "(to check that a change gives the same figures as the version before)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.instance or scratch)
        built = folder / "bench-reports-built"
        folder.mkdir(parents=True, exist_ok=True)
        config = {"INSTANCE_PATH": str(folder), "WARM": False}
        if args.database_url:
            config["DATABASE_URL"] = args.database_url
        app = timed("start the service (opening and migrating the database)", lambda: create_app(config))
        token = create_token(app.extensions["instance"].sql_engine, f"auditor-bench-{uuid.uuid4()}", "auditor")
        headers = {"Authorization": f"Bearer {token}"}
        print(f"database: {app.extensions['instance'].sql_engine.dialect.name}")
        if built.exists():
            print(f"reusing the history built in {folder}: {built.read_text().strip()}")
        else:
            builder = Builder(app, args.records, args.administrations)
            timed(
                f"build {args.records:,} audit records and {args.administrations:,} administrations",
                builder.build,
            )
            if args.instance:
                built.write_text(f"{args.records} records, {args.administrations} administrations\n")
        client = app.test_client()
        year, month = "since=2025-12-01&until=2026-11-30", "since=2026-06-01&until=2026-06-30"
        for query in (
            f"utilisation?{year}&group_by=diagnosis",
            f"utilisation?{year}&group_by=rule",
            f"utilisation?{year}&group_by=outcome",
            f"utilisation?{year}&group_by=evidence",
            f"utilisation?{year}&group_by=product",
            f"utilisation?{year}&group_by=requester",
            f"utilisation?{year}&group_by=month",
            f"utilisation.csv?{year}&group_by=diagnosis",
            f"utilisation?{month}&group_by=diagnosis",
            f"stewardship?{year}",
            f"stewardship?{month}",
        ):
            response = timed(
                f"GET /v1/reports/{query}", lambda q=query: client.get(f"/v1/reports/{q}", headers=headers)
            )
            assert response.status_code == 200, response.get_data(as_text=True)
        report = client.get(f"/v1/reports/stewardship?{year}", headers=headers).get_json()
        total = client.get(f"/v1/reports/utilisation?{year}", headers=headers).get_json()["total"]
        print(
            f"year: {total['requests']:,} decisions, {total['preapprovals']:,} pre-approvals, "
            f"{total['administrations']:,} administrations, {total['patients']:,} patients, "
            f"{total['grams_opened']:,.0f} g opened; median review {report['review_turnaround']['median_hours']} h, "
            f"p90 {report['review_turnaround']['p90_hours']} h, adherence {report['adherence']['share_within']}"
        )
        if args.figures:
            _same_figures(Path(args.figures), client, headers, year)
        app.extensions["active_rulebook"].close()


def _same_figures(path: Path, client, headers, year: str):
    """The year's utilisation by each grouping and the stewardship report: saved, or checked equal."""
    queries = [f"utilisation?{year}&group_by={group}" for group in GROUPS] + [f"stewardship?{year}"]
    found = {q: client.get(f"/v1/reports/{q}", headers=headers).get_json() for q in queries}
    if not path.exists():
        path.write_text(json.dumps(found, indent=1, sort_keys=True))
        print(f"figures saved to {path}")
        return
    differ = [q for q, report in json.loads(path.read_text()).items() if found.get(q) != report]
    assert not differ, f"figures differ from {path}: {differ}"
    print(f"figures equal to {path}: {len(queries)} reports")


if __name__ == "__main__":
    main()
