"""Pharmacy pre-approval: may this order be dispensed? Every reason, for and against.

An order is a decision request plus `last_infusion_date`, with the patient identifier, the
product and the dose required. The check finds a valid authorisation for the patient and
diagnosis, or makes (and records) the decision that would create one; then checks the product
against the authorisation and its label, the dose and interval against the authorisation's
dosing profile, and computes the dose-determining weight and the grams to give. The result is
one audit record.
"""

import csv
import datetime
import io
import logging
from dataclasses import dataclass

from service.decide import dosing
from service.decide import supply as supply_phase
from service.decide.formulary import Formulary
from service.decide.request import RequestError, parse_request
from service.rulebook.model import DosingProfile, Label, Rule, Rulebook
from service.store import preapproval_figures
from service.workflow import order_fields
from service.workflow.authorisations import Tampered, active_authorisation, profile_of
from service.workflow.cases import phase_in_force, record_decision, sanitised

log = logging.getLogger(__name__)
MAX_BATCH = 1000  # orders in one HTTP batch or console upload
ORDER_FIELDS = ("patient", "diagnosis", "product", "route", "dose", "last_infusion_date", "therapies", "severity")


def _reason(check: str, ok: bool, message: str) -> dict:
    return {"check": check, "ok": ok, "message": message}


def _last_infusion(order: dict) -> datetime.date | None:
    value = order.get("last_infusion_date")
    if value is None:
        return None
    try:
        return datetime.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise RequestError(
            "invalid_value",
            f"last_infusion_date must be an ISO 8601 date (YYYY-MM-DD), found {value!r}",
            "last_infusion_date",
        ) from None


@dataclass
class _Cover:
    """What the order is dispensed under: a valid authorisation, or the decision made for it now."""

    code: str | None
    authorisation: dict | None
    decision: dict | None
    tampered: str | None = None  # the id of an authorisation that failed its integrity check

    def reason(self) -> dict:
        if self.tampered:
            return _reason(
                "authorisation",
                False,
                f"refused: authorisation {self.tampered} failed its integrity check (it is not as the service "
                "recorded it); ask the pharmacy to investigate",
            )
        if self.authorisation:
            a = self.authorisation
            return _reason(
                "authorisation",
                True,
                f"authorisation {a['id']} ({a['basis']}, {a['code']}) is valid until {a['valid_until']}",
            )
        decision = self.decision or {}
        case = f"; review case {decision['review_case_id']}" if decision.get("review_case_id") else ""
        return _reason(
            "authorisation",
            False,
            f"no valid authorisation for this patient and diagnosis; the decision for "
            f"this order is {decision.get('outcome')}{case}",
        )


def check(instance, formulary: Formulary, order, requester: str, today: datetime.date) -> dict:
    """The pre-approval result for one order; raises RequestError for an order that is malformed."""
    payload, last_infusion = _read_order(order)
    request = parse_request(payload, formulary.vocabulary)
    for needed, present in (("patient.ref", request.patient_ref), ("product", request.facts.product)):
        if present is None:
            raise RequestError("missing_field", f"an order needs {needed}", needed)
    patient_hash = instance.audit.patient_hash(request.patient_ref)
    cover = _cover(instance, formulary, request, payload, patient_hash, requester, today)
    rule, label, product_reasons = _product_checks(formulary.rulebook, request, cover.authorisation)
    authorisation = cover.authorisation
    profile = dosing.limits_for(
        profile_of(authorisation) if authorisation else formulary.rulebook.dosing_for(rule),
        label,
        request.facts.product,
    )
    g_per_kg = request.dose.g_per_kg if request.dose else None
    interval = request.dose.interval_days if request.dose else None
    timing = [f.to_dict() for f in dosing.check_order(profile, g_per_kg, interval, last_infusion, today)]
    used = dosing.courses_given(
        profile, last_infusion, datetime.date.fromisoformat(authorisation["valid_from"]) if authorisation else None
    )
    weight, course, amount_reasons = _amount(formulary.rulebook, request, profile, g_per_kg, interval)
    reasons = [cover.reason(), *product_reasons, *timing, *([used.to_dict()] if used else []), *amount_reasons]
    if authorisation is not None and cover.decision is None:  # granted before: the phase may have changed since
        reasons += _supply_warning(instance, formulary.rulebook, authorisation)
    result = {
        "dispense": all(r["ok"] for r in reasons),
        "reasons": reasons,
        "authorisation": authorisation,
        "decision": cover.decision,
        "dosing_profile": {
            "id": profile.id,
            "g_per_kg": vars(profile.g_per_kg),
            "interval_days": vars(profile.interval_days),
            "courses": profile.courses,
            "monthly": profile.monthly,
        },
        "weight": weight.to_dict() if weight else None,
        "dose": course.to_dict() if course else None,
    }
    body = {"order": sanitised(order, patient_hash), "result": result}
    record = instance.audit.append(
        "preapproval",
        body,
        bind=[preapproval_figures.row(body)],  # the figures the reports sum, with the record
        requester=requester,
        status=200,
        code=cover.code,
        patient_ref_hash=patient_hash,
        outcome=cover.decision["outcome"] if cover.decision else None,
        rule_id=authorisation["rule_id"] if authorisation else None,
        rulebook_version=formulary.rulebook.version,
        rulebook_digest=formulary.rulebook.digest,
    )
    return {"preapproval_id": record["id"], **result}  # an administration names it (its record's id)


