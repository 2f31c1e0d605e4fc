"""What the rules decide on and what they answer: the typed facts of a request, and the verdict of
the rule that fired.

They are domain types, not durable-rules ones: request validation builds Facts and the decision
reads a Verdict without importing the compiler that turns them into durable-rules messages.
"""

import datetime
from dataclasses import dataclass

from service.rulebook.frozen import quick_init
from service.rulebook.model import Rule

# Facts a request gives or not, by the name `missing` reports them with.
FIXED_FACTS = (
    "patient.age_years",
    "patient.sex",
    "patient.pregnant",
    "severity",
    "therapies.failed",
    "therapies.concurrent",
    "diagnosis.confirmed_by",
    "prescriber.specialty",
    "diagnosis.phase",
    "course",
)


@dataclass(frozen=True)
class Observation:
    """The latest observation of one measure: its value in the canonical unit, and how many days
    before `Facts.as_of` it was taken."""

    measure: str
    value: float
    days_ago: int


@quick_init
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
    failed_weeks: tuple[tuple[str, int], ...] = ()  # (therapy, weeks tried) for failed therapies that say so
    observations: tuple[Observation, ...] = ()  # the latest of each measure, by measure
    confirmed_by: str | None = None
    specialty: str | None = None  # the prescriber's
    phases: frozenset[str] | None = None  # the phase given, or the phase of each scheme the onset date gives
    course: str | None = None
    as_of: datetime.date | None = None  # the day observations' ages count from (the clock's today)

    def known(self) -> dict[str, bool]:
        return {
            "patient.age_years": self.age_years is not None,
            "patient.sex": self.sex is not None,
            "patient.pregnant": self.pregnant is not None,
            "severity": self.severity is not None,
            "therapies.failed": self.failed is not None,
            "therapies.concurrent": self.concurrent is not None,
            "diagnosis.confirmed_by": self.confirmed_by is not None,
            "prescriber.specialty": self.specialty is not None,
            "diagnosis.phase": self.phases is not None,
            "course": self.course is not None,
        }

    def observation(self, measure: str, within_days: int | None) -> float | None:
        """The latest value of a measure, if it was taken within the window (None: at any time)."""
        for item in self.observations:
            if item.measure == measure:
                return item.value if within_days is None or item.days_ago <= within_days else None
        return None

    def weeks_known(self, therapy: str) -> bool:
        """False only when the therapy is listed as failed without how long it was tried; the
        failed list itself missing is reported as therapies.failed."""
        return self.failed is None or therapy not in self.failed or any(t == therapy for t, _ in self.failed_weeks)

    def weeks(self, therapy: str) -> int | None:
        return next((w for t, w in self.failed_weeks if t == therapy), None)

    def is_known(self, fact: str) -> bool:
        """Whether the request gives a fact `missing` may name (see service.rulebook.compiler.fact_flag)."""
        fixed = self.known()
        if fact in fixed:
            return fixed[fact]
        kind, _, rest = fact.partition(":")
        if kind == "observation":
            measure, _, window = rest.partition("@")
            return self.observation(measure, int(window) if window else None) is not None
        if kind == "failed_weeks":
            return self.weeks_known(rest)
        raise KeyError(fact)


def observation_fact(measure: str, within_days: int | None) -> str:
    return f"observation:{measure}" + (f"@{within_days}" if within_days is not None else "")


def failed_weeks_fact(therapy: str) -> str:
    return f"failed_weeks:{therapy}"


def describe_fact(fact: str, as_of: datetime.date) -> str:
    """A fact `missing` names, in the words a requester acts on: `igg_serum taken on or after 2026-09-02`."""
    kind, _, rest = fact.partition(":")
    if kind == "observation":
        measure, _, window = rest.partition("@")
        if not window:
            return measure
        return f"{measure} taken on or after {(as_of - datetime.timedelta(days=int(window))).isoformat()}"
    if kind == "failed_weeks":
        return f"therapies.failed[{rest}].weeks"
    return fact


def fact_of(described: str, as_of: datetime.date) -> str:
    """The fact a `missing` entry names, back from describe_fact's words with the same `as_of`
    (the decision's day): `fact_of(describe_fact(fact, day), day) == fact`."""
    if described in FIXED_FACTS:
        return described
    if described.startswith("therapies.failed[") and described.endswith("].weeks"):
        return failed_weeks_fact(described[len("therapies.failed[") : -len("].weeks")])
    measure, taken, day = described.partition(" taken on or after ")
    if not taken:
        return observation_fact(described, None)
    return observation_fact(measure, (as_of - datetime.date.fromisoformat(day)).days)


@dataclass(frozen=True)
class Verdict:
    """What one compiled rule means when it fires."""

    rule: Rule
    variant: str  # "match" or "unknown"
    needs: tuple[str, ...] = ()  # facts the rule needs (for an "unknown" verdict, the candidates for `missing`)
