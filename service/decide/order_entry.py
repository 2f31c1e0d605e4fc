"""Order entry from the EHR (CDS Hooks 2.0): the discovery document, a hook call read and checked,
an IVIG MedicationRequest turned into the decision request the API takes, and the card that
answers it. Pure: no Flask, no database, no network (service/workflow/order_entry.py does the
fetching and recording).

Names follow the CDS Hooks specification (https://cds-hooks.hl7.org/2.0/) and the Da Vinci CRD
cards page: `hook`, `hookInstance`, `fhirServer`, `fhirAuthorization`, `context.draftOrders`,
`prefetch`; a card's `summary`, `indicator`, `detail`, `source`, `suggestions`,
`selectionBehavior`, `overrideReasons`, `links`, `uuid`.

What is clinical (which words name IVIG, which LOINC codes fill which fact, the override reasons)
comes from the rulebook's data/order_entry.yaml and products.yaml, never from here.
"""

import datetime
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from service import clock
from service.decide import dosing
from service.decide.decision import OUTCOME_WORDS
from service.decide.formulary import Formulary
from service.decide.questionnaire import UnknownFact, questionnaire
from service.decide.request import RequestError
from service.rulebook.model import OrderEntry, Rulebook

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CARD_TYPES = "http://terminology.hl7.org/CodeSystem/cdshooks-card-type"
SDC_TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"  # complete-questionnaire, questionnaire (Da Vinci CRD's Task)
MAX_SWITCHES = 3  # switch suggestions on one card at most
SUMMARY_LIMIT = 139  # the specification: a summary of fewer than 140 characters
MAX_ORDERS = 50  # draft orders read from one call at most
FINAL = ("final", "amended", "corrected")

SERVICES = {
    "ivig-order-select": (
        "order-select",
        "IVIG prior authorisation (order selected)",
        "Decides an intravenous immunoglobulin order as it is selected, on the hospital formulary's rules: "
        "approved, off-label with evidence, needs review or not supported, with the evidence and any missing facts.",
    ),
    "ivig-order-sign": (
        "order-sign",
        "IVIG prior authorisation (order signed)",
        "Decides an intravenous immunoglobulin order before it is signed, on the hospital formulary's rules, "
        "records the decision, and suggests the dose rounded to the product's vials.",
    ),
}
# Card indicators by outcome (the issue; CRD asks `critical` only for serious clinical outcomes:
# IVIG where controlled studies found no benefit exposes the patient to its risks for nothing).
INDICATORS = {
    "approved": "info",
    "off_label_with_evidence": "info",
    "needs_review": "warning",
    "not_supported": "critical",
}
_SHORT = {
    "approved": "Approved (FDA-labelled)",
    "off_label_with_evidence": "Approved off-label (evidence of benefit)",
    "needs_review": "Needs pharmacist review",
    "not_supported": "Not supported",
}


# --- discovery --------------------------------------------------------------------------------


def prefetch_templates(entry: OrderEntry | None) -> dict[str, str]:
    """The prefetch templates each service asks for (CDS Hooks "Prefetch Template")."""
    patient = "{{context.patientId}}"
    templates = {
        "patient": f"Patient/{patient}",
        "conditions": f"Condition?patient={patient}&clinical-status=active",
        "medications": f"MedicationRequest?patient={patient}&status=active",
    }
    for observation in entry.observations if entry else ():
        templates[_prefetch_key(observation)] = (
            f"Observation?patient={patient}&code={LOINC}|{observation.loinc}&_sort=-date&_count=1"
        )
    return templates


def _prefetch_key(observation) -> str:
    return {"patient.weight_kg": "weight", "patient.height_cm": "height", "patient.pregnant": "pregnancy"}.get(
        observation.fills, observation.measure or observation.loinc
    )


def discovery(rulebook: Rulebook) -> dict:
    templates = prefetch_templates(rulebook.order_entry)
    return {
        "services": [
            {"hook": hook, "title": title, "description": description, "id": service_id, "prefetch": templates}
            for service_id, (hook, title, description) in SERVICES.items()
        ]
    }


# --- the call ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HookCall:
    """A CDS Hooks call, checked."""

    service_id: str
    hook: str
    hook_instance: str
    context: dict
    prefetch: dict
    fhir_server: str | None = None
    access_token: str | None = None

    @property
    def user_id(self) -> str:
        return self.context["userId"]

    @property
    def patient_id(self) -> str:
        return self.context["patientId"]


