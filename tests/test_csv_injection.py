"""CSV formula injection: every CSV the service writes opens in a spreadsheet as text, not formulas."""

import csv
import io
import re
from urllib.parse import unquote

from click.testing import CliRunner

import service.cli.commands
from service.cli import main
from service.workflow.csv_out import Writer

from .conftest import bearer, csrf_token, sign_in

# What a spreadsheet would run, one per dangerous leading character (OWASP's list).
FORMULAS = ["=1+1", "+1+1", "-1+1", "@SUM(1)", "\t=1+1", "\r=1+1"]
ORDINARY = ["MRN-0042", "polymyositis", "M33.20", "a reason - with a dash", "3", "", "Privigen 1=1"]


def _read(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_the_csv_writer_quotes_every_formula_start_and_leaves_other_values_alone():
    buffer = io.StringIO()
    writer = Writer(buffer)
    writer.writerow(FORMULAS)
    writer.writerow(ORDINARY)
    writer.writerow([12, -3, 2.5, None])  # numbers the service writes stay numbers
    formulas, ordinary, numbers = _read(buffer.getvalue())
    assert formulas == ["'" + f for f in FORMULAS]
    assert ordinary == ORDINARY
    assert numbers == ["12", "-3", "2.5", ""]


def test_the_audit_csv_neutralises_a_requester_name_that_is_a_formula(app, client, tokens):
    audit = app.extensions["instance"].audit
    for name in FORMULAS:
        audit.append("decision", {}, requester=name, status=201)
    for path in ("/v1/audit.csv", "/console/audit.csv"):
        if path.startswith("/console"):
            sign_in(client, tokens["auditor"])
            response = client.get(path)
        else:
            response = client.get(path, headers=bearer(tokens["auditor"]))
        assert response.status_code == 200
        rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))
        assert sorted(r["requester"] for r in rows if r["kind"] == "decision") == sorted("'" + f for f in FORMULAS)
        assert all(not r["created_at"].startswith("'") and r["id"].isdigit() for r in rows)


def test_the_console_preapproval_results_csv_neutralises_patient_references_and_diagnosis_texts(client, tokens):
    sign_in(client, tokens["pharmacist"])
    # The infusion list is read with its cells trimmed, so a leading tab or CR cannot arrive here.
    dangerous = [f for f in FORMULAS if f[0] not in "\t\r"]
    upload = "patient_ref,age_years,diagnosis_text,product\n" + "".join(f"{f},50,{f},Privigen\n" for f in dangerous)
    upload += "MRN-0042,50,polymyositis,Privigen\n"
    response = client.post(
        "/console/preapproval/batch",
        content_type="multipart/form-data",
        data={
            "csrf_token": csrf_token(client, "/console/preapproval"),
            "file": (io.BytesIO(upload.encode()), "list.csv"),
        },
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    link = re.search(r'href="data:text/csv;charset=utf-8,([^"]*)"', response.get_data(as_text=True)).group(1)
    header, *rows = _read(unquote(link))
    assert header[:3] == ["row", "patient_ref", "order"]
    assert [(r[1], r[2]) for r in rows[:-1]] == [("'" + f, f"'{f} Privigen") for f in dangerous]
    assert rows[-1][1:3] == ["MRN-0042", "polymyositis Privigen"]
    assert all(not cell.startswith(tuple("=+-@\t\r")) for row in rows for cell in row)


def test_preapprove_output_csv_neutralises_reasons(tmp_path, monkeypatch):
    monkeypatch.setenv("FORMULARY_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("FORMULARY_DATABASE_URL", raising=False)
    # Any text of a result (an error message quoting what was typed) that starts like a formula.
    results = [{"row": n, "error": {"message": f}} for n, f in enumerate(FORMULAS, start=2)]
    results.append({"row": 99, "error": {"message": "row 99: age_years must be a number"}})
    monkeypatch.setattr(service.cli.commands, "check_batch", lambda *args, **kwargs: results)
    orders = tmp_path / "orders.csv"
    orders.write_text("patient_ref,diagnosis_code\nMRN-1,M33.20\n")
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(main, ["preapprove", str(orders), "--output", str(out)])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as written:  # a CR inside a quoted cell stays a CR
        header, *rows = _read(written.read())
    assert header == ["row", "dispense", "reasons"]
    assert rows == [[str(n), "ERROR", "'" + f] for n, f in enumerate(FORMULAS, start=2)] + [
        ["99", "ERROR", "row 99: age_years must be a number"]
    ]
