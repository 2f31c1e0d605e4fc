"""The decision: a plain data object that the CLI's --json and the HTTP API serialise unchanged."""

from dataclasses import asdict, dataclass
from functools import lru_cache

from service import clock
from service.decide.terminology import Candidate, DiagnosisMatch
from service.rulebook.as_data import rulebook_ref
from service.rulebook.engine import EngineError
from service.rulebook.facts import Facts, Verdict, describe_fact
from service.rulebook.frozen import quick_init
from service.rulebook.model import Evidence, Rulebook

OUTCOME_WORDS = {
    "approved": "Approved: an FDA-labelled indication",
    "off_label_with_evidence": "Off-label, with controlled evidence of benefit",
    "needs_review": "Needs review by a pharmacist or the committee",
    "not_supported": "Not supported: no benefit shown, or no evidence",
}


@quick_init
@dataclass(frozen=True)
class Decision:
    outcome: str
    diagnosis: DiagnosisMatch
    rule: dict | None  # {"id", "title"}
    rulebook: dict  # {"name", "version", "digest"}
    rationale: str
    evidence: tuple[Evidence, ...] = ()
    missing: tuple[str, ...] = ()
    labelled_products: tuple[str, ...] = ()
    candidates: tuple[Candidate, ...] = ()  # diagnoses the text may mean, when it is not clear
    if_confirmed: dict | None = None  # for a proposed (approximate) diagnosis: {code, outcome, rule} on confirmation
    continuation: dict | None = None  # for a continuation: the authorisation continued and the measures compared
    supply: dict | None = None  # in a shortage phase: the phase, the rule's tier and what the phase changed

    def to_dict(self) -> dict:
        return {
            "outcome": self.outcome,
            "diagnosis": self.diagnosis.to_dict(),
            "rule": _copy(self.rule),
            "rulebook": dict(self.rulebook),
            "rationale": self.rationale,
            "evidence": [asdict(e) for e in self.evidence],
            "missing": list(self.missing),
            "labelled_products": list(self.labelled_products),
            "candidates": [c.to_dict() for c in self.candidates],
            "if_confirmed": None
            if self.if_confirmed is None
            else {**self.if_confirmed, "rule": _copy(self.if_confirmed["rule"])},
            "continuation": self.continuation,
            "supply": self.supply,
        }


def _copy(ref: dict | None) -> dict | None:
    """A rule reference the caller may change: decisions share theirs (see Prepared)."""
    return None if ref is None else dict(ref)


class Prepared:
    """What every decision on one rulebook shares, prepared once when the rulebook is loaded:
    its reference, each rule's {id, title}, and the labelled products per indication and patient.

    Decisions may share these dicts (and a Formulary may hand out one Decision object again), so
    nothing may change them; Decision.to_dict gives copies.
    """

    def __init__(self, rulebook: Rulebook):
        self.rulebook = rulebook
        self.ref = rulebook_ref(rulebook)
        self.rule_refs = {rule.id: {"id": rule.id, "title": rule.title} for rule in rulebook.rules}
        # A handful of ages, products and routes per indication: the answers stay few.
        self.labelled_products = lru_cache(maxsize=4096)(rulebook.labelled_products)


def from_verdict(prepared: Prepared, diagnosis: DiagnosisMatch, facts: Facts, verdict: Verdict) -> Decision:
    """The decision of the rule that fired: its outcome, or needs_review for facts it lacks."""
    rule = verdict.rule
    ref = prepared.rule_refs[rule.id]
    if verdict.variant == "unknown":
        missing_facts = tuple(f for f in verdict.needs if not facts.is_known(f))
        missing = tuple(describe_fact(f, facts.as_of or clock.utc_today()) for f in missing_facts)
        if not missing:
            raise EngineError(f"rule {rule.id} reported missing facts, but the request gives all it needs")
        return Decision(
            outcome="needs_review",
            diagnosis=diagnosis,
            rule=ref,
            rulebook=prepared.ref,
            rationale=(
                f"Rule '{rule.title}' decides this diagnosis but needs {', '.join(missing)}, which the request "
                f"does not give. Resubmit with {'it' if len(missing) == 1 else 'them'}, or a pharmacist reviews."
            ),
            evidence=rule.evidence,
            missing=missing,
        )
    labelled: tuple[str, ...] = ()
    if rule.labelled_indication:
        labelled = prepared.labelled_products(rule.labelled_indication, facts.age_years, facts.product, facts.route)
        if not labelled:
            raise EngineError(f"rule {rule.id} approved a request that no product label covers")
    return Decision(
        outcome=rule.outcome,
        diagnosis=diagnosis,
        rule=ref,
        rulebook=prepared.ref,
        rationale=rule.rationale,
        evidence=rule.evidence,
        labelled_products=labelled,
    )


def without_rule(prepared: Prepared, diagnosis: DiagnosisMatch) -> Decision:
    """needs_review for a diagnosis no rule covers, or one the request does not make clear."""
    if diagnosis.problem:
        reason = diagnosis.problem[0].upper() + diagnosis.problem[1:]
    else:
        reason = f"No rule in the rulebook covers {diagnosis.code} ({diagnosis.description})"
    return Decision(
        outcome="needs_review",
        diagnosis=diagnosis,
        rule=None,
        rulebook=prepared.ref,
        rationale=reason + ": a pharmacist or the committee decides.",
        candidates=diagnosis.candidates,
    )


def proposal(prepared: Prepared, diagnosis: DiagnosisMatch, confirmed: Decision) -> Decision:
    """needs_review for an approximate match: it proposes a code and says what the rules would
    decide on it, but only the prescriber (or a pharmacist) confirming the code decides.

    When the typed words carry a qualifier the proposed diagnosis lacks ("secondary
    hypogammaglobulinaemia" read as a primary immunodeficiency code), nothing is offered for
    confirmation: the words name another condition, and the rules have nothing for it.
    """
    assert diagnosis.code is not None and diagnosis.description is not None  # a proposal names its code
    proposed = Candidate(diagnosis.code, diagnosis.description, diagnosis.score or 0.0)
    candidates = (proposed,) + tuple(c for c in diagnosis.candidates if c.code != diagnosis.code)
    read_as = (
        f"'{diagnosis.input}' was read approximately as {diagnosis.code} {diagnosis.description} "
        f"(score {diagnosis.score:g} of 100)"
    )
    read_as = read_as[0].upper() + read_as[1:]
    if diagnosis.unmatched_qualifiers:
        words = ", ".join(f"'{w}'" for w in diagnosis.unmatched_qualifiers)
        return Decision(
            outcome="needs_review",
            diagnosis=diagnosis,
            rule=None,
            rulebook=prepared.ref,
            rationale=(
                f"{read_as}, but the text says {words}, which that diagnosis does not: "
                "it names a different condition, for which the rulebook has no rule. A pharmacist or the "
                "committee decides; resubmit with the ICD-10-CM code that says what the words mean."
            ),
            candidates=candidates,
        )
    if_so = confirmed.outcome.replace("_", " ")
    return Decision(
        outcome="needs_review",
        diagnosis=diagnosis,
        rule=None,
        rulebook=prepared.ref,
        rationale=(
            f"{read_as}. An approximate match does not decide: confirm the code "
            f"(resubmit with it) and the rules decide on it; if it is right, the outcome would be {if_so}."
        ),
        candidates=candidates,
        if_confirmed={"code": diagnosis.code, "outcome": confirmed.outcome, "rule": confirmed.rule},
    )
