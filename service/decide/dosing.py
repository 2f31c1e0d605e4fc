"""Dose-determining weight, the dose in grams, and checks of an order against a dosing profile.

The rulebook carries the numbers (g/kg per course, days between courses, the weight rule and the
rounding tolerance, each with its source: README, Dosing); this module only computes, so the
committee changes a number without changing code. The dose-determining weight:
- ideal body weight: the base at five feet for the patient's sex, plus a weight per inch above it;
- adjusted weight = ideal + adjustment factor x (actual - ideal);
- the actual weight is used for the patients the rule names (by age, height, pregnancy) and for
  those whose actual weight is below the adjusted weight; otherwise the adjusted weight.
A sex without a base uses the base the rule names for other sexes, and the result says so.

Rounding: the dose in grams becomes the amount the product's own vials can make (its vial sizes
in data/products.yaml) that is nearest the exact dose, within the rule's tolerance of it and
within the dose range (min to max g/kg) for the dosing weight; ties go to the smaller amount,
and the fewest vials make it up. When no combination is that close, nothing is rounded and the
order goes to a pharmacist, with the amounts the vials can make on either side.

The dose limits are the label's for the product and indication when the label gives a dose (a
labelled use), otherwise the rule's dosing profile.
"""

import datetime
import math
from dataclasses import dataclass

from service.rulebook.model import DosingProfile, Label, Range, RoundingRule, WeightRule

CM_PER_INCH = 2.54
FIVE_FEET_INCHES = 60
_TENTHS = 10  # vial sizes are whole tenths of a gram


@dataclass(frozen=True)
class Weight:
    actual_kg: float
    dosing_kg: float
    basis: str  # why this weight is the dosing weight
    ideal_kg: float | None = None
    adjusted_kg: float | None = None

    def to_dict(self) -> dict:
        return {
            "actual_kg": self.actual_kg,
            "ideal_kg": self.ideal_kg,
            "adjusted_kg": self.adjusted_kg,
            "dosing_kg": self.dosing_kg,
            "basis": self.basis,
        }


class MissingFact(ValueError):
    """The dosing weight needs a fact the order does not give; the message names it."""


def ideal_body_weight(height_cm: float, sex: str | None, rule: WeightRule) -> tuple[float, str]:
    bases = rule.ideal_kg_at_five_feet
    base = bases.get(sex or "", bases[rule.other_sexes_use])
    note = "" if sex in bases else f" ({rule.other_sexes_use} base: no Devine base for this sex)"
    inches_over = height_cm / CM_PER_INCH - FIVE_FEET_INCHES
    return round(base + rule.ideal_kg_per_inch_over_five_feet * inches_over, 1), note


def dosing_weight(
    actual_kg: float | None,
    height_cm: float | None,
    age_years: float | None,
    sex: str | None,
    pregnant: bool | None,
    rule: WeightRule,
) -> Weight:
    """The weight to dose on, with the reason; raises MissingFact naming what it needs."""
    if actual_kg is None:
        raise MissingFact("patient.weight_kg")
    if age_years is not None and age_years < rule.actual_weight_under_age_years:
        return Weight(actual_kg, actual_kg, f"actual weight: under {rule.actual_weight_under_age_years:g}")
    if pregnant and rule.actual_weight_when_pregnant:
        return Weight(actual_kg, actual_kg, "actual weight: pregnant")
    if height_cm is not None and height_cm < rule.actual_weight_under_height_cm:
        return Weight(actual_kg, actual_kg, f"actual weight: under {rule.actual_weight_under_height_cm:g} cm")
    if age_years is None:
        raise MissingFact("patient.age_years")
    if height_cm is None:
        raise MissingFact("patient.height_cm")
    if pregnant is None and sex != "male" and rule.actual_weight_when_pregnant:
        raise MissingFact("patient.pregnant")
    ideal, note = ideal_body_weight(height_cm, sex, rule)
    adjusted = round(ideal + rule.adjustment_factor * (actual_kg - ideal), 1)
    if actual_kg < adjusted:
        return Weight(actual_kg, actual_kg, "actual weight: below the adjusted weight" + note, ideal, adjusted)
    return Weight(actual_kg, adjusted, "adjusted weight" + note, ideal, adjusted)


@dataclass(frozen=True)
class Finding:
    check: str  # what was checked
    ok: bool
    message: str

    def to_dict(self) -> dict:
        return {"check": self.check, "ok": self.ok, "message": self.message}


