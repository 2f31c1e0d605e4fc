"""A decision's missing facts as a FHIR R4 Questionnaire, and a QuestionnaireResponse back into the
request fields POST /v1/reviews/<id>/facts takes.

Each item's linkId is the fact's name (service.rulebook.facts: `patient.sex`,
`observation:igg_serum@90`, `failed_weeks:rituximab`), read back from the decision's `missing`
words with `fact_of`. Answer options, units and ranges come from the rulebook being served and
the vocabularies of service.rulebook.model, never from a list of their own here. Choice answers
are Codings whose code is the word the request takes (no code system: the words are the
service's), or that word as a string.

A response is read with fhir.resources' R4B models (the same as R4 for these two resources), then
each answer is checked against its item here: an invalid one is a RequestError naming the linkId,
which the web layer answers as an OperationOutcome. Nothing of a patient identifier is echoed.
"""

import datetime
from typing import Any

from service.decide.request import RequestError, Vocabulary, observation
from service.rulebook.facts import FIXED_FACTS, fact_of
from service.rulebook.model import COURSES, MAX_AGE_YEARS, MAX_WEEKS, SEVERITIES, SEXES, Rulebook

MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
UNIT_OPTION = "http://hl7.org/fhir/StructureDefinition/questionnaire-unitOption"
ACCEPTED_STATUSES = ("completed", "amended", "in-progress")
MAX_SHOWN = 60

# The question each fixed fact asks (words only: the answers come from the vocabularies).
_QUESTIONS = {
    "patient.age_years": "Patient's age in years",
    "patient.sex": "Patient's sex",
    "patient.pregnant": "Is the patient pregnant?",
    "severity": "Severity of the condition",
    "therapies.failed": "Therapies tried without success (choose every one)",
    "therapies.concurrent": "Therapies the patient is given now (choose every one)",
    "diagnosis.confirmed_by": "Specialty of the clinician who confirmed the diagnosis",
    "prescriber.specialty": "Prescriber's specialty",
    "diagnosis.phase": "Phase of the disease",
    "course": "Course requested",
}


class UnknownFact(Exception):
    """A missing fact the rulebook served now does not know (it was decided on another version)."""


def _words(word: str) -> str:
    return word.replace("_", " ").capitalize()


def _options(pairs) -> list[dict]:
    return [{"valueCoding": {"code": code, "display": display}} for code, display in pairs]


def _choices(fact: str, rulebook: Rulebook) -> list[tuple[str, str]] | None:
    """The answer options (code, display) of a choice fact, or None for a fact that is no choice."""
    if fact == "patient.sex":
        return [(sex, _words(sex)) for sex in SEXES]
    if fact == "severity":
        return [(severity, _words(severity)) for severity in SEVERITIES]
    if fact == "course":
        return [(course, _words(course)) for course in COURSES]
    if fact in ("diagnosis.confirmed_by", "prescriber.specialty"):
        return [(s.id, s.name) for s in rulebook.specialties.values()]
    if fact == "diagnosis.phase":
        return [(p.id, p.name) for p in rulebook.phases.values()]
    if fact in ("therapies.failed", "therapies.concurrent"):
        return [(t.id, t.name) for t in rulebook.therapies.values()]
    return None


def _extension(url: str, kind: str, value) -> dict:
    return {"url": url, kind: value}


def _item(fact: str, rulebook: Rulebook, as_of: datetime.date) -> dict:
    """The question a missing fact asks."""
    kind, _, rest = fact.partition(":")
    if kind == "observation":
        measure_id, _, window = rest.partition("@")
        measure = rulebook.measures.get(measure_id)
        if measure is None:
            raise UnknownFact(f"the measure {measure_id}")
        since = (as_of - datetime.timedelta(days=int(window))).isoformat() if window else None
        taken_on: dict[str, Any] = {
            "linkId": f"{fact}.taken_on",
            "text": "Date taken" + (f" (on or after {since})" if since else ""),
            "type": "date",
            "required": True,
        }
        if since:
            taken_on["extension"] = [_extension(MIN_VALUE, "valueDate", since)]
        return {
            "linkId": fact,
            "text": f"{measure.name}: {measure.measures}" + (f", taken on or after {since}" if since else ""),
            "type": "group",
            "required": True,
            "item": [
                {
                    "linkId": f"{fact}.value",
                    "text": f"{measure.name} (between {measure.low:g} and {measure.high:g} {measure.unit})",
                    "type": "quantity",
                    "required": True,
                    "extension": [
                        _extension(UNIT_OPTION, "valueCoding", {"code": unit, "display": unit})
                        for unit in dict.fromkeys((measure.unit, *measure.units))
                    ],
                },
                taken_on,
            ],
        }
    if kind == "failed_weeks":
        therapy = rulebook.therapies.get(rest)
        if therapy is None:
            raise UnknownFact(f"the therapy {rest}")
        return {
            "linkId": fact,
            "text": f"Weeks {therapy.name} was tried before it failed",
            "type": "integer",
            "required": True,
            "extension": [_extension(MIN_VALUE, "valueInteger", 0), _extension(MAX_VALUE, "valueInteger", MAX_WEEKS)],
        }
    if fact not in FIXED_FACTS:
        raise UnknownFact(f"the fact {fact}")
    item: dict[str, Any] = {"linkId": fact, "text": _QUESTIONS[fact], "required": True}
    options = _choices(fact, rulebook)
    if options is not None:
        item.update(type="choice", answerOption=_options(options))
        if fact.startswith("therapies."):
            item["repeats"] = True
    elif fact == "patient.age_years":
        item.update(
            type="decimal",
            extension=[_extension(MIN_VALUE, "valueDecimal", 0), _extension(MAX_VALUE, "valueDecimal", MAX_AGE_YEARS)],
        )
    else:  # patient.pregnant
        item["type"] = "boolean"
    return item