def _string(value, field_name: str, required: bool = True, limit: int = 512) -> str | None:
    if value is None:
        if required:
            raise RequestError("missing_field", f"{field_name} is required", field_name)
        return None
    if not isinstance(value, str) or not value.strip():
        raise RequestError("wrong_type", f"{field_name} must be non-empty text", field_name)
    if len(value) > limit:
        raise RequestError("too_long", f"{field_name} is longer than {limit} characters", field_name)
    return value


def _mapping(value, field_name: str, required: bool = True) -> dict:
    if value is None and not required:
        return {}
    if value is None:
        raise RequestError("missing_field", f"{field_name} is required", field_name)
    if not isinstance(value, dict):
        raise RequestError("wrong_type", f"{field_name} must be an object", field_name)
    return value


def read_call(service_id: str, body) -> HookCall:
    """A hook call's body checked against the specification; RequestError names the field."""
    if service_id not in SERVICES:
        raise RequestError("not_found", f"no CDS service {service_id!r}", "id")
    body = _mapping(body, "the body")
    hook = _string(body.get("hook"), "hook")
    expected = SERVICES[service_id][0]
    if hook != expected:
        raise RequestError("invalid_value", f"hook must be {expected!r} for {service_id}, found {hook!r}", "hook")
    hook_instance = _string(body.get("hookInstance"), "hookInstance", limit=128)
    assert hook is not None and hook_instance is not None  # required: _string refused them missing
    fhir_server = _string(body.get("fhirServer"), "fhirServer", required=False)
    if fhir_server is not None and urlsplit(fhir_server).scheme not in ("https", "http"):
        raise RequestError("invalid_value", "fhirServer must be an http(s) URL", "fhirServer")
    token = None
    if body.get("fhirAuthorization") is not None:
        auth = _mapping(body["fhirAuthorization"], "fhirAuthorization")
        for name in ("access_token", "token_type", "scope", "subject"):
            _string(auth.get(name), f"fhirAuthorization.{name}", limit=8192)
        if auth["token_type"] != "Bearer":
            raise RequestError("invalid_value", "fhirAuthorization.token_type must be 'Bearer'", "fhirAuthorization")
        expires = auth.get("expires_in")
        if isinstance(expires, bool) or not isinstance(expires, int):
            raise RequestError(
                "missing_field", "fhirAuthorization.expires_in must be a whole number", "fhirAuthorization.expires_in"
            )
        if fhir_server is None:
            raise RequestError("missing_field", "fhirServer is required when fhirAuthorization is given", "fhirServer")
        token = auth["access_token"]
    context = _mapping(body.get("context"), "context")
    _string(context.get("userId"), "context.userId", limit=256)
    _string(context.get("patientId"), "context.patientId", limit=64)
    _string(context.get("encounterId"), "context.encounterId", required=False, limit=256)
    bundle = _mapping(context.get("draftOrders"), "context.draftOrders")
    if bundle.get("resourceType") != "Bundle":
        raise RequestError(
            "invalid_value", "context.draftOrders must be a FHIR Bundle (resourceType 'Bundle')", "context.draftOrders"
        )
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise RequestError("wrong_type", "context.draftOrders.entry must be a list", "context.draftOrders.entry")
    if len(entries) > MAX_ORDERS:
        raise RequestError("too_long", f"at most {MAX_ORDERS} draft orders a call", "context.draftOrders.entry")
    for i, entry in enumerate(entries):
        resource = _mapping(
            _mapping(entry, f"context.draftOrders.entry[{i}]").get("resource"),
            f"context.draftOrders.entry[{i}].resource",
        )
        _string(resource.get("resourceType"), f"context.draftOrders.entry[{i}].resource.resourceType")
    if hook == "order-select":
        selections = context.get("selections")
        if not isinstance(selections, list) or not selections or not all(isinstance(s, str) for s in selections):
            raise RequestError(
                "missing_field", "context.selections must be a list of order references", "context.selections"
            )
    prefetch = _mapping(body.get("prefetch"), "prefetch", required=False)
    for key, value in prefetch.items():
        if value is not None and not (isinstance(value, dict) and isinstance(value.get("resourceType"), str)):
            raise RequestError("wrong_type", f"prefetch.{key} must be a FHIR resource or null", f"prefetch.{key}")
    return HookCall(service_id, hook, hook_instance, context, prefetch, fhir_server, token)