def _supply_warning(instance, rulebook: Rulebook, authorisation: dict) -> list[dict]:
    """A warning (not a refusal: the authorisation stands) when a supply phase is in force that
    sends the authorisation's tier to review or refuses it, naming the phase; none otherwise."""
    phase, why = phase_in_force(instance, rulebook)
    if rulebook.supply is None or phase is None or not supply_phase.is_shortage(rulebook.supply, phase):
        return []
    rule = rulebook.rule(authorisation["rule_id"]) if authorisation["rule_id"] else None
    granted = f"authorisation {authorisation['id']} was granted on {authorisation['valid_from']}"
    if rule is None:
        message = (
            f"warning: supply phase {phase} ({why}) is in force, and {granted} under no rule of rulebook "
            f"{rulebook.version}, so its tier is unknown: confirm with a pharmacist or the committee before giving it"
        )
    else:
        action = supply_phase.action_for(rulebook.supply, phase, rule.tier)
        if action == "as_usual":
            return []
        effect = "go to review" if action == "needs_review" else "are not supported"
        message = (
            f"warning: supply phase {phase} ({why}): {rule.tier}-tier indications {effect} while it lasts, and "
            f"{granted} (rule {rule.id}, tier {rule.tier}): confirm with a pharmacist or the committee before giving it"
        )
    return [{**_reason("supply_phase", True, message), "warning": True}]


def _read_order(order) -> tuple[dict, datetime.date | None]:
    """The decision request an order carries, and its last infusion date; refuses a malformed order."""
    if not isinstance(order, dict):
        raise RequestError("wrong_type", "an order must be an object", "")
    for key in order:
        if key not in ORDER_FIELDS:
            raise RequestError(
                "unknown_field", f"{key} is not an order field (allowed: {', '.join(ORDER_FIELDS)})", key
            )
    return {k: v for k, v in order.items() if k != "last_infusion_date"}, _last_infusion(order)


def _cover(
    instance, formulary: Formulary, request, payload: dict, patient_hash: str, requester: str, today: datetime.date
) -> _Cover:
    """The patient's valid authorisation for the diagnosis, or else the decision (recorded) that
    may grant one. A diagnosis matched only approximately never finds an authorisation."""
    diagnosis = formulary.terminology.resolve(request.code, request.text)
    code = diagnosis.plain_code
    recognised = not diagnosis.problem and not diagnosis.is_proposal

    def valid_authorisation() -> dict | None:
        if code is None or not recognised:
            return None
        return active_authorisation(instance, patient_hash, code, formulary.terminology.diagnosis_of(code), today)

    decision = None
    try:
        authorisation = valid_authorisation()
        if authorisation is None:
            decision = record_decision(instance, formulary, payload, requester)
            if decision["authorisation_id"]:
                authorisation = valid_authorisation()
    except Tampered as tampered:  # refused, and on the record with the pre-approval
        log.error("authorisation %s failed its integrity check: order refused", tampered.authorisation_id)
        return _Cover(code, None, decision, tampered.authorisation_id)
    return _Cover(code, authorisation, decision)


def _product_checks(
    rulebook: Rulebook, request, authorisation: dict | None
) -> tuple[Rule | None, Label | None, list[dict]]:
    """The product against the formulary, the label (for this patient and route) and the
    authorisation; with the authorisation's rule and the label whose dose applies, if any."""
    product, route = request.facts.product, request.facts.route
    unverified = (
        "" if rulebook.products[product].verified else " (its label is not verified, so no use of it is labelled here)"
    )
    reasons = [_reason("formulary", True, f"{product} is on the formulary{unverified}")]
    rule = rulebook.rule(authorisation["rule_id"]) if authorisation and authorisation["rule_id"] else None
    label = None
    if rule and rule.labelled_indication:
        covered = product in rulebook.labelled_products(
            rule.labelled_indication, request.facts.age_years, product, route
        )
        reasons.append(
            _reason(
                "label",
                covered,
                f"{product}'s label {'covers' if covered else 'does not cover'} "
                f"{rulebook.indications[rule.labelled_indication]} for this patient "
                f"({route}){'' if covered else '; the order needs review'}",
            )
        )
        label = rulebook.label_of(product, rule.labelled_indication, route) if covered else None
    if authorisation and authorisation["products"] and product not in authorisation["products"]:
        reasons.append(
            _reason(
                "authorised_product",
                False,
                f"the authorisation is on label for "
                f"{', '.join(authorisation['products'])}; {product} is not among them",
            )
        )
    return rule, label, reasons


