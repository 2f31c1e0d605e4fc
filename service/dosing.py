"""Dose-determining weight, the dose in grams, and checks of an order against a dosing profile.

The rulebook carries the numbers (g/kg per course, days between courses); this module only
computes. The weight rule is the one Australia's national Ig criteria use from July 2026:
- ideal body weight (Devine): 50 kg for men, 45.5 kg for women, plus 2.3 kg per inch over 5 feet;
- adjusted weight = ideal + 0.4 x (actual - ideal);
- the actual weight is used for patients under 18, under 152 cm tall, pregnant, or whose actual
  weight is below the adjusted weight; otherwise the adjusted weight.
Sexes other than male and female have no Devine base: the female base is used (the lower dose)
and the result says so.

Rounding: products come in vials of 2.5 g and multiples of it, so the dose in grams is rounded to
the nearest 2.5 g, and down instead whenever rounding up would pass the profile's maximum g/kg.
"""
import datetime
import math
from dataclasses import dataclass

from .rulebook import DosingProfile

CM_PER_INCH = 2.54
FIVE_FEET_INCHES = 60
KG_PER_INCH = 2.3
DEVINE_BASE_KG = {"male": 50.0, "female": 45.5}
ADJUSTMENT_FACTOR = 0.4
ADULT_AGE = 18
SHORT_STATURE_CM = 152
VIAL_GRAMS = 2.5


@dataclass(frozen=True)
class Weight:
    actual_kg: float
    dosing_kg: float
    basis: str                          # why this weight is the dosing weight
    ideal_kg: float | None = None
    adjusted_kg: float | None = None

    def to_dict(self) -> dict:
        return {"actual_kg": self.actual_kg, "ideal_kg": self.ideal_kg, "adjusted_kg": self.adjusted_kg,
                "dosing_kg": self.dosing_kg, "basis": self.basis}


class MissingFact(ValueError):
    """The dosing weight needs a fact the order does not give; the message names it."""


def ideal_body_weight(height_cm: float, sex: str | None) -> tuple[float, str]:
    base = DEVINE_BASE_KG.get(sex or "", DEVINE_BASE_KG["female"])
    note = "" if sex in DEVINE_BASE_KG else " (female base: no Devine base for this sex)"
    inches_over = height_cm / CM_PER_INCH - FIVE_FEET_INCHES
    return round(base + KG_PER_INCH * inches_over, 1), note


def dosing_weight(actual_kg: float | None, height_cm: float | None, age_years: float | None,
                  sex: str | None, pregnant: bool | None) -> Weight:
    """The weight to dose on, with the reason; raises MissingFact naming what it needs."""
    if actual_kg is None:
        raise MissingFact("patient.weight_kg")
    if age_years is not None and age_years < ADULT_AGE:
        return Weight(actual_kg, actual_kg, f"actual weight: under {ADULT_AGE}")
    if pregnant:
        return Weight(actual_kg, actual_kg, "actual weight: pregnant")
    if height_cm is not None and height_cm < SHORT_STATURE_CM:
        return Weight(actual_kg, actual_kg, f"actual weight: under {SHORT_STATURE_CM} cm")
    if age_years is None:
        raise MissingFact("patient.age_years")
    if height_cm is None:
        raise MissingFact("patient.height_cm")
    if pregnant is None and sex != "male":
        raise MissingFact("patient.pregnant")
    ideal, note = ideal_body_weight(height_cm, sex)
    adjusted = round(ideal + ADJUSTMENT_FACTOR * (actual_kg - ideal), 1)
    if actual_kg < adjusted:
        return Weight(actual_kg, actual_kg, "actual weight: below the adjusted weight" + note, ideal, adjusted)
    return Weight(actual_kg, adjusted, "adjusted weight" + note, ideal, adjusted)


def course_grams(g_per_kg: float, weight_kg: float, profile: DosingProfile) -> tuple[float, float]:
    """(exact grams, grams rounded to whole vials) for one course."""
    exact = g_per_kg * weight_kg
    rounded = round(exact / VIAL_GRAMS) * VIAL_GRAMS
    ceiling = profile.g_per_kg.max * weight_kg if profile.g_per_kg.max is not None else math.inf
    if rounded > ceiling + 1e-9:
        rounded = math.floor(exact / VIAL_GRAMS) * VIAL_GRAMS
    return round(exact, 2), rounded


@dataclass(frozen=True)
class Finding:
    check: str          # what was checked
    ok: bool
    message: str

    def to_dict(self) -> dict:
        return {"check": self.check, "ok": self.ok, "message": self.message}


def _against(value: float, limits, unit: str, what: str, check: str) -> Finding:
    if limits.min is not None and value < limits.min:
        short = limits.min - value
        return Finding(check, False, f"{what} {value:g} {unit} is below the minimum {limits.min:g} {unit} "
                                     f"by {short:g} {unit} ({short / limits.min:.0%})")
    if limits.max is not None and value > limits.max:
        over = value - limits.max
        return Finding(check, False, f"{what} {value:g} {unit} exceeds the maximum {limits.max:g} {unit} "
                                     f"by {over:g} {unit} ({over / limits.max:.0%})")
    if limits.max is None:
        return Finding(check, True, f"{what} {value:g} {unit} meets the minimum of {limits.min:g} {unit}")
    return Finding(check, True, f"{what} {value:g} {unit} is within {limits.min or 0:g}-{limits.max:g} {unit}")


def check_order(profile: DosingProfile, g_per_kg: float | None, interval_days: int | None,
                last_infusion: datetime.date | None, today: datetime.date) -> list[Finding]:
    """Every dose and timing finding for an order; nothing outside the range passes silently."""
    findings = []
    if g_per_kg is None:
        findings.append(Finding("dose", False, "the order gives no dose (dose.g_per_kg)"))
    else:
        findings.append(_against(g_per_kg, profile.g_per_kg, "g/kg", "dose", "dose"))
    if profile.courses is not None:
        findings.append(Finding("interval", True, f"a one-off course: no interval between courses applies "
                                                  f"(at most {profile.courses} course{'s' if profile.courses > 1 else ''})"))
    elif interval_days is None:
        findings.append(Finding("interval", False, "the order gives no interval (dose.interval_days)"))
    else:
        findings.append(_against(interval_days, profile.interval_days, "days", "interval", "interval"))
    if last_infusion is not None:
        since = (today - last_infusion).days
        minimum = profile.interval_days.min
        if since < 0:
            findings.append(Finding("since_last_infusion", False, f"the last infusion date {last_infusion} is in the future"))
        elif minimum is not None and since < minimum:
            findings.append(Finding("since_last_infusion", False,
                                    f"only {since} days since the last infusion on {last_infusion}; the minimum interval "
                                    f"is {minimum:g} days, {minimum - since:g} days to go"))
        else:
            findings.append(Finding("since_last_infusion", True, f"{since} days since the last infusion on {last_infusion}"))
    return findings
