"""Synthetic rulebooks of any size on real ICD-10-CM codes, for scale tests and benchmarks."""

from pathlib import Path

import simple_icd_10_cm as cm

from service.rulebook import icd10

from .conftest import MINI_DATA, REVIEWER_JUDGES, evidence, write_rulebook

# No product labels: every synthetic rule decides on evidence.
SYNTHETIC_DATA = {**MINI_DATA, "products.yaml": {"indications": {}, "products": []}}


def spread_codes(count: int) -> list[str]:
    """`count` valid codes taken round-robin across categories, so no category is crowded."""
    by_category: dict[str, list[str]] = {}
    for code in cm.get_all_codes(with_dots=True):
        if icd10.is_valid(code) and len(icd10.normalise(code)) >= 4:
            by_category.setdefault(code[:3], []).append(code)
    columns = list(by_category.values())
    picked, depth = [], 0
    while len(picked) < count:
        for column in columns:
            if depth < len(column):
                picked.append(column[depth])
                if len(picked) == count:
                    break
        depth += 1
    return picked


def write_synthetic_rulebook(folder: Path, rule_count: int) -> tuple[Path, list[str]]:
    """Two rules per code (children off-label, adults not supported); returns the path and codes."""
    codes = spread_codes(rule_count // 2)
    diagnoses = {f"dx{i}": {"name": f"Synthetic diagnosis {i}", "codes": [code]} for i, code in enumerate(codes)}
    rules = []
    for i in range(len(codes)):
        rules.append(
            {
                "id": f"dx{i}-children",
                "title": f"Synthetic {i}, children",
                "diagnosis": f"dx{i}",
                "when": {"age_years": {"under": 18}},
                "outcome": "off_label_with_evidence",
                "review_criteria": REVIEWER_JUDGES,
                "rationale": "synthetic",
                "evidence": evidence(),
            }
        )
        rules.append(
            {
                "id": f"dx{i}-adults",
                "title": f"Synthetic {i}, adults",
                "diagnosis": f"dx{i}",
                "when": {"age_years": {"at_least": 18}},
                "outcome": "not_supported",
                "rationale": "synthetic",
                "evidence": evidence(effect="no_benefit"),
            }
        )
    path = write_rulebook(
        folder, rules=rules, diagnoses=diagnoses, data=SYNTHETIC_DATA, name=f"synthetic-{rule_count}.yaml"
    )
    return path, codes