@dataclass(frozen=True)
class Course:
    """One course in grams: the exact dose, and what whole vials make of it (None: no combination fits)."""

    g_per_kg: float
    grams: float
    rounded_grams: float | None
    vials: tuple[tuple[float, int], ...]  # (vial size in g, count), largest first
    rounding: str  # the rounding rule, or why nothing was rounded

    def to_dict(self) -> dict:
        return {
            "g_per_kg": self.g_per_kg,
            "grams": self.grams,
            "rounded_grams": self.rounded_grams,
            "vials": [{"size_g": size, "count": count} for size, count in self.vials],
            "rounding": self.rounding,
        }


_KEPT_TABLES: dict[tuple[int, ...], tuple[tuple[int, ...] | None, ...]] = {}  # by vial sizes, the longest made
_KEPT_LIMIT = 20_000  # tenths of a gram (2 kg): a table up to here is kept for the next course


def _fewest_vials(sizes: tuple[int, ...], limit: int) -> tuple[tuple[int, ...] | None, ...]:
    """For every amount 0..limit at least (in tenths of a gram), the fewest vials that make it
    exactly, or None. The table depends only on the vial sizes, and an order's table (137 g: 1,400
    amounts) took about a third of a CDS Hooks call's CPU, so the longest one made is kept and reused."""
    kept = _KEPT_TABLES.get(sizes)
    if kept is not None and len(kept) > limit:
        return kept
    best = _vial_table(sizes, limit)
    if limit <= _KEPT_LIMIT:
        _KEPT_TABLES[sizes] = best
    return best


def _vial_table(sizes: tuple[int, ...], limit: int) -> tuple[tuple[int, ...] | None, ...]:
    best: list[tuple[int, ...] | None] = [None] * (limit + 1)
    best[0] = ()
    for amount in range(1, limit + 1):
        for size in sizes:
            previous = best[amount - size] if size <= amount else None
            if previous is None:
                continue
            candidate, current = previous + (size,), best[amount]
            if current is None or len(candidate) < len(current):
                best[amount] = candidate
    return tuple(best)


def course_grams(
    g_per_kg: float, weight_kg: float, limits: Range, vial_sizes_g: tuple[float, ...], rounding: RoundingRule
) -> Course:
    """One course for this weight, rounded to the product's vials (see the module docstring)."""
    tolerance = rounding.tolerance
    exact = round(g_per_kg * weight_kg, 2)
    if not vial_sizes_g:
        return Course(g_per_kg, exact, None, (), "not rounded: the product's vial sizes are not recorded")
    sizes = tuple(sorted({round(v * _TENTHS) for v in vial_sizes_g}, reverse=True))
    ceiling = limits.max * weight_kg if limits.max is not None else math.inf
    floor = limits.min * weight_kg if limits.min is not None else 0.0
    low = math.ceil(max(exact * (1 - tolerance), floor) * _TENTHS - 1e-6)
    high = math.floor(min(exact * (1 + tolerance), ceiling) * _TENTHS + 1e-6)
    reach = math.ceil(exact * (1 + tolerance) * _TENTHS) + max(sizes)
    combos = _fewest_vials(sizes, reach)
    fits = [t for t in range(max(low, 1), high + 1) if combos[t] is not None]
    rule = (
        f"nearest amount the vials ({', '.join(f'{v:g} g' for v in sorted(vial_sizes_g))}) make, within "
        f"{tolerance:.0%} of the exact dose and within the dose range for this weight"
    )
    if not fits:
        exact_tenths = round(exact * _TENTHS)
        below = next((t for t in range(min(exact_tenths, reach), 0, -1) if combos[t] is not None), None)
        above = next((t for t in range(max(exact_tenths, 1), reach + 1) if combos[t] is not None), None)
        near = " or ".join(f"{t / _TENTHS:g} g" for t in dict.fromkeys((below, above)) if t is not None)
        bounds = f"{floor:g}-{ceiling:g} g" if ceiling != math.inf else f"at least {floor:g} g"
        return Course(
            g_per_kg,
            exact,
            None,
            (),
            f"not rounded: no combination of the vials is within "
            f"{tolerance:.0%} of {exact:g} g and within the dose range "
            f"for this weight ({bounds}); the vials make {near}",
        )
    chosen = min(fits, key=lambda t: (abs(t - exact * _TENTHS), t))
    counts: dict[int, int] = {}
    for size in combos[chosen] or ():  # every amount in `fits` has its vials
        counts[size] = counts.get(size, 0) + 1
    vials = tuple((size / _TENTHS, counts[size]) for size in sorted(counts, reverse=True))
    return Course(g_per_kg, exact, chosen / _TENTHS, vials, rule)


