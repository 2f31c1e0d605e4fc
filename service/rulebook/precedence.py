"""Which rule decides when several rules on one diagnosis code can match the same request.

A rule's conditions describe a region of the request space: an age interval, sets of sexes,
severities and products, and a yes/no per therapy. Two rules overlap when their regions meet;
one is narrower when its region lies inside the other's. The order (README, "Precedence"):
higher priority, then labelled approvals, then narrower rules, then file order. The compiler
turns this order into durable-rules priorities; lint refuses overlaps it cannot order.
"""

import math
from dataclasses import dataclass, field

from service.rulebook.model import SEVERITIES, SEXES, Conditions, Rule

_BOTH = frozenset({True, False})


@dataclass(frozen=True)
class Region:
    age: tuple[float, float]  # [low, high)
    sex: frozenset[str]
    pregnant: frozenset[bool]
    severity: frozenset[str]
    therapies: dict[tuple[str, str], frozenset[bool]]  # ("failed"|"concurrent", therapy) -> allowed
    product: frozenset[str] | None  # None: any product, or none named
    # Words a request gives one of (confirmed_by, prescriber_specialty, phase, course): None is any.
    words: dict[str, frozenset[str]] = field(default_factory=dict)
    # (measure, within_days) -> closed interval of the canonical value; an open bound is +-inf.
    # Closed intervals make rules meet a little more often than they do: lint errs towards refusing.
    observations: dict[tuple[str, int | None], tuple[float, float]] = field(default_factory=dict)
    min_weeks: dict[str, int] = field(default_factory=dict)

    def _therapy(self, key) -> frozenset[bool]:
        return self.therapies.get(key, _BOTH)

    def meets(self, other: "Region") -> bool:
        keys = self.therapies.keys() | other.therapies.keys()
        return (
            max(self.age[0], other.age[0]) < min(self.age[1], other.age[1])
            and bool(self.sex & other.sex)
            and bool(self.pregnant & other.pregnant)
            and bool(self.severity & other.severity)
            and all(self._therapy(k) & other._therapy(k) for k in keys)
            and (self.product is None or other.product is None or bool(self.product & other.product))
            and all(bool(self.words[k] & other.words[k]) for k in self.words.keys() & other.words.keys())
            and all(
                max(self.observations[k][0], other.observations[k][0])
                <= min(self.observations[k][1], other.observations[k][1])
                for k in self.observations.keys() & other.observations.keys()
            )
        )

    def within(self, other: "Region") -> bool:
        keys = self.therapies.keys() | other.therapies.keys()
        return (
            other.age[0] <= self.age[0]
            and self.age[1] <= other.age[1]
            and self.sex <= other.sex
            and self.pregnant <= other.pregnant
            and self.severity <= other.severity
            and all(self._therapy(k) <= other._therapy(k) for k in keys)
            and (other.product is None or (self.product is not None and self.product <= other.product))
            and all(k in self.words and self.words[k] <= other.words[k] for k in other.words)
            and all(
                k in self.observations
                and other.observations[k][0] <= self.observations[k][0]
                and self.observations[k][1] <= other.observations[k][1]
                for k in other.observations
            )
            and all(self.min_weeks.get(t, 0) >= weeks for t, weeks in other.min_weeks.items())
        )

    def example(self, other: "Region") -> str:
        """A request both regions admit, in words, so lint can show the clash."""
        low = max(self.age[0], other.age[0])
        parts = [f"age {low:g}"] if low > 0 else []
        if (sexes := self.sex & other.sex) != frozenset(SEXES):
            parts.append(f"sex {sorted(sexes)[0]}")
        if (pregnant := self.pregnant & other.pregnant) != _BOTH:
            parts.append("pregnant" if True in pregnant else "not pregnant")
        if (severity := self.severity & other.severity) != frozenset(SEVERITIES):
            parts.append(f"severity {sorted(severity)[0]}")
        for kind, therapy in sorted(self.therapies.keys() | other.therapies.keys()):
            allowed = self._therapy((kind, therapy)) & other._therapy((kind, therapy))
            if allowed != _BOTH:
                parts.append(f"{kind} {therapy}: {'yes' if True in allowed else 'no'}")
        products = (
            self.product
            if other.product is None
            else other.product
            if self.product is None
            else self.product & other.product
        )
        if products:
            parts.append(f"product {sorted(products)[0]}")
        for key in sorted(self.words.keys() | other.words.keys()):
            both = self.words.get(key, frozenset()) & other.words.get(key, frozenset()) or (
                self.words.get(key) or other.words.get(key) or frozenset()
            )
            parts.append(f"{key} {sorted(both)[0]}")
        for (measure, _), (low, high) in sorted(self.observations.items()):
            parts.append(f"{measure} {low:g} to {high:g}")
        return ", ".join(parts) or "any request"