def decision_day(decision: dict) -> datetime.date:
    """The day a recorded decision's missing facts were described on (its `decided_at`, UTC)."""
    return datetime.date.fromisoformat(decision["decided_at"][:10])


def missing_facts(decision: dict) -> list[str]:
    """The names of the facts a recorded decision misses, in its order."""
    day = decision_day(decision)
    return [fact_of(described, day) for described in decision["missing"]]


def questionnaire(decision: dict, rulebook: Rulebook) -> dict:
    """The R4 Questionnaire of a recorded decision's missing facts (decision: as GET /v1/decisions/<id>
    answers it). Raises UnknownFact when the rulebook served no longer knows one of them."""
    day = decision_day(decision)
    case = decision.get("review_case_id")
    rule = f"the rule '{decision['rule']['title']}'" if decision.get("rule") else "the rules"
    description = f"The facts {rule} needs to decide {decision['diagnosis'].get('code') or 'this request'}."
    if case:
        description += (
            f" Answer it as a QuestionnaireResponse (Content-Type: application/fhir+json) to "
            f"POST /v1/reviews/{case}/facts, and the case is decided again."
        )
    return {
        "resourceType": "Questionnaire",
        "id": decision["decision_id"],
        "url": f"urn:uuid:{decision['decision_id']}",
        "title": "Facts missing for an IVIG request",
        "status": "active",
        "subjectType": ["Patient"],
        "date": decision["decided_at"],
        "publisher": decision["rulebook"]["name"],
        "description": description,
        "item": [_item(fact, rulebook, day) for fact in missing_facts(decision)],
    }


# --- A QuestionnaireResponse back into request fields ---------------------------------------------


def _structure_error(body: dict, errors: list) -> RequestError:
    """The first problem pydantic found, by where it is and what it is; never the value."""
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "resource_type")[:100] or "the resource"
    if first.get("type") == "fhir-validation-wrong-resource-type":
        ctx = first.get("ctx") or {}
        return RequestError(
            "wrong_type",
            f"the body must be a QuestionnaireResponse, found resourceType {str(ctx.get('resource_type'))[:40]!r}",
            "resourceType",
        )
    message = " ".join(str(first.get("msg", "invalid")).split())[:200]
    link = _link_at(body, first.get("loc", ()))
    if link is not None:
        return RequestError("invalid_value", f"{_shown(link)}: the item is not valid at {where}: {message}", link)
    return RequestError("invalid_value", f"the QuestionnaireResponse is not valid at {where}: {message}", where)


def _link_at(body, loc) -> str | None:
    """The linkId of the innermost item on the way to a place in the resource, if any."""
    node, link = body, None
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(node, dict) and isinstance(node.get("linkId"), str):
            link = node["linkId"]
    return link


def _read_resource(body) -> list[dict]:
    """The response's top-level items, once fhir.resources has read it as an R4(B) QuestionnaireResponse."""
    if not isinstance(body, dict):
        raise RequestError("wrong_type", "the body must be a FHIR QuestionnaireResponse (a JSON object)", "")
    if body.get("resourceType") != "QuestionnaireResponse":
        kind = body.get("resourceType")
        found = f"resourceType {str(kind)[:40]!r}" if isinstance(kind, str) else "no resourceType"
        raise RequestError("wrong_type", f"the body must be a QuestionnaireResponse, found {found}", "resourceType")
    from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse  # its import costs the CLI time
    from pydantic import ValidationError

    try:
        QuestionnaireResponse.model_validate(body)
    except ValidationError as error:
        raise _structure_error(body, error.errors(include_input=False, include_url=False)) from None
    if body["status"] not in ACCEPTED_STATUSES:
        raise RequestError(
            "invalid_value",
            f"status is {body['status']}; a response to decide on is {', '.join(ACCEPTED_STATUSES)}",
            "status",
        )
    return body.get("item") or []