def _fhir(model, resource: dict, where: str):
    """A FHIR R4 resource read with fhir.resources (its R4B models are R4's for these resources)."""
    from pydantic import ValidationError

    try:
        return model.model_validate(resource)
    except ValidationError as error:
        first = error.errors()[0]
        path = ".".join(str(part) if not isinstance(part, int) else f"[{part}]" for part in first["loc"])
        path = path.replace(".[", "[")
        raise RequestError("invalid_fhir", f"{where}.{path}: {first['msg']}", f"{where}.{path}") from None


# --- IVIG orders ------------------------------------------------------------------------------


@dataclass
class Order:
    """One draft MedicationRequest for IVIG."""

    index: int
    resource: dict
    model: Any  # fhir.resources' R4B MedicationRequest
    product: str | None
    reference: str


def _words(text: str) -> str:
    return " " + " ".join(re.sub(r"[^0-9a-z%]+", " ", text.lower()).split()) + " "


def ivig_orders(call: HookCall, rulebook: Rulebook) -> list[Order]:
    """The draft MedicationRequests for IVIG (for order-select, the selected ones), in order."""
    from fhir.resources.R4B.medicationrequest import MedicationRequest

    selected = set(call.context.get("selections") or ()) if call.hook == "order-select" else None
    by_code = {code: name for name, product in rulebook.products.items() for code in product.rxnorm}
    names = sorted(rulebook.products, key=len, reverse=True)  # "Octagam 10%" before "Octagam"
    generic = rulebook.order_entry.generic_names if rulebook.order_entry else ()
    orders = []
    for i, entry in enumerate(call.context["draftOrders"].get("entry") or []):
        resource = entry["resource"]
        if resource["resourceType"] != "MedicationRequest":
            continue
        reference = f"MedicationRequest/{resource.get('id')}"
        if selected is not None and reference not in selected:
            continue
        where = f"context.draftOrders.entry[{i}].resource"
        model = _fhir(MedicationRequest, resource, where)
        concept = model.medicationCodeableConcept
        if concept is None:
            continue  # a medicationReference: the medication is not in the order to recognise
        codes = [c.code for c in concept.coding or () if c.system == RXNORM and c.code]
        product = next((by_code[c] for c in codes if c in by_code), None)
        texts = _words(" ".join([concept.text or ""] + [c.display or "" for c in concept.coding or ()]))
        if product is None:
            product = next((n for n in names if _words(n) in texts), None)
        if product is None and not any(_words(g) in texts for g in generic):
            continue
        orders.append(Order(i, resource, model, product, reference))
    return orders


# --- the facts the prefetch (or the FHIR server) gives ----------------------------------------


def resources_of(value) -> list[dict]:
    """The resources a prefetch value holds: the resource itself, or a searchset Bundle's entries
    (OperationOutcomes, which an EHR sends for a template it could not satisfy, left out)."""
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") == "Bundle":
        found = [e.get("resource") for e in value.get("entry") or [] if isinstance(e, dict)]
        return [r for r in found if isinstance(r, dict) and r.get("resourceType") != "OperationOutcome"]
    return [] if value.get("resourceType") == "OperationOutcome" else [value]


