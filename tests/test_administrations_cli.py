"""formulary administrations import|list and formulary discrepancies list|resolve."""

from click.testing import CliRunner

from service.cli import main
from service.store.tokens import create_token

from .conftest import bearer

HEADER = "dispense_id,authorisation_id,patient_ref,product,lot,vials,grams_given,grams_wasted,given_on,site\n"


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _authorisation(app, ref: str) -> str:
    token = create_token(app.extensions["instance"].database, "dr-a", "clinician")
    body = {"diagnosis": {"code": "G61.0"}, "patient": {"age_years": 8, "ref": ref}}
    decision = app.test_client().post("/v1/decisions", json=body, headers=bearer(token)).get_json()
    assert decision["authorisation_id"], decision
    return decision["authorisation_id"]


def _export(tmp_path, authorisation_id: str):
    path = tmp_path / "dispensed.csv"
    path.write_text(
        HEADER
        + f"RX-1,{authorisation_id},MRN-7,Privigen,L1,10x2,20,0,2026-11-30,Ward 4\n"
        + f"RX-2,{authorisation_id},MRN-7,Privigen,L1,10x2,lots,0,2026-11-30,\n"
        + f"RX-3,{authorisation_id},MRN-7,Privigen,L1,10by2,20,0,2026-11-30,\n"
        + f",{authorisation_id},MRN-7,Privigen,L1,10x2,20,0,2026-11-30,\n"
        + f"RX-5,{authorisation_id},MRN-8,Privigen,L2,10x2,20,0,2026-11-30,\n"
        + f"RX-6,{authorisation_id},MRN-7,Octagam 10%,L3,20x1,18,0,2026-12-01,Ward 4\n"
    )
    return path


def test_import_records_the_good_rows_names_each_bad_one_and_is_idempotent(cli_instance, tmp_path):
    app, _ = cli_instance
    authorisation_id = _authorisation(app, "MRN-7")
    path = _export(tmp_path, authorisation_id)
    first = run("administrations", "import", str(path))
    assert first.exit_code == 1, first.output
    lines = first.output.splitlines()
    assert "row    3  grams_given: grams_given must be a number, found 'lots'" in lines
    assert any(line.startswith("row    4  vials: vials must be SIZExCOUNT") for line in lines)
    assert "row    5  dispense_id: dispense_id is required: it is what makes a re-import safe" in lines
    assert any(line.startswith("row    6  authorisation_id:") and "another patient" in line for line in lines)
    assert "MRN" not in first.output
    assert "6 rows: 2 imported (" in first.output and "0 already present, 4 rejected" in first.output
    again = run("administrations", "import", str(path))
    assert "6 rows: 0 imported (0 discrepancies found), 2 already present, 4 rejected" in again.output
    listed = run("administrations", "list", authorisation_id)
    assert listed.exit_code == 0 and listed.output.count("lot L") == 2
    assert "vial_total: the vials (1 x 20 g) hold 20 g, but 18 g given and 0 g wasted make 18 g" in listed.output
    assert app.extensions["instance"].audit.verify()["ok"] is True


def test_discrepancies_are_listed_and_resolved_from_the_shell(cli_instance, tmp_path):
    app, _ = cli_instance
    authorisation_id = _authorisation(app, "MRN-7")
    assert run("administrations", "import", str(_export(tmp_path, authorisation_id))).exit_code == 1
    listed = run("discrepancies", "list")
    first_id = listed.output.split()[0]
    assert "open discrepancies" in listed.output
    assert run("discrepancies", "resolve", first_id, "--reason", "checked with the ward").exit_code == 0
    twice = run("discrepancies", "resolve", first_id, "--reason", "again")
    assert twice.exit_code == 1 and "resolved already" in twice.output
    assert first_id in run("discrepancies", "list", "--status", "resolved").output
    assert run("discrepancies", "resolve", first_id, "--reason", " ").exit_code == 2


def test_an_export_with_unknown_columns_is_refused_whole(cli_instance, tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("dispense,patient\nRX-1,MRN-1\n")
    result = run("administrations", "import", str(path))
    assert result.exit_code == 1 and "unknown or missing columns ['dispense', 'patient']" in result.output
