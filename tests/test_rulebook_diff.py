"""What changed between two rulebooks, rule by rule and field by field, in words and as JSON."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import main
from service.rulebook.diff import diff, diff_as_data, words
from service.rulebook.reader import load_rulebook
from service.rulebook.shipped import SHIPPED_RULEBOOK

from .conftest import TEST_RULEBOOK

OLD = load_rulebook(TEST_RULEBOOK)


def _copy(source: Path, folder: Path) -> Path:
    """A copy of a rulebook's folder (its data beside it, or one level up for the shipped one)."""
    if source == SHIPPED_RULEBOOK:
        shutil.copytree(source.parent, folder / "rules")
        shutil.copytree(source.parent.parent / "data", folder / "data")
        return folder / "rules" / source.name
    shutil.copytree(source.parent, folder)
    return folder / source.name


def _edit(path: Path, old: str, new: str):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def edited(tmp_path) -> Path:
    """The test rulebook with one outcome, condition, evidence entry, dosing profile, a rule removed and one added."""
    path = _copy(TEST_RULEBOOK, tmp_path / "new")
    _edit(path, "version: 1.0.0\n", "version: 1.1.0\n")
    _edit(
        path,
        """      age_years: {at_least: 18}
    outcome: needs_review
    dosing: acute
    urgent: true""",
        """      age_years: {at_least: 16}
    outcome: off_label_with_evidence
    dosing: acute""",
    )
    _edit(
        path,
        """        finding: Test fixture finding that says nothing of adults.
        strength: not_addressed
""",
        """        finding: Test fixture finding that says nothing of adults.
        strength: controlled
        effect: benefit
""",
    )
    _edit(
        path,
        "      courses: 1\n      note: Test fixture profile for a one-off course.",
        "      courses: 2\n      note: Test fixture profile for a one-off course.",
    )
    text = path.read_text()
    start, end = text.index("  - id: ms-review\n"), text.index("  - id: myasthenia-gravis-review\n")
    removed = text[start:end]
    added = removed.replace("id: ms-review", "id: ms-relapsing").replace(
        "title: Multiple sclerosis", "title: Relapsing MS"
    )
    path.write_text(text[:start] + text[end:] + "\n" + added)
    return path


def test_the_same_rulebook_has_no_differences():
    assert diff(OLD, OLD) == [] and words([]) == ["no differences"]


def test_each_change_is_said_in_words_a_committee_reads(edited):
    said = words(diff(OLD, load_rulebook(edited)))
    assert said == [
        "rulebook: version 1.0.0 -> 1.1.0",
        "rule ms-review removed: Multiple sclerosis (multiple_sclerosis: G35; when any) -> needs_review",
        "rule gbs-adults: outcome needs_review -> off_label_with_evidence",
        "rule gbs-adults: condition age >= 18 -> age >= 16 (conditions now: age >= 16)",
        "rule gbs-adults: evidence from offlabel-ivig-review: strength not_addressed -> controlled",
        "rule gbs-adults: evidence from offlabel-ivig-review: effect none -> benefit",
        "rule gbs-adults: urgent yes -> no",
        "rule ms-relapsing added: Relapsing MS (multiple_sclerosis: G35; when any) -> needs_review",
        "dosing profile acute: courses 1 -> 2",
    ]


def test_each_change_is_data_with_its_kind_id_field_and_values(edited):
    changes = diff_as_data(OLD, load_rulebook(edited))["changes"]
    plain = [{k: v for k, v in change.items() if k != "words"} for change in changes]
    assert {
        "kind": "rule",
        "id": "gbs-adults",
        "field": "outcome",
        "old": "needs_review",
        "new": "off_label_with_evidence",
    } in plain
    assert {"kind": "rule", "id": "gbs-adults", "field": "when.age_at_least", "old": 18, "new": 16} in plain
    assert {
        "kind": "rule",
        "id": "gbs-adults",
        "field": "evidence[offlabel-ivig-review].strength",
        "old": "not_addressed",
        "new": "controlled",
    } in plain
    assert {"kind": "dosing_profile", "id": "acute", "field": "courses", "old": 1, "new": 2} in plain
    [gone] = [c for c in changes if c["id"] == "ms-review"]
    assert gone["field"] is None and gone["new"] is None and gone["old"]["outcome"] == "needs_review"
    [came] = [c for c in changes if c["id"] == "ms-relapsing"]
    assert came["old"] is None and came["new"]["codes"] == ["G35"]
    json.dumps(changes)  # every value is JSON