@dataclass
class Chart:
    """What the EHR sent about the patient, by prefetch key; `unavailable` the keys that could not be had."""

    resources: dict[str, list[dict]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # key -> why


def missing_keys(call: HookCall, templates: dict[str, str]) -> list[str]:
    """Prefetch keys the call did not satisfy (a key sent as null means "no data", not missing)."""
    return [key for key in templates if key not in call.prefetch]


def rendered(template: str, call: HookCall) -> str:
    """A prefetch template with its tokens replaced (only {{context.patientId}} and {{context.userId}})."""
    return template.replace("{{context.patientId}}", quote(call.patient_id, safe="")).replace(
        "{{context.userId}}", quote(call.user_id, safe="/")
    )


# --- the decision request ---------------------------------------------------------------------


@dataclass
class Built:
    """The decision request built from an order, and what could not be read (shown on the card)."""

    payload: dict | None
    not_read: list[str]
    ordered_grams: float | None = None
    weight: dosing.Weight | None = None
    dose_g_per_kg: float | None = None
    interval_days: int | None = None
    route: str = "intravenous"


def _order_day(order: Order) -> datetime.date:
    authored = order.model.authoredOn
    if isinstance(authored, datetime.datetime):
        return authored.date()
    if isinstance(authored, datetime.date):
        return authored
    return clock.utc_today()


def _age(birth, on: datetime.date) -> float | None:
    if not isinstance(birth, datetime.date) or birth > on:
        return None
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    try:
        last = birth.replace(year=birth.year + years)
        following = birth.replace(year=birth.year + years + 1)
    except ValueError:  # born on 29 February
        last = datetime.date(birth.year + years, 3, 1)
        following = datetime.date(birth.year + years + 1, 3, 1)
    return round(years + (on - last).days / (following - last).days, 4)


def _diagnosis(concepts, where: str) -> dict | None:
    for concept in concepts:
        for coding in concept.coding or ():
            if coding.system == ICD10CM and coding.code:
                return {"code": coding.code}
    for concept in concepts:
        text = concept.text or next((c.display for c in concept.coding or () if c.display), None)
        if text:
            return {"text": text[:200]}
    return None


def _quantity_value(quantity) -> tuple[float, str] | None:
    if quantity is None or quantity.value is None:
        return None
    return float(quantity.value), (quantity.code or quantity.unit or "")


def _observations(chart: Chart, entry: OrderEntry | None, today: datetime.date):
    """The latest final observation of each kind the data file names: {field or measure: (value, unit, day)}."""
    from fhir.resources.R4B.observation import Observation

    found: dict[str, tuple] = {}
    for observation in entry.observations if entry else ():
        key = _prefetch_key(observation)
        latest = None
        for i, raw in enumerate(chart.resources.get(key, [])):
            if raw.get("resourceType") != "Observation":
                continue
            model = _fhir(Observation, raw, f"prefetch.{key}[{i}]")
            codes = {c.code for c in model.code.coding or () if c.system == LOINC}
            if observation.loinc not in codes or model.status not in FINAL:
                continue
            when = model.effectiveDateTime
            day = when.date() if isinstance(when, datetime.datetime) else when
            if not isinstance(day, datetime.date) or day > today:
                continue
            if latest is None or day > latest[0]:
                latest = (day, model)
        if latest is not None:
            found[key] = (observation, latest[0], latest[1])
    return found


_WEIGHT_KG = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237}
_HEIGHT_CM = {"cm": 1.0, "m": 100.0, "[in_i]": 2.54}
_DOSE = {"g/kg": 1.0, "mg/kg": 0.001}


def build_request(order: Order, call: HookCall, chart: Chart, rulebook: Rulebook, vocabulary) -> Built:
    """The decision request (the API's JSON body) for one order, from the order and the chart."""
    from fhir.resources.R4B.condition import Condition
    from fhir.resources.R4B.patient import Patient

    not_read = [f"{key} (not available: {why})" for key, why in chart.unavailable.items()]
    model = order.model
    on = _order_day(order)
    today = clock.utc_today()
    payload: dict = {"patient": {"ref": call.patient_id}}
    patients = [r for r in chart.resources.get("patient", []) if r.get("resourceType") == "Patient"]
    patient = _fhir(Patient, patients[0], "prefetch.patient") if patients else None
    if patient is None:
        not_read.append("the patient (age, sex)")
    else:
        age = _age(patient.birthDate, on)
        if age is None:
            not_read.append("age: the patient's birth date is not a full date")
        else:
            payload["patient"]["age_years"] = age
        if patient.gender in ("female", "male", "other", "unknown"):
            payload["patient"]["sex"] = patient.gender
    diagnosis = _diagnosis(model.reasonCode or (), "reasonCode")
    if diagnosis is None:
        conditions = {f"Condition/{r.get('id')}": r for r in chart.resources.get("conditions", [])}
        for reference in model.reasonReference or ():
            raw = conditions.get(reference.reference or "")
            if raw is not None:
                condition = _fhir(Condition, raw, f"prefetch.conditions[{reference.reference}]")
                diagnosis = _diagnosis([condition.code] if condition.code else [], "reasonReference")
                if diagnosis:
                    break
    if diagnosis is None:
        not_read.append("the indication: the order has no reasonCode, and no reasonReference to a Condition sent")
    else:
        payload["diagnosis"] = diagnosis
    if order.product:
        payload["product"] = order.product
    built = Built(None, not_read)
    route_words = _words(" ".join(d.route.text or "" for d in model.dosageInstruction or () if d.route))
    if any(w in route_words for w in (" subcutaneous ", " sc ", " subcut ")):
        built.route = payload["route"] = "subcutaneous"
    entry = rulebook.order_entry
    for key, (observation, day, obs) in _observations(chart, entry, today).items():
        quantity = _quantity_value(obs.valueQuantity)
        if observation.fills == "patient.pregnant":
            codes = {c.code for c in (obs.valueCodeableConcept.coding if obs.valueCodeableConcept else ()) or ()}
            if codes & observation.pregnant_codes:
                payload["patient"]["pregnant"] = True
            elif codes & observation.not_pregnant_codes:
                payload["patient"]["pregnant"] = False
            continue
        if quantity is None:
            not_read.append(f"{key}: the observation has no value")
            continue
        value, unit = quantity
        if observation.fills in ("patient.weight_kg", "patient.height_cm"):
            factors = _WEIGHT_KG if observation.fills == "patient.weight_kg" else _HEIGHT_CM
            if unit not in factors:
                not_read.append(f"{key}: unit {unit!r} is not one read here ({', '.join(factors)})")
                continue
            payload["patient"][observation.fills.split(".")[1]] = round(value * factors[unit], 2)
        else:
            if unit not in observation.units:
                not_read.append(f"{key}: unit {unit!r} is not one read here ({', '.join(observation.units)})")
                continue
            payload.setdefault("observations", []).append(
                {"measure": observation.measure, "value": value, "unit": observation.units[unit], "taken_on": str(day)}
            )
    concurrent = _therapies(chart, vocabulary)
    if concurrent:
        payload["therapies"] = {"concurrent": concurrent}
    _dose(model, payload, built, rulebook)
    built.payload = payload if "diagnosis" in payload else None
    return built