def _amount(rulebook: Rulebook, request, profile: DosingProfile, g_per_kg: float | None, interval: int | None):
    """The dose-determining weight, the grams in the product's vials, and the dose against the
    profile's maximum: (weight, course, reasons)."""
    weight = course = None
    reasons = []
    try:
        weight = dosing.dosing_weight(
            request.weight_kg,
            request.height_cm,
            request.facts.age_years,
            request.facts.sex,
            request.facts.pregnant,
            rulebook.weight_rule,
        )
        reasons.append(_reason("weight", True, f"dosing weight {weight.dosing_kg:g} kg ({weight.basis})"))
    except dosing.MissingFact as missing:
        reasons.append(_reason("weight", False, f"the dosing weight needs {missing}"))
    if weight and g_per_kg:
        limits = dosing.course_limits(profile, interval)
        course = dosing.course_grams(
            g_per_kg,
            weight.dosing_kg,
            limits,
            rulebook.products[request.facts.product].vial_sizes_g,
            rulebook.rounding_rule,
        )
        if course.rounded_grams is None:
            reasons.append(
                _reason("vials", False, f"{course.grams:g} g {course.rounding}; a pharmacist decides the amount")
            )
        else:
            made_of = " + ".join(f"{count} x {size:g} g" for size, count in course.vials)
            reasons.append(
                _reason(
                    "vials", True, f"{course.rounded_grams:g} g ({made_of}) for the exact dose of {course.grams:g} g"
                )
            )
        if limits.max is not None and g_per_kg > limits.max + 1e-9:
            extra = round(course.grams - limits.max * weight.dosing_kg, 2)
            reasons.append(
                _reason(
                    "dose_amount",
                    False,
                    f"the order is {course.grams:g} g for this patient, {extra:g} g above "
                    f"the maximum ({profile.id}); a pharmacist or the committee reviews it",
                )
            )
    return weight, course, reasons


def orders_from_bytes(data: bytes, field: str) -> list[tuple[int, dict | RequestError]]:
    """orders_from_csv for an infusion list as sent (a text/csv body or an uploaded file).

    It must be UTF-8: bytes that are not are refused, naming where, never replaced, since a
    replaced character can make two patients' references one and match the second to the first's
    authorisation.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise RequestError(
            "invalid_csv",
            f"the CSV is not UTF-8 text: line {line} (byte offset {error.start}, byte 0x{data[error.start]:02x}); "
            "export the list as CSV (UTF-8)",
            field,
        ) from None
    return orders_from_csv(text)


def orders_from_csv(text: str) -> list[tuple[int, dict | RequestError]]:
    """(row number, order or the error that row has) for each data row of an infusion list."""
    reader = csv.DictReader(io.StringIO(text, newline=""))  # any line endings, as csv expects
    try:
        return _read_orders(reader)
    except csv.Error as error:
        raise RequestError("invalid_csv", f"the CSV cannot be read: {error}", "file") from None


def _read_orders(reader: csv.DictReader) -> list[tuple[int, dict | RequestError]]:
    unknown = [c for c in reader.fieldnames or [] if c not in order_fields.NAMES]
    if unknown or not reader.fieldnames:
        raise RequestError(
            "invalid_csv",
            f"unknown or missing columns {unknown}; the columns are {', '.join(order_fields.NAMES)}",
            "file",
        )
    orders: list[tuple[int, dict | RequestError]] = []
    for number, row in enumerate(reader, start=2):  # row 1 is the header
        try:
            orders.append((number, order_fields.from_fields({k: v for k, v in row.items() if k}, number)))
        except RequestError as error:
            orders.append((number, error))
    return orders


def limit_batch(orders: list, field: str) -> list:
    """The orders of one HTTP batch, refused whole past MAX_BATCH (the CLI takes any length)."""
    if len(orders) > MAX_BATCH:
        raise RequestError("too_long", f"{len(orders)} orders; at most {MAX_BATCH} a batch", field)
    return orders


def check_batch(
    instance, formulary: Formulary, orders, requester: str, today: datetime.date, progress=None
) -> list[dict]:
    """One result per order, in order; a bad order gives a row-numbered error, not a failed batch."""
    results = []
    for number, order in orders:
        if isinstance(order, RequestError):
            results.append({"row": number, "error": order.to_dict()})
        else:
            try:
                results.append({"row": number, **check(instance, formulary, order, requester, today)})
            except RequestError as error:
                results.append({"row": number, "error": error.to_dict()})
        if progress:
            progress(1)
    return results