def test_an_evidence_entry_added_and_one_whose_source_changed_are_said_as_such(tmp_path):
    path = _copy(TEST_RULEBOOK, tmp_path / "new")
    _edit(
        path,
        "        finding: Test fixture finding that says nothing of adults.\n        strength: not_addressed\n",
        "        finding: Test fixture finding that says nothing of adults.\n        strength: not_addressed\n"
        "      - source: fda-labels\n        finding: No label for adults.\n        strength: not_addressed\n",
    )
    said = words(diff(OLD, load_rulebook(path)))
    assert said == ["rule gbs-adults: evidence added: fda-labels (not_addressed): No label for adults."]


def test_a_product_label_and_a_diagnosis_code_changed_are_named(tmp_path):
    path = _copy(TEST_RULEBOOK, tmp_path / "new")
    _edit(path, "codes: [D80.9, D80.0, D81.9, D83]", "codes: [D80.9, D80.0, D81.9, D83, D80.1]")
    products = path.parent / "data" / "products.yaml"
    text = products.read_text()
    assert "age_years: {at_least: 2}" in text
    products.write_text(text.replace("age_years: {at_least: 2}", "age_years: {at_least: 3}", 1))
    said = words(diff(OLD, load_rulebook(path)))
    assert "rule pi-labelled: codes added D80.1" in said
    assert "diagnosis primary_immunodeficiency: codes added D80.1" in said
    assert any(line.startswith("product ") and "age >= 2" in line and "age >= 3" in line for line in said), said


def test_the_cli_compares_two_files(edited):
    shown = CliRunner().invoke(main, ["rulebook", "diff", str(TEST_RULEBOOK), str(edited)])
    assert shown.exit_code == 0
    assert "rule gbs-adults: outcome needs_review -> off_label_with_evidence" in shown.output
    same = CliRunner().invoke(main, ["rulebook", "diff", str(TEST_RULEBOOK), str(TEST_RULEBOOK)])
    assert same.exit_code == 0 and same.output.splitlines()[-1] == "no differences"
    as_json = json.loads(
        CliRunner().invoke(main, ["rulebook", "diff", str(TEST_RULEBOOK), str(edited), "--json"]).output
    )
    assert as_json["new"]["version"] == "1.1.0" and len(as_json["changes"]) == len(as_json["words"]) == 9


def test_the_cli_names_what_it_cannot_read(shell_instance):
    shown = CliRunner().invoke(main, ["rulebook", "diff", str(TEST_RULEBOOK), "7.7.7"])
    assert shown.exit_code == 1 and "7.7.7 is neither a rulebook file nor a stored version" in shown.output


def test_the_cli_compares_the_shipped_rulebook_with_an_edited_copy(tmp_path):
    # Not what the shipped rulebook decides: only that its diff reads it whole and names one edit.
    path = _copy(SHIPPED_RULEBOOK, tmp_path)
    shipped = load_rulebook(SHIPPED_RULEBOOK)
    rule = next(r for r in shipped.rules if r.priority == 0)
    text = path.read_text()
    anchor = f"  - id: {rule.id}\n"
    path.write_text(text.replace(anchor, f"{anchor}    priority: {rule.priority + 5}\n", 1))
    shown = CliRunner().invoke(main, ["rulebook", "diff", str(SHIPPED_RULEBOOK), str(path)])
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines()[1:] == [f"rule {rule.id}: priority {rule.priority} -> {rule.priority + 5}"]