def _therapies(chart: Chart, vocabulary) -> list[str]:
    """Therapies in the rulebook's vocabulary that the patient's active medications name. None
    found says nothing (the list may be incomplete): the fact is then left for the rules to ask."""
    found: list[str] = []
    spellings = vocabulary.therapies  # spelling key -> therapy id
    for raw in chart.resources.get("medications", []):
        concept = raw.get("medicationCodeableConcept") or {}
        text = _words(
            " ".join([concept.get("text") or ""] + [c.get("display") or "" for c in concept.get("coding") or []])
        )
        for spelling, therapy in spellings.items():
            if _words(spelling) in text and therapy not in found:
                found.append(therapy)
    return found


def _dose(model, payload: dict, built: Built, rulebook: Rulebook) -> None:
    """The ordered dose as g/kg (from g/kg, mg/kg, or grams over the dosing weight) and the interval."""
    instructions = model.dosageInstruction or []
    if not instructions:
        built.not_read.append("the dose: the order has no dosageInstruction")
        return
    instruction = instructions[0]
    repeat = instruction.timing.repeat if instruction.timing else None
    if repeat is not None and repeat.period and (repeat.frequency or 1) == 1 and repeat.periodUnit in ("d", "wk"):
        days = float(repeat.period) * (7 if repeat.periodUnit == "wk" else 1)
        if days == int(days) and 1 <= days <= 365:
            built.interval_days = int(days)
    quantity = None
    for rate in instruction.doseAndRate or ():
        quantity = _quantity_value(rate.doseQuantity)
        if quantity:
            break
    patient = payload["patient"]
    try:
        built.weight = dosing.dosing_weight(
            patient.get("weight_kg"),
            patient.get("height_cm"),
            patient.get("age_years"),
            patient.get("sex"),
            patient.get("pregnant"),
            rulebook.weight_rule,
        )
    except dosing.MissingFact as missing:
        built.not_read.append(f"the dosing weight: it needs {missing}")
    if quantity is None:
        built.not_read.append("the dose: no doseQuantity")
        return
    value, unit = quantity
    if unit in _DOSE:
        built.dose_g_per_kg = round(value * _DOSE[unit], 4)
        if built.weight:
            built.ordered_grams = round(built.dose_g_per_kg * built.weight.dosing_kg, 2)
    elif unit == "g":
        built.ordered_grams = value
        if built.weight:
            built.dose_g_per_kg = round(value / built.weight.dosing_kg, 4)
        else:
            built.not_read.append("the dose in g/kg: an order in grams needs the dosing weight")
    else:
        built.not_read.append(f"the dose: unit {unit!r} is not g, g/kg or mg/kg")
    if built.dose_g_per_kg is not None and 0.01 <= built.dose_g_per_kg <= 5:
        payload["dose"] = {"g_per_kg": built.dose_g_per_kg}
        if built.interval_days:
            payload["dose"]["interval_days"] = built.interval_days


