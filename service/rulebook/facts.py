"""What the rules decide on and what they answer: the typed facts of a request, and the verdict of
the rule that fired.

They are domain types, not durable-rules ones: request validation builds Facts and the decision
reads a Verdict without importing the compiler that turns them into durable-rules messages.
"""

from dataclasses import dataclass

from service.rulebook.model import Rule


@dataclass(frozen=True)
class Facts:
    """The request facts the rules may test, typed and normalised; None means not given."""

    age_years: float | None = None
    sex: str | None = None
    pregnant: bool | None = None
    severity: str | None = None
    failed: frozenset[str] | None = None
    concurrent: frozenset[str] | None = None
    product: str | None = None
    route: str = "intravenous"  # how the dose is given; the formulary's default is intravenous

    def known(self) -> dict[str, bool]:
        return {
            "patient.age_years": self.age_years is not None,
            "patient.sex": self.sex is not None,
            "patient.pregnant": self.pregnant is not None,
            "severity": self.severity is not None,
            "therapies.failed": self.failed is not None,
            "therapies.concurrent": self.concurrent is not None,
        }


@dataclass(frozen=True)
class Verdict:
    """What one compiled rule means when it fires."""

    rule: Rule
    variant: str  # "match" or "unknown"
    needs: tuple[str, ...] = ()  # facts the rule needs (for an "unknown" verdict, the candidates for `missing`)