def _answers(item: dict) -> list[tuple[str, Any]]:
    """(value[x] name, value) of each answer of an item."""
    found = []
    for answer in item.get("answer") or []:
        kind = next((key for key in answer if key.startswith("value")), None)  # the model checked there is one at most
        if kind is None:
            raise RequestError("missing_field", f"{item['linkId']}: an answer has no value", item["linkId"])
        if answer.get("item"):
            raise RequestError("unknown_field", f"{item['linkId']}: an answer has items of its own", item["linkId"])
        found.append((kind, answer[kind]))
    return found


def _one(link: str, answers: list) -> tuple[str, Any]:
    if len(answers) != 1:
        raise RequestError("too_long", f"{link}: one answer is expected, found {len(answers)}", link)
    return answers[0]


def _wrong(link: str, expected: str, kind: str) -> RequestError:
    return RequestError("wrong_type", f"{link}: the answer must be {expected}, found {kind}", link)


def _number(link: str, answers: list, low: float, high: float, whole: bool) -> float | int:
    kind, value = _one(link, answers)
    kinds = ("valueInteger",) if whole else ("valueDecimal", "valueInteger")
    if kind not in kinds or isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong(link, " or ".join(kinds), kind)
    if not low <= value <= high:
        raise RequestError("out_of_range", f"{link} must be between {low:g} and {high:g}, found {value:g}", link)
    return value


def _code(link: str, kind: str, value, allowed: tuple[str, ...]) -> str:
    """The code of a choice answer: a Coding's code, or the word as a string."""
    code = value.get("code") if kind == "valueCoding" else value if kind == "valueString" else None
    if kind not in ("valueCoding", "valueString"):
        raise _wrong(link, "valueCoding (or valueString) with one of the answer options", kind)
    if code not in allowed:
        raise RequestError(
            "unknown_value",
            f"{link}: the answer is not one of the answer options ({', '.join(allowed)})",
            link,
        )
    return code


def _observation(link: str, measure: str, children: dict[str, list], vocabulary: Vocabulary, today) -> dict:
    """An observation group's quantity and date as a request's observation, checked as one."""
    unknown = sorted(set(children) - {f"{link}.value", f"{link}.taken_on"})
    if unknown:
        raise RequestError("unknown_field", f"{link}: {_shown(unknown[0])} is not an item of this group", link)
    raw: dict[str, Any] = {"measure": measure, "value": None, "unit": None, "taken_on": None}
    if children.get(f"{link}.value"):
        kind, quantity = _one(f"{link}.value", children[f"{link}.value"])
        if kind != "valueQuantity":
            raise _wrong(f"{link}.value", "valueQuantity", kind)
        raw["value"], raw["unit"] = quantity.get("value"), quantity.get("code") or quantity.get("unit")
    if children.get(f"{link}.taken_on"):
        kind, day = _one(f"{link}.taken_on", children[f"{link}.taken_on"])
        if kind != "valueDate" or not isinstance(day, str):
            raise _wrong(f"{link}.taken_on", "valueDate", kind)
        raw["taken_on"] = day
    try:
        observation(raw, link, vocabulary, today)
    except RequestError as error:  # named as the item: the unit is the quantity's
        field = (error.field or link).replace(f"{link}.unit", f"{link}.value").replace(f"{link}.measure", link)
        raise RequestError(error.code, error.message, field) from None
    return {key: raw[key] for key in ("measure", "value", "unit", "taken_on")}


def _shown(text: str) -> str:
    return repr(text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "...")


def _children(item: dict) -> dict[str, list]:
    """A group item's child items by linkId, with their answers."""
    found: dict[str, list] = {}
    for child in item.get("item") or []:
        if child["linkId"] in found:
            raise RequestError("conflicting_values", f"{child['linkId']} is answered twice", child["linkId"])
        found[child["linkId"]] = _answers(child)
    return found