# --- the card ---------------------------------------------------------------------------------


def _summary(outcome: str | None, product: str | None, indication: str) -> str:
    head = _SHORT.get(outcome or "", "Not decided")
    text = f"{head}: IVIG{' (' + product + ')' if product else ''} for {indication}"
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def _rule_page(base: str, rule_id: str | None) -> str:
    return f"{base}/console/formulary" + (f"?q={quote(rule_id)}#{quote(rule_id)}" if rule_id else "")


def dose_suggestion(decision: dict, order: Order, built: Built, rulebook: Rulebook) -> dict | None:
    """A suggestion to update the order's dose to what the rules give for the dosing weight, in the
    product's vials, when that differs from the dose ordered; None when it does not or cannot be said."""
    if decision["outcome"] == "not_supported" or not order.product or built.weight is None:
        return None
    if built.ordered_grams is None or built.dose_g_per_kg is None:
        return None
    rule = rulebook.rule(decision["rule"]["id"]) if decision.get("rule") else None
    label = None
    if rule and rule.labelled_indication and order.product in decision.get("labelled_products", ()):
        label = rulebook.label_of(order.product, rule.labelled_indication, built.route)
    profile = dosing.limits_for(rulebook.dosing_for(rule), label, order.product)
    limits = dosing.course_limits(profile, built.interval_days)
    target = built.dose_g_per_kg
    if limits.max is not None:
        target = min(target, limits.max)
    if limits.min is not None:
        target = max(target, limits.min)
    course = dosing.course_grams(
        target, built.weight.dosing_kg, limits, rulebook.products[order.product].vial_sizes_g, rulebook.rounding_rule
    )
    if course.rounded_grams is None or math.isclose(course.rounded_grams, built.ordered_grams, abs_tol=0.05):
        return None
    vials = " + ".join(f"{count} x {size:g} g" for size, count in course.vials)
    updated = _with_dose(order.resource, course.rounded_grams)
    return {
        "label": f"Change the dose to {course.rounded_grams:g} g ({vials})",
        "uuid": str(uuid.uuid4()),
        "isRecommended": True,
        "actions": [
            {
                "type": "update",
                "description": (
                    f"Dose {course.rounded_grams:g} g instead of {built.ordered_grams:g} g: {target:g} g/kg for a dosing "
                    f"weight of {built.weight.dosing_kg:g} kg ({built.weight.basis}), {course.rounding} ({profile.id})"
                ),
                "resource": updated,
            }
        ],
    }


def labelled_alternatives(formulary: Formulary, payload: dict | None, decision: dict | None) -> tuple[str, ...]:
    """The formulary products labelled for this indication and patient, when the ordered product is
    not: the same request decided without a product, if that is approved (never recorded)."""
    if payload is None or decision is None or not payload.get("product") or decision["outcome"] == "approved":
        return ()
    try:
        other = formulary.decide({k: v for k, v in payload.items() if k != "product"})
    except RequestError:
        return ()
    if other.outcome != "approved":
        return ()
    return tuple(name for name in other.labelled_products if name != payload["product"])[:MAX_SWITCHES]


def switch_suggestions(alternatives: tuple[str, ...], order: Order, rulebook: Rulebook) -> list[dict]:
    """A suggestion per labelled product to order instead of the one named (the dose is the
    prescriber's to check: the card is decided again when the changed order is signed)."""
    found = []
    for name in alternatives:
        concept: dict[str, Any] = {"text": name}
        codes = rulebook.products[name].rxnorm if name in rulebook.products else ()
        if codes:
            concept["coding"] = [{"system": RXNORM, "code": code} for code in codes]
        resource = {
            k: v for k, v in order.resource.items() if k not in ("medicationReference", "medicationCodeableConcept")
        }
        found.append(
            {
                "label": f"Order {name} instead: labelled for this indication for this patient",
                "uuid": str(uuid.uuid4()),
                "isRecommended": False,
                "actions": [
                    {
                        "type": "update",
                        "description": f"{name} instead of {order.product}, which is not labelled for this "
                        "indication for this patient; check the dose for the new product",
                        "resource": {**resource, "medicationCodeableConcept": concept},
                    }
                ],
            }
        )
    return found