def region(when: Conditions) -> Region:
    therapies = {}
    for therapy in when.failed_includes:
        therapies[("failed", therapy)] = frozenset({True})
    for therapy in when.concurrent_includes:
        therapies[("concurrent", therapy)] = frozenset({True})
    for therapy in when.concurrent_excludes:
        therapies[("concurrent", therapy)] = frozenset({False})
    return Region(
        age=(
            when.age_at_least if when.age_at_least is not None else 0.0,
            when.age_under if when.age_under is not None else math.inf,
        ),
        sex=when.sex or frozenset(SEXES),
        pregnant=_BOTH if when.pregnant is None else frozenset({when.pregnant}),
        severity=when.severity or frozenset(SEVERITIES),
        therapies=therapies,
        product=when.product,
        words={
            key: values
            for key, values in (
                ("confirmed_by", when.confirmed_by),
                ("prescriber_specialty", when.prescriber_specialty),
                ("phase", when.phase),
                ("course", when.course),
            )
            if values is not None
        },
        observations={(test.measure, test.within_days): _interval(test.bounds) for test in when.observations},
        min_weeks=dict(when.failed_min_weeks),
    )


def _interval(bounds: tuple[tuple[str, float], ...]) -> tuple[float, float]:
    low, high = -math.inf, math.inf
    for op, value in bounds:
        if op in ("above", "at_least"):
            low = max(low, value)
        else:
            high = min(high, value)
    return low, high


def _tier(rule: Rule) -> tuple[int, int]:
    """Steps 2 and 3 of the precedence: priority, then labelled approvals first."""
    return (-rule.priority, 0 if rule.labelled_indication else 1)


def order(rules: list[Rule]) -> list[Rule]:
    """The rules on one code in the order they are tried: the first that matches decides."""
    regions = {r.id: region(r.when) for r in rules}
    ordered = []
    for tier in sorted({_tier(r) for r in rules}):
        waiting = sorted((r for r in rules if _tier(r) == tier), key=lambda r: r.position)
        while waiting:
            # The earliest rule that no waiting rule is narrower than goes next.
            pick = next(
                r for r in waiting if not any(o is not r and _narrower(regions[o.id], regions[r.id]) for o in waiting)
            )
            ordered.append(pick)
            waiting.remove(pick)
    return ordered


def _narrower(a: Region, b: Region) -> bool:
    return a.within(b) and not b.within(a)


def ambiguities(rules: list[Rule]) -> list[tuple[Rule, Rule, str]]:
    """Pairs of rules on one code that can match one request with different outcomes, unordered.

    Each comes with an example request both admit.
    """
    regions = {r.id: region(r.when) for r in rules}
    clashes = []
    for i, a in enumerate(rules):
        for b in rules[i + 1 :]:
            ra, rb = regions[a.id], regions[b.id]
            if (
                a.outcome != b.outcome
                and _tier(a) == _tier(b)
                and ra.meets(rb)
                and not _narrower(ra, rb)
                and not _narrower(rb, ra)
            ):
                clashes.append((a, b, ra.example(rb)))
    return clashes