def _therapy_ids(listed, vocabulary: Vocabulary) -> list[tuple[str | None, Any]]:
    """(therapy id, entry) for each entry of a stored therapies list; unknown spellings keep None."""
    pairs: list[tuple[str | None, Any]] = []
    for entry in listed or []:
        name = entry.get("name") if isinstance(entry, dict) else entry
        try:
            pairs.append((vocabulary.therapy(name, "therapies.failed"), entry))
        except RequestError:
            pairs.append((None, entry))
    return pairs


def response_fields(body, vocabulary: Vocabulary, stored: dict, today: datetime.date) -> dict:
    """The request fields a QuestionnaireResponse answers, as POST /v1/reviews/<id>/facts takes them.

    `stored` is the case's request as recorded: a response adds to its observations and its failed
    therapies' weeks, which the facts endpoint would otherwise replace as whole lists. Raises
    RequestError naming the linkId for an invalid response.
    """
    fields: dict[str, Any] = {}
    observations: list[dict] = []
    weeks: dict[str, int] = {}
    seen: set[str] = set()
    for item in _read_resource(body):
        link = item["linkId"]
        if link in seen:
            raise RequestError("conflicting_values", f"{link} is answered twice", link)
        seen.add(link)
        kind, _, rest = link.partition(":")
        if kind == "observation":
            measure, _, window = rest.partition("@")
            if measure not in vocabulary.measures or not (window == "" or window.isdigit()):
                raise RequestError("unknown_field", f"{_shown(link)} is not an item this service asks", link)
            if item.get("answer"):
                raise _wrong(link, "a group of a quantity and a date, answered in its items", "an answer")
            children = _children(item)
            if any(children.values()):
                observations.append(_observation(link, measure, children, vocabulary, today))
            continue
        answers = _answers(item)
        if item.get("item"):
            raise RequestError("unknown_field", f"{link}: this question has no items of its own", link)
        if kind == "failed_weeks":
            if rest not in set(vocabulary.therapies.values()):
                raise RequestError("unknown_field", f"{_shown(link)} is not an item this service asks", link)
            if answers:
                weeks[rest] = int(_number(link, answers, 0, MAX_WEEKS, whole=True))
            continue
        if link not in FIXED_FACTS:
            raise RequestError("unknown_field", f"{_shown(link)} is not an item this service asks", link)
        if not answers:
            continue
        section, _, name = link.rpartition(".")
        target = fields.setdefault(section, {}) if section else fields
        if link == "patient.age_years":
            target[name] = _number(link, answers, 0, MAX_AGE_YEARS, whole=False)
        elif link == "patient.pregnant":
            kind, value = _one(link, answers)
            if kind != "valueBoolean" or not isinstance(value, bool):
                raise _wrong(link, "valueBoolean", kind)
            target[name] = value
        elif link.startswith("therapies."):
            allowed = tuple(dict.fromkeys(vocabulary.therapies.values()))
            codes = [_code(link, k, v, allowed) for k, v in answers]
            target[name] = list(dict.fromkeys(codes))
        else:
            allowed = {
                "patient.sex": SEXES,
                "severity": SEVERITIES,
                "course": COURSES,
                "diagnosis.phase": tuple(vocabulary.phases),
            }.get(link, vocabulary.specialties)
            target[name] = _code(link, *_one(link, answers), allowed)
    if observations:
        fields["observations"] = [*(stored.get("observations") or []), *observations]
    if weeks:
        therapies = fields.setdefault("therapies", {})
        listed = therapies.get("failed", ((stored.get("therapies") or {}).get("failed")))
        entries = []
        for therapy, entry in _therapy_ids(listed, vocabulary):
            if therapy in weeks:
                entry = {**(entry if isinstance(entry, dict) else {"name": entry}), "weeks": weeks.pop(therapy)}
            entries.append(entry)
        entries += [{"name": therapy, "weeks": tried} for therapy, tried in weeks.items()]
        therapies["failed"] = entries
    if not fields:
        raise RequestError("missing_field", "the QuestionnaireResponse answers no question", "item")
    return fields


def operation_outcome(code: str, message: str) -> dict:
    """A refused FHIR request as an R4 OperationOutcome: one error, the service's code in its details."""
    issue = {
        "missing_field": "required",
        "wrong_type": "structure",
        "invalid_json": "structure",
        "json_too_deep": "structure",
        "unknown_field": "not-found",
        "unknown_value": "code-invalid",
        "unknown_unit": "code-invalid",
        "unknown_therapy": "code-invalid",
        "out_of_range": "value",
        "invalid_value": "value",
        "too_long": "too-long",
        "conflicting_values": "business-rule",
    }.get(code, "invalid")
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": issue, "details": {"coding": [{"code": code}]}, "diagnostics": message}
        ],
    }