def limits_for(profile: DosingProfile, label: Label | None, product: str | None) -> DosingProfile:
    """The dose limits for an order: the label's dose for its product and indication wins over the
    rule's profile; an interval or course count the label does not give comes from the profile."""
    if label is None or label.dose is None:
        return profile
    dose = label.dose
    return DosingProfile(
        id=f"label: {product} for {label.indication}",
        g_per_kg=dose.g_per_kg,
        interval_days=dose.interval_days if dose.interval_days is not None else profile.interval_days,
        note=dose.note or f"the dose of {product}'s label",
        courses=None if dose.interval_days is not None else profile.courses,
        monthly=dose.monthly,
    )


MONTH_DAYS = 28


def course_limits(profile: DosingProfile, interval_days: int | None) -> Range:
    """The g/kg one course may have: the profile's, or for a monthly total the month's share that
    one interval takes (2.4 g/kg a month, every 14 days: at most 1.2 g/kg a course)."""
    if not profile.monthly or not interval_days:
        return profile.g_per_kg
    share = interval_days / MONTH_DAYS
    low, high = profile.g_per_kg.min, profile.g_per_kg.max
    return Range(None if low is None else round(low * share, 4), None if high is None else round(high * share, 4))


def courses_given(
    profile: DosingProfile, last_infusion: datetime.date | None, authorised_from: datetime.date | None
) -> Finding | None:
    """For a one-off course: whether the authorisation has already been used.

    Without a record of what was given (that needs administrations), only one fact is known: a
    last infusion on or after the day the authorisation began means at least one course was given.
    A one-course authorisation then holds the order; a two-course one passes, saying so.
    """
    if profile.courses is None or last_infusion is None or authorised_from is None or last_infusion < authorised_from:
        return None
    if profile.courses == 1:
        return Finding(
            "courses",
            False,
            f"a one-off course: a course was already given under this authorisation "
            f"(last infusion {last_infusion}); another course needs review",
        )
    return Finding(
        "courses",
        True,
        f"a course was given under this authorisation (last infusion {last_infusion}); at most "
        f"{profile.courses} courses are allowed: the pharmacist confirms how many were given",
    )


def _against(value: float, limits, unit: str, what: str, check: str) -> Finding:
    if limits.min is not None and value < limits.min:
        short = limits.min - value
        return Finding(
            check,
            False,
            f"{what} {value:g} {unit} is below the minimum {limits.min:g} {unit} "
            f"by {short:g} {unit} ({short / limits.min:.0%})",
        )
    if limits.max is not None and value > limits.max:
        over = value - limits.max
        return Finding(
            check,
            False,
            f"{what} {value:g} {unit} exceeds the maximum {limits.max:g} {unit} "
            f"by {over:g} {unit} ({over / limits.max:.0%})",
        )
    if limits.max is None:
        return Finding(check, True, f"{what} {value:g} {unit} meets the minimum of {limits.min:g} {unit}")
    return Finding(check, True, f"{what} {value:g} {unit} is within {limits.min or 0:g}-{limits.max:g} {unit}")


def check_order(
    profile: DosingProfile,
    g_per_kg: float | None,
    interval_days: int | None,
    last_infusion: datetime.date | None,
    today: datetime.date,
) -> list[Finding]:
    """Every dose and timing finding for an order; nothing outside the range passes silently."""
    findings = []
    if g_per_kg is None:
        findings.append(Finding("dose", False, "the order gives no dose (dose.g_per_kg)"))
    elif profile.monthly and interval_days:
        monthly = round(g_per_kg * MONTH_DAYS / interval_days, 4)
        findings.append(
            _against(
                monthly,
                profile.g_per_kg,
                "g/kg a month",
                f"dose {g_per_kg:g} g/kg every {interval_days} days, that is",
                "dose",
            )
        )
    else:
        findings.append(_against(g_per_kg, profile.g_per_kg, "g/kg", "dose", "dose"))
    if profile.courses is not None:
        findings.append(
            Finding(
                "interval",
                True,
                f"a one-off course: no interval between courses applies "
                f"(at most {profile.courses} course{'s' if profile.courses > 1 else ''})",
            )
        )
    elif interval_days is None:
        findings.append(Finding("interval", False, "the order gives no interval (dose.interval_days)"))
    else:
        findings.append(_against(interval_days, profile.interval_days, "days", "interval", "interval"))
    if last_infusion is not None:
        since = (today - last_infusion).days
        minimum = profile.interval_days.min
        if since < 0:
            findings.append(
                Finding("since_last_infusion", False, f"the last infusion date {last_infusion} is in the future")
            )
        elif minimum is not None and since < minimum:
            findings.append(
                Finding(
                    "since_last_infusion",
                    False,
                    f"only {since} days since the last infusion on {last_infusion}; the minimum interval "
                    f"is {minimum:g} days, {minimum - since:g} days to go",
                )
            )
        else:
            findings.append(
                Finding("since_last_infusion", True, f"{since} days since the last infusion on {last_infusion}")
            )
    return findings
