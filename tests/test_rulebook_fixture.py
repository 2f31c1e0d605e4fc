"""The test rulebook (tests/rulebook/) that the code tests decide on: it lints clean, and every
file says it is a test fixture, not clinical policy."""

from pathlib import Path

from click.testing import CliRunner

from service.cli import main

FOLDER = Path(__file__).resolve().parent / "rulebook"
TEST_RULEBOOK = FOLDER / "ivig-test.yaml"


def test_the_test_rulebook_lints_clean():
    result = CliRunner().invoke(main, ["lint", str(FOLDER)])
    assert (result.exit_code, result.output) == (0, f"ok: 1 rulebook file(s) clean: {TEST_RULEBOOK}\n")


def test_every_file_of_the_test_rulebook_says_it_is_not_clinical_policy():
    files = [TEST_RULEBOOK, *sorted((FOLDER / "data").glob("*.yaml"))]
    assert [f.name for f in files] == [
        "ivig-test.yaml",
        "measures.yaml",
        "order_entry.yaml",
        "phases.yaml",
        "products.yaml",
        "sources.yaml",
        "specialties.yaml",
        "therapies.yaml",
    ]
    for file in files:
        assert file.read_text().startswith("# Test fixture: not clinical policy."), file
