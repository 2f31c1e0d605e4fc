"""The formulary as data: what `formulary rules` prints and the HTTP API will return."""

from dataclasses import asdict

from service.rulebook import icd10
from service.rulebook.model import Label, Rule, Rulebook


def rulebook_ref(rulebook: Rulebook) -> dict:
    """What a decision was made on: the rulebook version and digest, and the ICD-10-CM release."""
    return {"name": rulebook.name, "version": rulebook.version, "digest": rulebook.digest, "icd10cm": icd10.RELEASE}


def rule_as_data(rulebook: Rulebook, rule: Rule) -> dict:
    diagnosis = rulebook.diagnoses[rule.diagnosis]
    return {
        "id": rule.id,
        "title": rule.title,
        "diagnosis": {
            "id": diagnosis.id,
            "name": diagnosis.name,
            "codes": list(diagnosis.codes),
            "synonyms": [s.term for s in diagnosis.synonyms],
            "coding_note": diagnosis.coding_note,
        },
        "when": rule.when.describe(),
        "outcome": rule.outcome,
        "priority": rule.priority,
        "tier": rule.tier,
        "tier_basis": rule.tier_basis or None,
        "labelled_indication": rule.labelled_indication,
        "labels": [
            label_as_data(rulebook, name, label) for name, label in rulebook.labels_for(rule.labelled_indication)
        ]
        if rule.labelled_indication
        else [],
        "dosing": asdict(rulebook.dosing_for(rule)),
        "authorisation_days": rulebook.authorisation_days_for(rule),
        "continuing_days": rulebook.authorisation_days_for(rule, continuing=True),
        "review_criteria": _criteria_as_data(rule),
        "courses": asdict(rule.courses) if rule.courses else None,
        "rationale": rule.rationale,
        "conflict": rule.conflict or None,
        "evidence": [asdict(e) for e in rule.evidence],
        "sources": sorted({e.source for e in rule.evidence}),
    }


def _criteria_as_data(rule: Rule) -> dict | None:
    criteria = rule.review_criteria
    if criteria is None:
        return None
    return {"text": criteria.describe(), **asdict(criteria)}


def label_as_data(rulebook: Rulebook, product: str, label: Label) -> dict:
    """One product's label for an indication, with the document it was read from."""
    info = rulebook.products[product].prescribing_information
    return {
        "product": product,
        "age_years": {"at_least": label.age_at_least, "under": label.age_under},
        "routes": sorted(label.routes),
        "note": label.note or None,
        "source": info.source if info else None,
        "revised": info.revised if info else None,
    }


def rulebook_as_data(rulebook: Rulebook) -> dict:
    return {
        "rulebook": {**rulebook_ref(rulebook), "effective": rulebook.effective},
        "sources": [asdict(rulebook.sources[s]) for s in rulebook.cited_sources],
        "rules": [rule_as_data(rulebook, r) for r in rulebook.rules],
    }


def rules_table(rulebook: Rulebook) -> list[list[str]]:
    """One row a rule: id, codes, conditions, outcome, sources (with a header row)."""
    rows = [["RULE", "CODES", "WHEN", "OUTCOME", "SOURCES"]]
    for rule in rulebook.rules:
        rows.append(
            [
                rule.id,
                _codes_cell(rulebook.diagnoses[rule.diagnosis].codes),
                rule.when.describe() + (f"; label: {rule.labelled_indication}" if rule.labelled_indication else ""),
                rule.outcome,
                ", ".join(sorted({e.source for e in rule.evidence})),
            ]
        )
    return rows


def _codes_cell(codes: tuple[str, ...], shown: int = 4) -> str:
    """A table cell for a diagnosis's codes; long lists end in "+N more" (the JSON has them all)."""
    head = " ".join(codes[:shown])
    return head if len(codes) <= shown else f"{head} +{len(codes) - shown} more"