def questionnaire_task(decision: dict, order: Order, rulebook: Rulebook) -> dict | None:
    """A suggestion to create a Task asking for the missing facts, with their Questionnaire inside
    (Da Vinci CRD's form-completion Task: code complete-questionnaire, the Questionnaire as its input)."""
    if not decision.get("missing"):
        return None
    try:
        form = questionnaire(decision, rulebook)
    except UnknownFact:
        return None
    task: dict[str, Any] = {
        "resourceType": "Task",
        "status": "ready",
        "intent": "order",
        "code": {"coding": [{"system": SDC_TEMP, "code": "complete-questionnaire"}]},
        "description": "Answer the facts the IVIG rules need to decide this order",
        "basedOn": [{"reference": order.reference}],
        "authoredOn": clock.utc_now(),
        "contained": [form],
        "input": [
            {"type": {"coding": [{"system": SDC_TEMP, "code": "questionnaire"}]}, "valueCanonical": f"#{form['id']}"}
        ],
    }
    subject = order.resource.get("subject")
    if subject:
        task["for"] = subject
    return {
        "label": "Answer the missing facts (a FHIR Questionnaire)",
        "uuid": str(uuid.uuid4()),
        "actions": [
            {
                "type": "create",
                "description": f"A task to answer {len(form['item'])} question(s) the rules need",
                "resource": task,
            }
        ],
    }


def _with_dose(resource: dict, grams: float) -> dict:
    """The MedicationRequest with its first dosage's dose set to `grams` g (the whole resource, as an update carries)."""
    instructions = [dict(d) for d in resource.get("dosageInstruction") or [{}]]
    first = instructions[0]
    quantity = {"value": grams, "unit": "g", "system": UCUM, "code": "g"}
    rates = [dict(r) for r in first.get("doseAndRate") or [{}]]
    rates[0] = {**{k: v for k, v in rates[0].items() if not k.startswith("dose")}, "doseQuantity": quantity}
    instructions[0] = {**first, "doseAndRate": rates}
    return {**resource, "dosageInstruction": instructions}


def card(
    decision: dict | None,
    order: Order,
    built: Built,
    rulebook: Rulebook,
    base: str,
    problem: str | None = None,
    alternatives: tuple[str, ...] = (),
):
    """The card for one order: its decision (as the API answers it), or `problem`, why none was made;
    `alternatives`: products labelled for the indication when the one ordered is not."""
    reference = {"davinci-crd.associated-resource": [{"reference": order.reference}]}
    topic = {"system": CARD_TYPES, "code": "coverage-info", "display": "Coverage Information"}
    source: dict[str, Any] = {"label": f"{rulebook.name}, rulebook {rulebook.version}", "topic": topic}
    entry = rulebook.order_entry
    reasons = (
        [
            {"system": entry.override_system, "code": code, "display": display}
            for code, display in entry.override_reasons
        ]
        if entry
        else []
    )
    if decision is None:
        detail = f"**Not decided.** {problem}\n\nA pharmacist decides this order."
        if built.not_read:
            detail += "\n\n**Not available from the EHR**\n\n" + "\n".join(f"- {item}" for item in built.not_read)
        result: dict[str, Any] = {
            "uuid": str(uuid.uuid4()),
            "summary": _summary(None, order.product, "this order: a pharmacist reviews it"),
            "indicator": "warning",
            "detail": detail,
            "source": {**source, "url": _rule_page(base, None)},
            "links": [{"label": "The formulary's rules", "url": _rule_page(base, None), "type": "absolute"}],
            "extension": reference,
        }
        if reasons:
            result["overrideReasons"] = reasons
        return result
    outcome = decision["outcome"]
    rule_id = (decision.get("rule") or {}).get("id")
    diagnosis = decision["diagnosis"]
    indication = (
        diagnosis.get("description") or diagnosis.get("code") or diagnosis.get("input") or "the indication given"
    )
    sources = rulebook.sources
    lines = [f"**{OUTCOME_WORDS[outcome]}.** {decision['rationale']}"]
    if decision.get("labelled_products"):
        lines.append("Labelled products for this patient: " + ", ".join(decision["labelled_products"]) + ".")
    if alternatives:
        lines.append(
            f"{order.product} is not labelled for this indication for this patient; "
            + ", ".join(alternatives)
            + (" is." if len(alternatives) == 1 else " are.")
        )
    if decision.get("evidence"):
        lines.append("**Evidence**")
        lines.append(
            "\n".join(
                f"- {e['finding']} ({e['strength'].replace('_', ' ')}; "
                f"{sources[e['source']].title if e['source'] in sources else e['source']})"
                for e in decision["evidence"]
            )
        )
    missing = list(decision.get("missing") or [])
    if missing or built.not_read:
        lines.append("**Missing facts**")
        lines.append(
            "\n".join([f"- {m}" for m in missing] + [f"- not available from the EHR: {n}" for n in built.not_read])
        )
    if decision.get("review_case_id"):
        lines.append(f"Review case {decision['review_case_id']} is open for a pharmacist.")
    lines.append(f"Decision {decision['decision_id']} on rulebook {decision['rulebook']['version']}.")
    links = []
    if decision.get("review_case_id"):
        links.append(
            {"label": "Review case", "url": f"{base}/console/reviews/{decision['review_case_id']}", "type": "absolute"}
        )
    if missing:
        links.append(
            {
                "label": "Missing facts as a FHIR Questionnaire",
                "url": f"{base}/console/decisions/{decision['decision_id']}/questionnaire",
                "type": "absolute",
            }
        )
    links.append(
        {
            "label": f"Formulary rule {rule_id}" if rule_id else "The formulary's rules",
            "url": _rule_page(base, rule_id),
            "type": "absolute",
        }
    )
    answer: dict[str, Any] = {
        "uuid": decision["decision_id"],
        "summary": _summary(outcome, order.product, indication),
        "indicator": INDICATORS[outcome],
        "detail": "\n\n".join(lines),
        "source": {**source, "url": _rule_page(base, rule_id)},
        "links": links,
        "extension": reference,
    }
    changes = [*switch_suggestions(alternatives, order, rulebook)]
    dose = dose_suggestion(decision, order, built, rulebook)
    if dose and not alternatives:
        changes.append(dose)
    form = questionnaire_task(decision, order, rulebook)
    suggestions = changes + ([form] if form else [])
    if suggestions:
        answer["suggestions"] = suggestions
        # Changes to the order exclude one another; a task for the missing facts goes with any.
        answer["selectionBehavior"] = "at-most-one" if len(changes) > 1 else "any"
    if outcome in ("needs_review", "not_supported") and reasons:
        answer["overrideReasons"] = reasons
    return answer


# --- feedback ---------------------------------------------------------------------------------


def read_feedback(body) -> list[dict]:
    """A feedback call's `feedback` array, checked (CDS Hooks "Feedback")."""
    body = _mapping(body, "the body")
    items = body.get("feedback")
    if not isinstance(items, list) or not items:
        raise RequestError("missing_field", "feedback must be a non-empty list", "feedback")
    if len(items) > MAX_ORDERS:
        raise RequestError("too_long", f"at most {MAX_ORDERS} feedback items a call", "feedback")
    for i, item in enumerate(items):
        at = f"feedback[{i}]"
        item = _mapping(item, at)
        _string(item.get("card"), f"{at}.card", limit=64)
        outcome = _string(item.get("outcome"), f"{at}.outcome")
        if outcome not in ("accepted", "overridden"):
            raise RequestError("invalid_value", f"{at}.outcome must be 'accepted' or 'overridden'", f"{at}.outcome")
        stamp = _string(item.get("outcomeTimestamp"), f"{at}.outcomeTimestamp", limit=40) or ""
        try:
            datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            raise RequestError(
                "invalid_value", f"{at}.outcomeTimestamp must be an ISO 8601 time", f"{at}.outcomeTimestamp"
            ) from None
        if outcome == "accepted":
            accepted = item.get("acceptedSuggestions")
            if not isinstance(accepted, list) or not accepted:
                raise RequestError(
                    "missing_field", f"{at}.acceptedSuggestions is required for accepted", f"{at}.acceptedSuggestions"
                )
            for j, suggestion in enumerate(accepted):
                _string(
                    _mapping(suggestion, f"{at}.acceptedSuggestions[{j}]").get("id"),
                    f"{at}.acceptedSuggestions[{j}].id",
                )
        if item.get("overrideReason") is not None:
            reason = _mapping(item["overrideReason"], f"{at}.overrideReason")
            if reason.get("reason") is not None:
                coding = _mapping(reason["reason"], f"{at}.overrideReason.reason")
                _string(coding.get("code"), f"{at}.overrideReason.reason.code", limit=128)
            _string(reason.get("userComment"), f"{at}.overrideReason.userComment", required=False, limit=2000)
    return items
