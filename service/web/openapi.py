"""The OpenAPI 3.1 description of the v1 API, served at /openapi.json.

Its schemas are JSON Schema 2020-12 (as OpenAPI 3.1 allows), strict about unknown fields, so the
tests can validate real responses against them and the document stays true.
"""

from flask import Blueprint, jsonify

from service.decide.administration import KINDS as DISCREPANCY_KINDS
from service.rulebook.model import (
    COURSES,
    EFFECTS,
    FAILURE_REASONS,
    MAX_WEEKS,
    OUTCOMES,
    PHASE_ACTIONS,
    ROUTES,
    SEVERITIES,
    SEXES,
    STRENGTHS,
)
from service.web import roles
from service.web.errors import FHIR_JSON
from service.workflow.cases import REVIEW_REASONS, SORTS
from service.workflow.reports import FIGURES as UTILISATION_FIGURES
from service.workflow.reports import GROUPS as REPORT_GROUPS

blueprint = Blueprint("openapi", __name__)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict, required=None, extra=False) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required if required is not None else properties),
        "additionalProperties": extra,
    }


_TEXT = {"type": "string"}
_PROPOSAL_ID = [{"name": "proposal_id", "in": "path", "required": True, "schema": {"type": "integer"}}]
_NULLABLE_TEXT = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_DATE = {"type": "string", "format": "date"}
_REPORT_PERIOD = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", "format": "date"},
    }
    for name, description in (
        ("since", "the first day (inclusive); by default a year before until"),
        ("until", "the last day (inclusive); by default today"),
    )
]
_REPORT_GROUP = {
    "name": "group_by",
    "in": "query",
    "required": False,
    "schema": {"enum": list(REPORT_GROUPS), "default": "diagnosis"},
}
_THERAPIES = {"type": "array", "items": {"type": "string"}}
_VERSION_SUMMARY = {
    "version": _TEXT,
    "digest": {"type": "string", "description": "SHA-256 over the texts, as decisions record it"},
    "name": _TEXT,
    "effective": _TEXT,
    "stored_at": _TIME,
    "stored_by": {"type": "string", "description": "who first activated it (`service start`, `cli`, a token's name)"},
    "activations": {
        "type": "array",
        "description": "every time it was made the version served, newest first",
        "items": _object({"activated_at": _TIME, "activated_by": _TEXT}),
    },
}
_FAILED_THERAPIES = {
    "type": "array",
    "items": {
        "oneOf": [
            {"type": "string"},
            _object(
                {
                    "name": _TEXT,
                    "weeks": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_WEEKS,
                        "description": "how long it was tried",
                    },
                    "reason": {"enum": list(FAILURE_REASONS)},
                },
                required=["name"],
            ),
        ]
    },
    "description": "therapy names, or {name, weeks, reason} objects; rules may require a minimum number of weeks",
}
_OBSERVATIONS = {
    "type": "array",
    "maxItems": 100,
    "description": (
        "lab values and outcome measures; `measure` and `unit` from the rulebook's data/measures.yaml "
        "of the rulebook served, converted to the measure's canonical unit; the latest of each measure "
        "counts. An unknown measure or unit, a value out of the measure's range, a bad or future date: 400"
    ),
    "items": _object(
        {
            "measure": _TEXT,
            "value": {"type": "number"},
            "unit": _TEXT,
            "taken_on": {"type": "string", "format": "date"},
        }
    ),
}
_EVIDENCE = {
    "type": "array",
    "items": _object(
        {"source": _TEXT, "finding": _TEXT, "strength": {"enum": list(STRENGTHS)}, "effect": {"enum": [*EFFECTS, None]}}
    ),
}

_AUTHORISATION = {
    "id": _TEXT,
    "created_at": _TIME,
    "diagnosis_id": _NULLABLE_TEXT,
    "code": _TEXT,
    "basis": {"enum": ["approved", "off_label_with_evidence", "review"]},
    "rule_id": _NULLABLE_TEXT,
    "products": {"type": "array", "items": _TEXT},
    "dosing": _ref("DosingProfile"),
    "valid_from": {"type": "string", "format": "date"},
    "valid_until": {"type": "string", "format": "date"},
    "decision_id": _NULLABLE_TEXT,
    "case_id": _NULLABLE_TEXT,
    "rulebook_version": _TEXT,
    "rulebook_digest": _TEXT,
    "record_id": {"type": ["integer", "null"], "description": "the audit record that granted it"},
    "previous_id": {**_NULLABLE_TEXT, "description": "the authorisation this one continues"},
    "active": {"type": "boolean"},
}

SCHEMAS = {
    # CDS Hooks bodies are the specification's (https://cds-hooks.hl7.org/2.0/); the tests validate
    # the cards against tests/schemas/cds_hooks_response.schema.json.
    "CdsHooksObject": {"type": "object", "description": "a CDS Hooks 2.0 request or response body"},
    "DecisionRequest": _object(
        {
            "diagnosis": _object(
                {
                    "code": {"type": "string", "maxLength": 16},
                    "text": {"type": "string", "maxLength": 200},
                    "confirmed_by": {"type": "string", "description": "the specialty that confirmed the diagnosis"},
                    "phase": {"type": "string", "description": "the disease phase (data/phases.yaml), e.g. chronic"},
                    "onset_date": {
                        "type": "string",
                        "format": "date",
                        "description": "the date of diagnosis: gives the phase when phase is not given; "
                        "a phase it contradicts is a 400",
                    },
                },
                required=[],
            ),
            "patient": _object(
                {
                    "age_years": {"type": "number", "minimum": 0, "maximum": 130},
                    "sex": {"enum": list(SEXES)},
                    "pregnant": {"type": "boolean"},
                    "weight_kg": {"type": "number", "minimum": 0.3, "maximum": 500},
                    "height_cm": {"type": "number", "minimum": 20, "maximum": 260},
                    "ref": {
                        "type": "string",
                        "maxLength": 64,
                        "description": "patient identifier; stored only as a keyed hash",
                    },
                },
                required=[],
            ),
            "therapies": _object({"failed": _FAILED_THERAPIES, "concurrent": _THERAPIES}, required=[]),
            "severity": {"enum": list(SEVERITIES)},
            "product": _TEXT,
            "route": {"enum": list(ROUTES), "description": "how the dose is given; intravenous when omitted"},
            "observations": _OBSERVATIONS,
            "prescriber": _object(
                {"specialty": {"type": "string", "description": "the prescriber's specialty (data/specialties.yaml)"}},
                required=[],
            ),
            "course": {"enum": list(COURSES)},
            "urgent": _object(
                {"reason": {"type": "string", "maxLength": 500}},
                required=["reason"],
            )
            | {
                "description": "the request cannot wait for a review: where the rule that decides it is urgent and "
                "the decision needs review, a provisional authorisation for one course is given at once, and the "
                "review case is due within the rulebook's period"
            },
            "dose": _object(
                {
                    "g_per_kg": {"type": "number", "minimum": 0.01, "maximum": 5},
                    "interval_days": {"type": "integer", "minimum": 1, "maximum": 365},
                },
                required=[],
            ),
        },
        required=["diagnosis"],
    ),
    "Candidate": _object({"code": _TEXT, "description": _TEXT, "score": {"type": "number"}}),
    "RuleUsage": _object(
        {
            "rulebook": _object({"name": _TEXT, "version": _TEXT}),
            "since": {"type": "string", "format": "date"},
            "until": {"type": ["string", "null"], "format": "date"},
            "rules": {
                "type": "array",
                "items": _object(
                    {
                        "id": _TEXT,
                        "title": _TEXT,
                        "decisions": {"type": "integer"},
                        "outcomes": {"type": "object", "additionalProperties": {"type": "integer"}},
                    }
                ),
            },
            "never_reached": {"type": "array", "items": _TEXT},
            "other_versions_rules": {
                "type": "array",
                "items": _object({"id": _TEXT, "decisions": {"type": "integer"}}),
            },
            "no_rule": {
                "type": "array",
                "items": _object({"code": _TEXT, "description": _TEXT, "requests": {"type": "integer"}}),
                "description": "codes requests named exactly that no rule decided, most frequent first (50 at most)",
            },
            "unclear_diagnosis": {"type": "integer", "description": "requests whose diagnosis was not clear"},
        }
    ),
    "Decision": _object(
        {
            "decision_id": {"type": "string", "format": "uuid"},
            "decided_at": _TIME,
            "outcome": {"enum": list(OUTCOMES)},
            "diagnosis": _object(
                {
                    "code": _NULLABLE_TEXT,
                    "description": _NULLABLE_TEXT,
                    "matched_by": {"enum": ["code", "synonym", "text", "fuzzy", None]},
                    "input": _TEXT,
                }
            ),
            "rule": {"oneOf": [{"type": "null"}, _object({"id": _TEXT, "title": _TEXT})]},
            "rulebook": _object({"name": _TEXT, "version": _TEXT, "digest": _TEXT, "icd10cm": _TEXT}),
            "rationale": _TEXT,
            "evidence": _EVIDENCE,
            "missing": {"type": "array", "items": _TEXT},
            "labelled_products": {"type": "array", "items": _TEXT},
            "candidates": {"type": "array", "items": _ref("Candidate")},
            "if_confirmed": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "code": _TEXT,
                            "outcome": {"enum": list(OUTCOMES)},
                            "rule": {"oneOf": [{"type": "null"}, _object({"id": _TEXT, "title": _TEXT})]},
                        }
                    ),
                ],
                "description": "for a diagnosis matched only approximately: what the rules would decide on the proposed code",
            },
            "continuation": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "previous_authorisation_id": _TEXT,
                            "benefit": {"enum": ["shown", "not_shown", "missing", "not_assessed"]},
                            "criteria": _TEXT,
                            "compared": {"type": "array", "items": {"type": "object"}},
                        },
                        required=["previous_authorisation_id", "benefit", "compared"],
                    ),
                ],
                "description": "for a continuation: the authorisation continued, and each outcome measure "
                "compared with its baseline against the rule's review criteria",
            },
            "review_case_id": {
                **_NULLABLE_TEXT,
                "description": "the review case a needs_review decision opened, joined or (with added facts) updated",
            },
            "joined_case": {
                "type": "boolean",
                "description": "true when the requester already had an open case for this patient and diagnosis: "
                "the decision joined it (review_case_id) as its latest decision instead of opening another",
            },
            "authorisation_id": {
                **_NULLABLE_TEXT,
                "description": "the authorisation a positive decision for a patient granted, or the provisional "
                "one an urgent request was given",
            },
            "urgent": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "provisional": {"type": "boolean"},
                            "why": _TEXT,
                            "review_due_at": {"type": ["string", "null"], "format": "date-time"},
                        }
                    ),
                ],
                "description": "for a request that said urgent: whether a provisional authorisation for one course "
                "was given, why (or why not), and by when its review is due",
            },
            "supply": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "phase": _TEXT,
                            "reason": _TEXT,
                            "tier": _NULLABLE_TEXT,
                            "action": {"enum": list(PHASE_ACTIONS)},
                            "changed": {"type": "boolean"},
                            "rule_outcome": {"enum": list(OUTCOMES)},
                        }
                    ),
                ],
                "description": "null in the default supply phase; in a shortage phase: the phase and why it was set, "
                "the rule's tier, what the phase does with that tier, whether it changed the outcome, and the "
                "outcome the rules gave before it",
            },
        }
    ),
    "Error": _object(
        {
            "error": _object(
                {
                    "code": _TEXT,
                    "message": _TEXT,
                    "field": _NULLABLE_TEXT,
                    "suggestions": {"type": "array", "items": _ref("Candidate")},
                    "problems": {"type": "array", "items": _TEXT},
                    "administration_id": {**_TEXT, "description": "409 already_recorded: the one recorded before"},
                },
                required=["code", "message", "field"],
            )
        }
    ),
    # FHIR R4 resources: the fields this service writes or reads, the rest as FHIR allows (see README).
    "Questionnaire": {
        "type": "object",
        "description": "a FHIR R4 Questionnaire: one item a missing fact, linkId the fact's name",
        "properties": {
            "resourceType": {"const": "Questionnaire"},
            "id": _TEXT,
            "url": _TEXT,
            "status": {"const": "active"},
            "item": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "linkId": _TEXT,
                        "type": {"enum": ["group", "choice", "decimal", "integer", "boolean", "quantity", "date"]},
                    },
                    "required": ["linkId", "type"],
                },
            },
        },
        "required": ["resourceType", "status", "item"],
    },
    "QuestionnaireResponse": {
        "type": "object",
        "description": "a FHIR R4 QuestionnaireResponse answering a decision's Questionnaire; each answered "
        "item adds its fact to the case's request",
        "properties": {
            "resourceType": {"const": "QuestionnaireResponse"},
            "questionnaire": _TEXT,
            "status": {"enum": ["completed", "amended", "in-progress"]},
            "item": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"linkId": _TEXT, "answer": {"type": "array"}, "item": {"type": "array"}},
                    "required": ["linkId"],
                },
            },
        },
        "required": ["resourceType", "status"],
    },
    "OperationOutcome": {
        "type": "object",
        "description": "a FHIR R4 OperationOutcome: why a request sent as application/fhir+json was refused 400",
        "properties": {
            "resourceType": {"const": "OperationOutcome"},
            "issue": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "severity": {"const": "error"},
                        "code": _TEXT,
                        "details": {"type": "object"},
                        "diagnostics": _TEXT,
                    },
                    "required": ["severity", "code", "diagnostics"],
                },
            },
        },
        "required": ["resourceType", "issue"],
    },
    "Rule": _object(
        {
            "id": _TEXT,
            "title": _TEXT,
            "diagnosis": _object(
                {
                    "id": _TEXT,
                    "name": _TEXT,
                    "codes": {"type": "array", "items": _TEXT},
                    "synonyms": {"type": "array", "items": _TEXT},
                    "coding_note": _TEXT,
                }
            ),
            "when": _TEXT,
            "outcome": {"enum": list(OUTCOMES)},
            "priority": {"type": "integer"},
            "tier": {**_NULLABLE_TEXT, "description": "its priority tier in a shortage (the rulebook's supply.tiers)"},
            "tier_basis": _NULLABLE_TEXT,
            "labelled_indication": _NULLABLE_TEXT,
            "labels": {
                "type": "array",
                "items": _object(
                    {
                        "product": _TEXT,
                        "age_years": _object(
                            {"at_least": {"type": ["number", "null"]}, "under": {"type": ["number", "null"]}}
                        ),
                        "routes": {"type": "array", "items": {"enum": list(ROUTES)}},
                        "note": _NULLABLE_TEXT,
                        "source": _NULLABLE_TEXT,
                        "revised": _NULLABLE_TEXT,
                    }
                ),
            },
            "dosing": _ref("DosingProfile"),
            "authorisation_days": {"type": "integer", "description": "an initial authorisation's period"},
            "continuing_days": {"type": "integer", "description": "a continuation's period"},
            "review_criteria": {
                "type": ["object", "null"],
                "description": "what a continuation needs: measures and what counts as benefit, or reviewer_judges",
            },
            "courses": {
                "type": ["object", "null"],
                "description": "{max, per_days}: authorisations of the diagnosis one patient may have in a period",
            },
            "rationale": _TEXT,
            "conflict": _NULLABLE_TEXT,
            "evidence": _EVIDENCE,
            "sources": {"type": "array", "items": _TEXT},
        }
    ),
    "DosingProfile": _object(
        {
            "id": _TEXT,
            "g_per_kg": _object({"min": {"type": ["number", "null"]}, "max": {"type": ["number", "null"]}}),
            "interval_days": _object({"min": {"type": ["number", "null"]}, "max": {"type": ["number", "null"]}}),
            "note": _TEXT,
            "courses": {
                "type": ["integer", "null"],
                "description": "a one-off course: how many courses a request allows",
            },
            "monthly": {"type": "boolean", "description": "g_per_kg is a total over 28 days, whatever the interval"},
        },
        required=["id", "g_per_kg", "interval_days"],
    ),
    "Resolution": _object(
        {
            "id": _TEXT,
            "case_id": _TEXT,
            "created_at": _TIME,
            "resolution": {"enum": ["approved", "denied", "more_information"]},
            "reason": _TEXT,
            "valid_days": {"type": ["integer", "null"]},
            "reviewer": _TEXT,
            "references_id": _NULLABLE_TEXT,
            "record_id": {"type": ["integer", "null"], "description": "the audit record that created it"},
        }
    ),
    "ReviewCase": _object(
        {
            "id": _TEXT,
            "status": {"enum": ["open", "pending_information", "approved", "denied", "closed_by_rules"]},
            "opened_at": _TIME,
            "updated_at": _TIME,
            "age_seconds": {"type": "integer"},
            "requester": _TEXT,
            "code": _NULLABLE_TEXT,
            "reason": {
                "oneOf": [{"type": "null"}, {"enum": list(REVIEW_REASONS)}],
                "description": "why it needs review: facts the rule needs are missing, the diagnosis text is unclear, "
                "no rule covers the diagnosis, the rule itself asks for review, or a continuation showed no benefit",
            },
            "opening_decision_id": _TEXT,
            "due_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "a retrospective review of a provisional authorisation (the urgent pathway): resolve by then",
            },
            "overdue": {"type": "boolean", "description": "open, and past due_at"},
            "decision": _ref("Decision"),
            "missing": {"type": "array", "items": _TEXT},
            "candidates": {"type": "array", "items": _ref("Candidate")},
            "resolutions": {"type": "array", "items": _ref("Resolution")},
        },
        required=[
            "id",
            "status",
            "opened_at",
            "updated_at",
            "age_seconds",
            "requester",
            "code",
            "reason",
            "opening_decision_id",
            "due_at",
            "overdue",
            "decision",
            "missing",
            "candidates",
        ],
    ),
    "ResolutionRequest": _object(
        {
            "resolution": {"enum": ["approved", "denied", "more_information"]},
            "reason": {"type": "string", "maxLength": 2000},
            "valid_days": {"type": "integer", "minimum": 1, "maximum": 3650},
            "references": {"type": "string", "description": "for a second opinion: the resolution it follows"},
        },
        required=["resolution", "reason"],
    ),
    "Authorisation": _object(_AUTHORISATION),
    "DueAuthorisation": _object(
        {
            **_AUTHORISATION,
            "days_left": {"type": "integer", "description": "to its last valid day; negative: ended"},
            "unmeasured": {
                "type": "array",
                "items": _TEXT,
                "description": "the measures of its baseline with no measurement taken since it started",
            },
        }
    ),
    "MeasurementRequest": _object(
        {
            "measure": _TEXT,
            "value": {"type": "number"},
            "unit": _TEXT,
            "taken_on": {"type": "string", "format": "date"},
        }
    ),
    "Measurement": _object(
        {
            "id": _TEXT,
            "authorisation_id": _TEXT,
            "created_at": _TIME,
            "measure": _TEXT,
            "value": {"type": "number", "description": "in the measure's canonical unit"},
            "unit": {**_TEXT, "description": "the measure's canonical unit"},
            "value_given": {"type": "number"},
            "unit_given": _TEXT,
            "taken_on": {"type": "string", "format": "date"},
            "recorded_by": _TEXT,
        }
    ),
    "AuthorisationDetail": _object(
        {
            "authorisation": _ref("Authorisation"),
            "baseline": {
                **_OBSERVATIONS,
                "description": "the observations of the decision that granted it, as that request gave them",
            },
            "measurements": {"type": "array", "items": _ref("Measurement"), "description": "oldest first"},
            "chain": {
                "type": "array",
                "items": _ref("Authorisation"),
                "description": "the authorisations linked by previous_id, oldest first, this one included",
            },
        }
    ),
    "AdministrationRequest": _object(
        {
            "authorisation_id": {**_TEXT, "description": "the authorisation it was given under"},
            "preapproval_id": {
                "type": "integer",
                "description": "the pre-approval it was dispensed on (its preapproval_id); its authorisation is then "
                "the administration's",
            },
            "patient": _object(
                {"ref": {**_TEXT, "description": "the patient's identifier (stored as its keyed hash)"}}
            ),
            "product": {**_TEXT, "description": "a formulary product"},
            "lot": {**_TEXT, "maxLength": 64},
            "vials": {
                "type": "array",
                "minItems": 1,
                "maxItems": 20,
                "items": _object({"size_g": {"type": "number"}, "count": {"type": "integer", "minimum": 1}}),
            },
            "grams_given": {"type": "number", "exclusiveMinimum": 0},
            "grams_wasted": {"type": "number", "minimum": 0},
            "given_on": {"type": "string", "format": "date", "description": "not after today"},
            "site": {**_TEXT, "maxLength": 128, "description": "where it was given"},
            "source_id": {
                **_TEXT,
                "maxLength": 128,
                "description": "the pharmacy system's dispense id: recorded once (409 already_recorded after)",
            },
        },
        required=["patient", "product", "lot", "vials", "grams_given", "grams_wasted", "given_on"],
    ),
    # Stewardship reports (service/workflow/reports.py): every figure from what is stored, with notes.
    "UtilisationGroup": _object(
        {
            "key": {"type": ["string", "null"], "description": "the group (null: not attributable, see label)"},
            "label": _TEXT,
            "requests": {"type": "integer", "description": "decision requests answered"},
            "decisions": _object({o: {"type": "integer"} for o in OUTCOMES}),
            "preapprovals": {"type": "integer"},
            "authorisations": {"type": "integer", "description": "granted in the period"},
            "administrations": {"type": "integer"},
            "patients": {"type": "integer", "description": "distinct patients, each counted once"},
            "grams_authorised": {"type": "number", "description": "the dose of each pre-approval that said dispense"},
            "grams_given": {"type": "number"},
            "grams_wasted": {"type": "number"},
            "grams_opened": {"type": "number"},
            "cost": {
                "type": "array",
                "description": "grams opened x the local price per gram, by currency; empty: no price known",
                "items": _object({"currency": _TEXT, "amount": {"type": "number"}}),
            },
            "grams_without_price": {"type": "number"},
            "cost_note": _TEXT,
        },
        required=list(UTILISATION_FIGURES),
    ),
    "UtilisationReport": _object(
        {
            "period": _object({"since": _DATE, "until": _DATE}),
            "group_by": {"enum": list(REPORT_GROUPS)},
            "groups": {"type": "array", "items": _ref("UtilisationGroup")},
            "total": {
                **_ref("UtilisationGroup"),
                "description": "the same figures over every group (no key, no label)",
            },
            "notes": {"type": "array", "items": _TEXT, "description": "what each figure counts, and what it cannot"},
        }
    ),
    "StewardshipReport": _object(
        {
            "period": _object({"since": _DATE, "until": _DATE}),
            "decisions": {"type": "object", "description": "total, by_outcome and by_evidence: {count, share}"},
            "adherence": {"type": "object", "description": "administrations within the authorised dose and interval"},
            "preapprovals": {
                "type": "object",
                "description": "orders above the maximum, grams saved by the dosing weight, the rounding effect",
            },
            "review_turnaround": {"type": "object", "description": "median and 90th percentile hours, overdue cases"},
            "outcome_capture": {"type": "object", "description": "share of continuing authorisations measured"},
            "discrepancies": {"type": "object", "description": "open discrepancies by kind"},
        }
    ),
    "Discrepancy": _object(
        {
            "id": _TEXT,
            "administration_id": _TEXT,
            "created_at": _TIME,
            "kind": {"enum": list(DISCREPANCY_KINDS)},
            "message": {**_TEXT, "description": "what differed, in words"},
            "expected": _TEXT,
            "actual": _TEXT,
            "status": {"enum": ["open", "resolved"]},
            "resolution": {
                "oneOf": [
                    {"type": "null"},
                    _object({"id": _TEXT, "reason": _TEXT, "resolved_by": _TEXT, "created_at": _TIME}),
                ]
            },
            "authorisation_id": _NULLABLE_TEXT,
            "product": _TEXT,
            "given_on": {"type": "string", "format": "date"},
            "source_id": _NULLABLE_TEXT,
        },
        required=[
            "id",
            "administration_id",
            "created_at",
            "kind",
            "message",
            "expected",
            "actual",
            "status",
            "resolution",
        ],
    ),
    "Administration": _object(
        {
            "id": _TEXT,
            "created_at": _TIME,
            "source_id": _NULLABLE_TEXT,
            "authorisation_id": _NULLABLE_TEXT,
            "preapproval_id": {
                "type": ["integer", "null"],
                "description": "the pre-approval whose dosing weight and profile it was checked against",
            },
            "code": _NULLABLE_TEXT,
            "product": _TEXT,
            "lot": _TEXT,
            "vials": {"type": "array", "items": _object({"size_g": {"type": "number"}, "count": {"type": "integer"}})},
            "grams_given": {"type": "number"},
            "grams_wasted": {"type": "number"},
            "given_on": {"type": "string", "format": "date"},
            "site": _NULLABLE_TEXT,
            "recorded_by": _TEXT,
            "cost": _object(
                {
                    "amount": {"type": ["number", "null"], "description": "null: no local price for the product"},
                    "currency": _NULLABLE_TEXT,
                    "note": _TEXT,
                }
            ),
            "discrepancies": {"type": "array", "items": _ref("Discrepancy")},
        }
    ),
    "Order": _object(
        {
            "patient": {"$ref": "#/components/schemas/DecisionRequest/properties/patient"},
            "diagnosis": {"$ref": "#/components/schemas/DecisionRequest/properties/diagnosis"},
            "therapies": {"$ref": "#/components/schemas/DecisionRequest/properties/therapies"},
            "severity": {"enum": list(SEVERITIES)},
            "product": _TEXT,
            "route": {"enum": list(ROUTES)},
            "dose": {"$ref": "#/components/schemas/DecisionRequest/properties/dose"},
            "last_infusion_date": {"type": "string", "format": "date"},
        },
        required=["patient", "diagnosis", "product"],
    ),
    "Reason": _object(
        {
            "check": _TEXT,
            "ok": {"type": "boolean"},
            "message": _TEXT,
            "warning": {
                "const": True,
                "description": "a warning that does not stop dispensing (check supply_phase: a shortage phase "
                "sends the authorisation's tier to review or refuses it)",
            },
        },
        required=["check", "ok", "message"],
    ),
    "SupplyOverview": _object(
        {
            "phase": {
                "type": ["string", "null"],
                "description": "the phase in force; null: the rulebook declares none",
            },
            "shortage": {"type": "boolean", "description": "whether it is a phase other than the default"},
            "declared": {"type": "boolean", "description": "whether the rulebook served declares the phase"},
            "reason": _NULLABLE_TEXT,
            "set_at": {"type": ["string", "null"], "format": "date-time"},
            "set_by": _NULLABLE_TEXT,
            "default_phase": _NULLABLE_TEXT,
            "tiers": {"type": "array", "items": _object({"tier": _TEXT, "meaning": _TEXT})},
            "phases": {
                "type": "array",
                "items": _object(
                    {
                        "phase": _TEXT,
                        "description": _TEXT,
                        "tiers": {"type": "object", "additionalProperties": {"enum": list(PHASE_ACTIONS)}},
                    }
                ),
            },
            "source": _NULLABLE_TEXT,
            "active_authorisations": {
                "type": "array",
                "description": "authorisations valid today by their rule's tier (`none`: no tier, or a rule the "
                "rulebook no longer has), with what the phase in force does with the tier",
                "items": _object(
                    {
                        "tier": _TEXT,
                        "authorisations": {"type": "integer"},
                        "action": {"oneOf": [{"type": "null"}, {"enum": list(PHASE_ACTIONS)}]},
                    }
                ),
            },
            "history": {
                "type": "array",
                "description": "every setting, newest first",
                "items": _object(
                    {
                        "id": _TEXT,
                        "set_at": _TIME,
                        "phase": _TEXT,
                        "reason": _TEXT,
                        "set_by": _TEXT,
                        "rulebook_version": _TEXT,
                        "rulebook_digest": _TEXT,
                        "record_id": {"type": ["integer", "null"]},
                        "intact": {"type": "boolean", "description": "false: the row is not as the service wrote it"},
                    }
                ),
            },
        }
    ),
    "Preapproval": _object(
        {
            "preapproval_id": {
                "type": "integer",
                "description": "the id of its audit record: name it when recording the administration",
            },
            "dispense": {"type": "boolean"},
            "reasons": {"type": "array", "items": _ref("Reason")},
            "authorisation": {"oneOf": [{"type": "null"}, _ref("Authorisation")]},
            "decision": {"oneOf": [{"type": "null"}, _ref("Decision")]},
            "dosing_profile": {"type": "object"},
            "weight": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "actual_kg": {"type": "number"},
                            "ideal_kg": {"type": ["number", "null"]},
                            "adjusted_kg": {"type": ["number", "null"]},
                            "dosing_kg": {"type": "number"},
                            "basis": _TEXT,
                        }
                    ),
                ]
            },
            "dose": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "g_per_kg": {"type": "number"},
                            "grams": {"type": "number"},
                            "rounded_grams": {
                                "type": ["number", "null"],
                                "description": "null when no combination of vials fits",
                            },
                            "vials": {
                                "type": "array",
                                "items": _object({"size_g": {"type": "number"}, "count": {"type": "integer"}}),
                            },
                            "rounding": _TEXT,
                        }
                    ),
                ]
            },
            "row": {"type": "integer"},
        },
        required=["dispense", "reasons", "authorisation", "decision", "dosing_profile", "weight", "dose"],
    ),
    "BatchResult": _object(
        {
            "results": {
                "type": "array",
                "items": {
                    "oneOf": [
                        _ref("Preapproval"),
                        _object(
                            {
                                "row": {"type": "integer"},
                                "error": {"$ref": "#/components/schemas/Error/properties/error"},
                            }
                        ),
                    ]
                },
            },
            "summary": _object(
                {
                    "orders": {"type": "integer"},
                    "dispense": {"type": "integer"},
                    "hold": {"type": "integer"},
                    "errors": {"type": "integer"},
                }
            ),
        }
    ),
    "Rulebook": _object(
        {
            "rulebook": _object(
                {"name": _TEXT, "version": _TEXT, "digest": _TEXT, "effective": _TEXT, "icd10cm": _TEXT}
            ),
            "sources": {
                "type": "array",
                "items": _object({"id": _TEXT, "title": _TEXT, "publisher": _TEXT, "date": _TEXT, "note": _TEXT}),
            },
            "rules": {"type": "array", "items": _ref("Rule")},
        }
    ),
    "RulebookVersionSummary": _object(_VERSION_SUMMARY),
    "RulebookVersions": _object({"versions": {"type": "array", "items": _ref("RulebookVersionSummary")}}),
    "RulebookVersion": _object(
        {
            **_VERSION_SUMMARY,
            "texts": {
                "type": "object",
                "additionalProperties": _TEXT,
                "description": "the exact texts it was read from: the rulebook by its file name, each reference data "
                "file as data/<name>",
            },
            "intact": {
                "type": "boolean",
                "description": "whether the texts still give the digest (false: the stored row was edited)",
            },
        }
    ),
    "Proposal": _object(
        {
            "id": {"type": "integer"},
            "status": {
                "enum": ["failed", "open", "scheduled", "active", "rejected"],
                "description": "failed: did not read, failed lint or a rule case (cannot be approved); open: awaiting "
                "approvals; scheduled: approved, served from its effective date; active: served; rejected",
            },
            "summary": _TEXT,
            "proposed_by": _TEXT,
            "proposed_at": _TIME,
            "decided_at": {"type": ["string", "null"], "description": "when it was activated or rejected"},
            "candidate": _object(
                {
                    "name": _NULLABLE_TEXT,
                    "version": _NULLABLE_TEXT,
                    "effective": _NULLABLE_TEXT,
                    "digest": _NULLABLE_TEXT,
                }
            ),
            "base": _object({"version": _TEXT, "digest": _TEXT}, extra=False),
            "approvals_required": {"type": "integer"},
            "approvals": {"type": "array", "items": _ref("ProposalVote")},
            "rejections": {"type": "array", "items": _ref("ProposalVote")},
            "tests_sent": {"type": "boolean"},
            "problems": {"type": "array", "items": _TEXT, "description": "why it did not read or failed lint"},
            "cases": {
                "type": ["object", "null"],
                "description": "the rule cases run on it: source, total, passed, failed, results (each: name, passed, "
                "expected, got, rationale)",
            },
            "diff": {"oneOf": [_ref("RulebookDiff"), {"type": "null"}], "description": "against the base version"},
            "replay": {
                "type": ["object", "null"],
                "description": "the recorded decisions of the window decided again on it, as `formulary replay "
                "--json` prints: matrix (old outcome -> new outcome -> count), changed, positive_to_not_supported",
            },
            "continuations": {
                "type": ["object", "null"],
                "description": "the active authorisations whose next continuation would be decided differently: "
                "considered, changed, changed_total, unreadable",
            },
        }
    ),
    "ProposalVote": _object(
        {"voted_by": _TEXT, "voted_at": _TIME, "decision": {"enum": ["approve", "reject"]}, "reason": _TEXT}
    ),
    "ProposalList": _object(
        {
            "proposals": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "integer"},
                        "proposed_at": _TIME,
                        "proposed_by": _TEXT,
                        "summary": _TEXT,
                        "status": _TEXT,
                        "version": _NULLABLE_TEXT,
                        "effective": _NULLABLE_TEXT,
                        "digest": _NULLABLE_TEXT,
                        "base_version": _TEXT,
                        "approvals": {"type": "integer"},
                        "approvals_required": {"type": "integer"},
                    }
                ),
            }
        }
    ),
    "RulebookDiff": _object(
        {
            "old": _object({"name": _TEXT, "version": _TEXT, "digest": _TEXT}),
            "new": _object({"name": _TEXT, "version": _TEXT, "digest": _TEXT}),
            "changes": {
                "type": "array",
                "items": _object(
                    {
                        "kind": {
                            "type": "string",
                            "description": "rulebook, rule, diagnosis, dosing_profile, product, indication, therapy, "
                            "source, measure, specialty, phase or abbreviation",
                        },
                        "id": _TEXT,
                        "field": {"type": ["string", "null"], "description": "null: the whole thing added or removed"},
                        "old": {"description": "the value before (null when added)"},
                        "new": {"description": "the value after (null when removed)"},
                        "words": _TEXT,
                    }
                ),
            },
            "words": {
                "type": "array",
                "items": _TEXT,
                "description": "each change in plain words, or the one line `no differences`",
            },
        }
    ),
    "ReloadResult": _object(
        {
            "name": _TEXT,
            "version": _TEXT,
            "digest": _TEXT,
            "changed": {"type": "boolean"},
            "previous": _object({"version": _TEXT, "digest": _TEXT}),
            "rolled_back": {"type": "boolean", "description": "a stored version served again"},
            "reason": {"type": "string", "description": "why, for a rollback"},
        },
        required=["name", "version", "digest", "changed"],
    ),
    "AuditRecord": _object(
        {
            "id": {"type": "integer"},
            "created_at": _TIME,
            "kind": {
                "enum": [
                    "decision",
                    "refusal",
                    "refusals_summary",
                    "rulebook_reload",
                    "review_resolution",
                    "measurement",
                    "preapproval",
                    "access",
                    "sign_in",
                    "sign_out",
                    "token_created",
                    "token_revoked",
                ]
            },
            "requester": _NULLABLE_TEXT,
            "status": {"type": ["integer", "null"]},
            "decision_id": _NULLABLE_TEXT,
            "outcome": {"enum": [*OUTCOMES, None]},
            "rule_id": _NULLABLE_TEXT,
            "code": _NULLABLE_TEXT,
            "matched_by": _NULLABLE_TEXT,
            "patient_ref_hash": _NULLABLE_TEXT,
            "rulebook_version": _NULLABLE_TEXT,
            "rulebook_digest": _NULLABLE_TEXT,
            "hash": _TEXT,
            "body": {
                "type": "object",
                "description": "the signed record body: for a decision, the request (patient "
                "identifier replaced by its hash) and the decision",
            },
        }
    ),
    "AuditPage": _object({"records": {"type": "array", "items": _ref("AuditRecord")}, "next_cursor": _NULLABLE_TEXT}),
    "Verification": _object(
        {
            "ok": {"type": "boolean"},
            "records": {"type": "integer", "description": "records checked"},
            "first_broken": {"type": ["integer", "null"], "description": "the first bad record"},
            "reason": _NULLABLE_TEXT,
            "broken_row": {
                "oneOf": [
                    {"type": "null"},
                    _object({"table": _TEXT, "id": _TEXT, "problem": _TEXT}),
                ],
                "description": "the first row of a bound table (authorisations, review_resolutions, authorisation_measurements) that is "
                "not as the service wrote it",
            },
            "rows": {"type": "integer", "description": "bound rows checked"},
            "anchors": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "file": _TEXT,
                            "anchors": {"type": "integer"},
                            "newest": {
                                "oneOf": [
                                    {"type": "null"},
                                    _object(
                                        {
                                            "id": {"type": "integer"},
                                            "hash": _TEXT,
                                            "count": {"type": "integer"},
                                            "at": _TIME,
                                        }
                                    ),
                                ]
                            },
                        }
                    ),
                ],
                "description": "the chain heads copied to the anchors file, compared with the chain",
            },
            "from_anchor": {
                "oneOf": [
                    {"type": "null"},
                    _object({"id": {"type": "integer"}, "hash": _TEXT, "count": {"type": "integer"}, "at": _TIME}),
                ],
                "description": "with since_anchor: the anchor checking started from (records before its id were "
                "not checked); null when the whole chain was checked",
            },
            "warnings": {"type": "array", "items": _TEXT},
        }
    ),
    "Health": _object(
        {
            "status": {"enum": ["ok", "degraded", "unavailable"]},
            "rulebook": _object({"name": _TEXT, "version": _TEXT, "digest": _TEXT, "icd10cm": _TEXT}),
            "audit_records": {"type": "integer"},
            "disk": _object(
                {"free_bytes": {"type": "integer"}, "min_free_bytes": {"type": "integer"}},
                required=["free_bytes", "min_free_bytes"],
            ),
            "reason": _TEXT,
        },
        required=["status"],
    ),
}


def _json(schema_name: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema_name)}}}


def _errors(*statuses: int) -> dict:
    words = {
        400: "invalid request (the error names the field)",
        401: "missing, unknown or revoked token",
        403: "the token's role may not do this",
        404: "not found",
        409: "the record changed or is in a state that refuses this (the error's code says which)",
        413: "body over 64 KiB",
        415: "body is not JSON",
        422: "the rulebook fails lint; the old version keeps serving",
        429: "too many refused requests without valid credentials from this address; Retry-After says when to "
        "try again (a valid token is never limited)",
        503: "the audit log or the database is unavailable; nothing was decided or recorded (and no patient data "
        "was read: each read of it is an access record)",
    }
    if 401 in statuses:  # where a request without valid credentials is refused, its address is limited
        statuses = (*statuses, 429)
    return {str(s): _json("Error", words[s]) for s in statuses}


_FILTERS = [
    {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
    for name, schema, description in (
        ("outcome", {"enum": list(OUTCOMES)}, "decision outcome"),
        ("code", _TEXT, "ICD-10-CM code; its descendants match too"),
        ("rule", _TEXT, "rule id"),
        ("requester", _TEXT, "token name of the requester"),
        ("patient_ref", _TEXT, "patient identifier (matched through its keyed hash)"),
        ("since", _TEXT, "ISO 8601 date or date-time, inclusive (UTC if no offset)"),
        ("until", _TEXT, "ISO 8601 date or date-time, exclusive"),
    )
]
_PAGING = [
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "schema": _TEXT,
        "description": "next_cursor of the previous page",
    },
]
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]

PATHS = {
    "/v1/decisions": {
        "post": {
            "summary": "Decide a prior-authorisation request; recorded in the audit log before it is returned",
            "description": roles.described("decide"),
            "security": _SECURED,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("DecisionRequest")}}},
            "responses": {
                "201": _json("Decision", "the decision, as recorded"),
                **_errors(400, 401, 403, 413, 415, 503),
            },
        }
    },
    "/v1/decisions/{decision_id}": {
        "get": {
            "summary": "A recorded decision",
            "description": roles.described("read_decision"),
            "security": _SECURED,
            "parameters": [{"name": "decision_id", "in": "path", "required": True, "schema": _TEXT}],
            "responses": {"200": _json("Decision", "the decision"), **_errors(401, 403, 404, 503)},
        }
    },
    "/v1/decisions/{decision_id}/questionnaire": {
        "get": {
            "summary": "The decision's missing facts as a FHIR R4 Questionnaire (application/fhir+json)",
            "description": roles.described("read_decision")
            + " One item a missing fact, its linkId the fact's name; answer it as a QuestionnaireResponse to"
            " POST /v1/reviews/{case_id}/facts.",
            "security": _SECURED,
            "parameters": [{"name": "decision_id", "in": "path", "required": True, "schema": _TEXT}],
            "responses": {
                "200": {
                    "description": "the Questionnaire",
                    "content": {FHIR_JSON: {"schema": _ref("Questionnaire")}},
                },
                "409": _json(
                    "Error",
                    "the decision names no missing facts (code no_missing_facts), or one a Questionnaire cannot ask: "
                    "the rulebook served no longer knows it, or it is a continuation's baseline (code not_askable)",
                ),
                **_errors(401, 403, 404, 503),
            },
        }
    },
    "/v1/decisions/{decision_id}/rulebook": {
        "get": {
            "summary": "The stored rulebook version the decision was made on, with its texts",
            "description": roles.described("read_decision_rulebook")
            + " Found by the digest the decision records (`rulebook.digest`); not an access record.",
            "security": _SECURED,
            "parameters": [{"name": "decision_id", "in": "path", "required": True, "schema": _TEXT}],
            "responses": {
                "200": _json("RulebookVersion", "the version, with the texts it was read from"),
                "409": _json("Error", "the stored texts no longer read back (code version_unreadable)"),
                **_errors(401, 403, 404),
            },
        }
    },
    "/v1/rulebook/versions": {
        "get": {
            "summary": "Every rulebook version the service has served, newest first, with its activations",
            "description": roles.described("read_rulebook"),
            "security": _SECURED,
            "responses": {"200": _json("RulebookVersions", "the stored versions"), **_errors(401)},
        }
    },
    "/v1/rulebook/versions/{version}": {
        "get": {
            "summary": "One stored rulebook version with the texts it was read from",
            "description": roles.described("read_rulebook"),
            "security": _SECURED,
            "parameters": [
                {"name": "version", "in": "path", "required": True, "schema": _TEXT},
                {
                    "name": "digest",
                    "in": "query",
                    "required": False,
                    "schema": _TEXT,
                    "description": "the digest, or its first four or more digits: picks one of the stored versions "
                    "that share a version string",
                },
            ],
            "responses": {
                "200": _json("RulebookVersion", "the version"),
                "409": _json(
                    "Error",
                    "several stored versions have this version string (code ambiguous_version; `digests` names "
                    "them: pick one with ?digest=)",
                ),
                **_errors(401, 404),
            },
        }
    },
    "/v1/rulebook/versions/{old}/diff/{new}": {
        "get": {
            "summary": "What changed from one stored version to another, rule by rule and field by field",
            "description": roles.described("read_rulebook")
            + " Each of `old` and `new` is a version string, or `version@digest` (four or more digits).",
            "security": _SECURED,
            "parameters": [
                {"name": "old", "in": "path", "required": True, "schema": _TEXT},
                {"name": "new", "in": "path", "required": True, "schema": _TEXT},
            ],
            "responses": {
                "200": _json("RulebookDiff", "the changes, as data and in words"),
                "409": _json(
                    "Error",
                    "several stored versions have this version string (code ambiguous_version), or the stored "
                    "texts no longer read back (code version_unreadable)",
                ),
                **_errors(401, 404),
            },
        }
    },
    "/v1/rulebook": {
        "get": {
            "summary": "The formulary: every rule with its outcome, conditions, evidence and sources",
            "description": roles.described("read_rulebook"),
            "security": _SECURED,
            "responses": {"200": _json("Rulebook", "the rulebook being served"), **_errors(401)},
        }
    },
    "/v1/rulebook/usage": {
        "get": {
            "summary": "How often each rule decided in a window, the rules never reached, and the codes no rule decided",
            "description": roles.described("read_rulebook")
            + " Counted from the audit log's decision records (no patient data); the rules are those of the"
            " rulebook served, and rules of other versions that decided in the window are listed apart.",
            "security": _SECURED,
            "parameters": [
                {
                    "name": "since",
                    "in": "query",
                    "schema": {"type": "string", "format": "date"},
                    "description": "from this day (default 90 days ago)",
                },
                {
                    "name": "until",
                    "in": "query",
                    "schema": {"type": "string", "format": "date"},
                    "description": "before this day (default: now)",
                },
            ],
            "responses": {
                "200": {
                    "description": "the usage",
                    "content": {"application/json": {"schema": _ref("RuleUsage")}},
                },
                **_errors(400, 401),
            },
        }
    },
    "/v1/rulebook/rules/{rule_id}": {
        "get": {
            "summary": "One rule",
            "description": roles.described("read_rulebook"),
            "security": _SECURED,
            "parameters": [{"name": "rule_id", "in": "path", "required": True, "schema": _TEXT}],
            "responses": {"200": _json("Rule", "the rule"), **_errors(401, 404)},
        }
    },
    "/v1/rulebook/proposals": {
        "post": {
            "summary": "Propose a new rulebook version: it is linted, its rule cases run, its diff and replay kept",
            "description": roles.described("propose_rulebook")
            + " The candidate is read with the reference data of the version served. Its rule cases are those sent,"
            " else the ones kept next to the rulebook file; the replay covers `since`..`until` (default the last 90"
            " days) and the active authorisations' next continuations. A proposal that fails is kept as `failed`."
            " With FORMULARY_RULEBOOK_APPROVALS=0 a passing proposal is settled at once. Up to 2 MiB. An audit record"
            " `rulebook_proposal`.",
            "security": _SECURED,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _object(
                            {
                                "rulebook": {"type": "string", "description": "the candidate rulebook's YAML text"},
                                "tests": {"type": "string", "description": "its rule cases' YAML text"},
                                "summary": {"type": "string", "maxLength": 4000},
                                "since": {"type": "string", "format": "date"},
                                "until": {"type": "string", "format": "date"},
                            },
                            required=["rulebook", "summary"],
                        )
                    },
                    "multipart/form-data": {
                        "schema": _object(
                            {
                                "file": {"type": "string", "format": "binary"},
                                "tests": {"type": "string", "format": "binary"},
                                "summary": _TEXT,
                                "since": _TEXT,
                                "until": _TEXT,
                            },
                            required=["file", "summary"],
                        )
                    },
                },
            },
            "responses": {"201": _json("Proposal", "the proposal as kept"), **_errors(400, 401, 403, 413, 415, 503)},
        },
        "get": {
            "summary": "The rulebook proposals, newest first",
            "description": roles.described("read_proposals"),
            "security": _SECURED,
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"enum": ["failed", "open", "scheduled", "active", "rejected"]},
                }
            ],
            "responses": {"200": _json("ProposalList", "the proposals"), **_errors(400, 401, 403)},
        },
    },
    "/v1/rulebook/proposals/{proposal_id}": {
        "get": {
            "summary": "One proposal with its lint problems, rule case results, diff, replay and votes",
            "description": roles.described("read_proposals"),
            "security": _SECURED,
            "parameters": _PROPOSAL_ID,
            "responses": {"200": _json("Proposal", "the proposal"), **_errors(401, 403, 404)},
        }
    },
    "/v1/rulebook/proposals/{proposal_id}/rulebook": {
        "get": {
            "summary": "A proposal's texts: the candidate rulebook, the reference data it was read with, its rule cases",
            "description": roles.described("read_proposals"),
            "security": _SECURED,
            "parameters": _PROPOSAL_ID,
            "responses": {
                "200": {
                    "description": "{texts: {name: text}, tests: text or null}",
                    "content": {
                        "application/json": {
                            "schema": _object(
                                {"texts": {"type": "object", "additionalProperties": _TEXT}, "tests": _NULLABLE_TEXT}
                            )
                        }
                    },
                },
                **_errors(401, 403, 404),
            },
        }
    },
    "/v1/rulebook/proposals/{proposal_id}/changelog": {
        "get": {
            "summary": "The rules/CHANGELOG.md entry for a proposal (committing it is the committee's)",
            "description": roles.described("read_proposals")
            + " The committee's decision is left `pending`: its minutes, not the service, record it.",
            "security": _SECURED,
            "parameters": _PROPOSAL_ID,
            "responses": {
                "200": {"description": "Markdown", "content": {"text/markdown": {"schema": _TEXT}}},
                **_errors(401, 403, 404),
                "409": _json("Error", "the proposal did not read as a rulebook (code proposal_failed)"),
            },
        }
    },
    "/v1/rulebook/proposals/{proposal_id}/approvals": {
        "post": {
            "summary": "Approve or reject a proposal, with a reason (never one's own)",
            "description": roles.described("approve_rulebook")
            + " Each principal votes once. A rejection closes the proposal; the instance's required number of"
            " approvals (FORMULARY_RULEBOOK_APPROVALS, default 2) activates it at its effective date, at once when"
            " that date has come, and every service process follows within a second. An audit record"
            " `rulebook_proposal_vote`.",
            "security": _SECURED,
            "parameters": _PROPOSAL_ID,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _object(
                            {
                                "decision": {"enum": ["approve", "reject"]},
                                "reason": {"type": "string", "maxLength": 2000},
                            }
                        )
                    }
                },
            },
            "responses": {
                "200": _json("Proposal", "the proposal after the vote"),
                "403": _json("Error", "the role may not vote, or the voter proposed it (code own_proposal)"),
                "409": _json(
                    "Error",
                    "the proposal failed (proposal_failed), is closed (proposal_closed), approved already "
                    "(proposal_scheduled), was checked against another version than the one served (proposal_stale), "
                    "or the voter voted already (already_voted)",
                ),
                **_errors(400, 401, 404, 413, 415, 503),
            },
        }
    },
    "/v1/rulebook/versions/{version}/activate": {
        "post": {
            "summary": "Serve a stored version again (a rollback), with a reason",
            "description": roles.described("roll_back_rulebook")
            + " The stored texts are read back and linted as a reload's file is; every service process on the"
            " database follows within a second, and a restarted worker follows it too (it does not activate the"
            " file again unless the file is a version never served). `formulary reload` serves the file again."
            " An audit record `rulebook_reload` with rolled_back and the reason.",
            "security": _SECURED,
            "parameters": [
                {"name": "version", "in": "path", "required": True, "schema": _TEXT},
                {
                    "name": "digest",
                    "in": "query",
                    "schema": _TEXT,
                    "description": "four or more leading digits, where two stored versions share the version string",
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _object({"reason": {"type": "string", "maxLength": 2000}}, required=["reason"])
                    }
                },
            },
            "responses": {
                "200": _json("ReloadResult", "the version now served"),
                "409": _json("Error", "several stored versions have this version string (code ambiguous_version)"),
                **_errors(400, 401, 403, 404, 413, 415, 422, 503),
            },
        }
    },
    "/v1/supply": {
        "get": {
            "summary": "The supply phase in force, its history, and the active authorisations by tier",
            "description": roles.described("read_supply"),
            "security": _SECURED,
            "responses": {"200": _json("SupplyOverview", "the phase"), **_errors(401, 403, 503)},
        },
        "post": {
            "summary": "Set the instance's supply phase, with a reason (every process follows within a second)",
            "description": roles.described("set_supply_phase"),
            "security": _SECURED,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _object(
                            {
                                "phase": {"type": "string", "description": "one of the rulebook's supply phases"},
                                "reason": {"type": "string", "maxLength": 2000},
                            }
                        )
                    }
                },
            },
            "responses": {
                "201": _json("SupplyOverview", "the phase now in force"),
                "409": _json("Error", "the rulebook declares no supply phases (code no_supply_phases)"),
                **_errors(400, 401, 403, 413, 415, 503),
            },
        },
    },
    "/v1/rulebook/reload": {
        "post": {
            "summary": "Load the rulebook file again and serve it, if it passes lint",
            "description": roles.described("reload_rulebook")
            + " For a single-person install: refused (409, code approvals_required) when the instance requires"
            " approvals of rulebook proposals (FORMULARY_RULEBOOK_APPROVALS above 0, the default).",
            "security": _SECURED,
            "responses": {
                "200": _json("ReloadResult", "the version now served"),
                "409": _json("Error", "the instance serves new versions only through approved proposals"),
                **_errors(401, 403, 422, 503),
            },
        }
    },
    "/v1/audit": {
        "get": {
            "summary": "Audit records, newest first, filtered, a page at a time",
            "description": roles.described("read_audit"),
            "security": _SECURED,
            "parameters": _FILTERS + _PAGING,
            "responses": {"200": _json("AuditPage", "one page"), **_errors(400, 401, 403, 503)},
        }
    },
    "/v1/audit.csv": {
        "get": {
            "summary": "The same selection as CSV, streamed",
            "description": roles.described("read_audit"),
            "security": _SECURED,
            "parameters": _FILTERS,
            "responses": {
                "200": {"description": "CSV with a header row", "content": {"text/csv": {"schema": _TEXT}}},
                **_errors(400, 401, 403, 503),
            },
        }
    },
    "/v1/audit/verify": {
        "get": {
            "summary": "Check the whole signed chain of audit records, or the records since the newest anchor",
            "description": roles.described("read_audit")
            + " With since_anchor=true only the newest anchor's record (its hash must be the anchor's), the records"
            " after it, the head and the rows those records bound are checked (from_anchor names the anchor);"
            " with no anchor, the whole chain, with a warning.",
            "security": _SECURED,
            "parameters": [
                {
                    "name": "since_anchor",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": ["true", "false"]},
                    "description": "default false: the whole chain",
                }
            ],
            "responses": {"200": _json("Verification", "the result"), **_errors(400, 401, 403, 503)},
        }
    },
    "/v1/reviews": {
        "get": {
            "summary": "Review cases a page at a time, oldest first unless sorted otherwise, with their age and the total",
            "description": roles.described("list_reviews")
            + " Follow next_cursor (with the same filters and sort) for the next page; total counts every match.",
            "security": _SECURED,
            "parameters": [
                {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
                for name, schema, description in (
                    (
                        "status",
                        {"enum": ["open", "pending_information", "approved", "denied", "closed_by_rules", "all"]},
                        "default open",
                    ),
                    (
                        "reason",
                        {"enum": list(REVIEW_REASONS)},
                        "why the case needs review",
                    ),
                    ("diagnosis", _TEXT, "ICD-10-CM code; its descendants match too"),
                    (
                        "older_than_hours",
                        {"type": "integer", "minimum": 0, "maximum": 87600},
                        "opened at least this long ago",
                    ),
                    (
                        "newer_than_hours",
                        {"type": "integer", "minimum": 1, "maximum": 87600},
                        "opened less than this long ago",
                    ),
                    (
                        "sort",
                        {"enum": list(SORTS)},
                        "default due: retrospective reviews due soonest (the overdue) first, then the others oldest "
                        "first; oldest; newest; diagnosis: by code, then oldest",
                    ),
                    ("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "cases a page, default 50"),
                    ("cursor", _TEXT, "next_cursor of the page before"),
                )
            ],
            "responses": {
                "200": {
                    "description": "one page of the cases",
                    "content": {
                        "application/json": {
                            "schema": _object(
                                {
                                    "cases": {"type": "array", "items": _ref("ReviewCase")},
                                    "total": {"type": "integer", "description": "every case matching, on all pages"},
                                    "next_cursor": {**_NULLABLE_TEXT, "description": "null on the last page"},
                                }
                            )
                        }
                    },
                },
                **_errors(400, 401, 403, 503),
            },
        }
    },
    "/v1/reviews/{case_id}": {
        "get": {
            "summary": "A case with its decision, missing facts or candidate diagnoses, and resolutions",
            "description": roles.described("read_case"),
            "security": _SECURED,
            "parameters": [{"name": "case_id", "in": "path", "required": True, "schema": _TEXT}],
            "responses": {"200": _json("ReviewCase", "the case"), **_errors(401, 403, 404, 503)},
        }
    },
    "/v1/reviews/{case_id}/resolution": {
        "post": {
            "summary": "Approve, deny or ask for more information; or give a second opinion on a resolution",
            "description": roles.described("resolve_case")
            + " The reviewer is the token's principal; the reason is required.",
            "security": _SECURED,
            "parameters": [{"name": "case_id", "in": "path", "required": True, "schema": _TEXT}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ResolutionRequest")}}},
            "responses": {
                "201": _json("ReviewCase", "the case with its resolutions"),
                "409": _json(
                    "Error",
                    "the case is already resolved (code conflict), or it changed since it was read (code "
                    "case_changed: another resolution, added facts or a resubmission); nothing was applied",
                ),
                **_errors(400, 401, 403, 404, 415, 503),
            },
        }
    },
    "/v1/reviews/{case_id}/facts": {
        "post": {
            "summary": "Add facts to an open or pended case and decide it again; the decision is recorded on the case",
            "description": roles.described("add_facts"),
            "security": _SECURED,
            "parameters": [{"name": "case_id", "in": "path", "required": True, "schema": _TEXT}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    FHIR_JSON: {"schema": _ref("QuestionnaireResponse")},
                },
            },
            "responses": {
                "201": _json("Decision", "the new decision"),
                "400": {
                    "description": "invalid request fields (an Error naming the field), or an invalid "
                    "QuestionnaireResponse (an OperationOutcome naming the linkId)",
                    "content": {
                        "application/json": {"schema": _ref("Error")},
                        FHIR_JSON: {"schema": _ref("OperationOutcome")},
                    },
                },
                "409": _json(
                    "Error",
                    "the case is closed (code conflict), or it changed while the facts were decided (code "
                    "case_changed); the new decision was neither applied nor recorded",
                ),
                **_errors(401, 403, 404, 415, 503),
            },
        }
    },
    "/v1/authorisations": {
        "get": {
            "summary": "A patient's authorisations with their expiry; or those due for review",
            "description": roles.described("read_authorisations")
            + " With expiring_within_days: the authorisations whose last valid day is within that many days,"
            " soonest first, a page at a time (follow next_cursor with the same arguments), for one patient"
            " when patient_ref is given; otherwise patient_ref is required.",
            "security": _SECURED,
            "parameters": [
                {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
                for name, schema, description in (
                    ("patient_ref", _TEXT, "the patient; required without expiring_within_days"),
                    ("expiring_within_days", {"type": "integer", "minimum": 1, "maximum": 365}, "due for review"),
                    (
                        "include_overdue",
                        {"enum": ["true", "false"]},
                        "also those that ended in the last expiring_within_days days and were not continued",
                    ),
                    (
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 200},
                        "with expiring_within_days, default 50",
                    ),
                    ("cursor", _TEXT, "next_cursor of the page before"),
                )
            ],
            "responses": {
                "200": {
                    "description": "a patient's, newest expiry first; or those due, soonest first",
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    _object({"authorisations": {"type": "array", "items": _ref("Authorisation")}}),
                                    _object(
                                        {
                                            "authorisations": {"type": "array", "items": _ref("DueAuthorisation")},
                                            "next_cursor": {**_NULLABLE_TEXT, "description": "null on the last page"},
                                        }
                                    ),
                                ]
                            }
                        }
                    },
                },
                **_errors(400, 401, 503),
            },
        }
    },
    "/v1/authorisations/{authorisation_id}": {
        "get": {
            "summary": "An authorisation with its baseline observations, its measurements and its chain",
            "description": roles.described("read_authorisation"),
            "security": _SECURED,
            "parameters": [{"name": "authorisation_id", "in": "path", "required": True, "schema": _TEXT}],
            "responses": {"200": _json("AuthorisationDetail", "the authorisation"), **_errors(401, 403, 404, 503)},
        }
    },
    "/v1/authorisations/{authorisation_id}/measurements": {
        "post": {
            "summary": "Record an outcome measure against an authorisation (an ended one too)",
            "description": roles.described("record_measurement")
            + " Validated as a decision request's observations are: a known measure and unit, converted to the"
            " measure's canonical unit, within its range, taken on a date that is not after today; a 400 names"
            " the field.",
            "security": _SECURED,
            "parameters": [{"name": "authorisation_id", "in": "path", "required": True, "schema": _TEXT}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("MeasurementRequest")}}},
            "responses": {
                "201": _json("Measurement", "the measurement as recorded"),
                **_errors(400, 401, 403, 404, 413, 415, 503),
            },
        }
    },
    "/v1/authorisations/{authorisation_id}/continuation": {
        "post": {
            "summary": "Decide a continuation of an authorisation on the current rulebook",
            "description": roles.described("continue_authorisation")
            + " The request is the granting decision's with the optional body's extra facts (not the patient,"
            " the diagnosis or the course); the rule's review criteria compare the measurements recorded since"
            " the authorisation began with the initial authorisation's baseline. Benefit shown: the positive"
            " decision and a new authorisation whose previous_id is this one, for the rule's continuing_days."
            " A measure missing or stale: needs_review naming it. Benefit not shown: not_supported, 'no"
            " demonstrated benefit', with a review case. 409 when the authorisation was continued already or"
            " fails its integrity check.",
            "security": _SECURED,
            "parameters": [{"name": "authorisation_id", "in": "path", "required": True, "schema": _TEXT}],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": {"type": "object", "description": "extra request facts"}}},
            },
            "responses": {
                "201": _json("Decision", "the continuation's decision, recorded"),
                **_errors(400, 401, 403, 404, 409, 413, 415, 503),
            },
        }
    },
    "/v1/preapprovals": {
        "post": {
            "summary": "May this order be dispensed? Every reason, the dosing weight and the grams",
            "description": roles.described("preapprove"),
            "security": _SECURED,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Order")}}},
            "responses": {"200": _json("Preapproval", "the check"), **_errors(400, 401, 403, 413, 415, 503)},
        }
    },
    "/v1/preapprovals/batch": {
        "post": {
            "summary": "A day's infusion list: a JSON list of orders, or CSV (text/csv body or multipart field 'file')",
            "description": roles.described("preapprove")
            + " A bad row gets a row-numbered error; the rest are checked.",
            "security": _SECURED,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "array", "items": _ref("Order")}},
                    "text/csv": {"schema": _TEXT},
                    "multipart/form-data": {"schema": _object({"file": {"type": "string", "format": "binary"}})},
                },
            },
            "responses": {"200": _json("BatchResult", "one result a row"), **_errors(400, 401, 403, 413, 415, 503)},
        }
    },
    "/v1/administrations": {
        "post": {
            "summary": "Record what was given, checked against its authorisation; differences are discrepancies",
            "description": roles.described("record_administration")
            + " Never refused for what the checks find (the infusion happened): a different product, more grams than"
            " the authorised dose for the dose-determining weight of its pre-approval, a course sooner than the"
            " interval, a date outside the authorisation, vials that do not add up or a vial size the product does"
            " not come in are each a discrepancy recorded with it. A 400 names a malformed field.",
            "security": _SECURED,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("AdministrationRequest")}},
            },
            "responses": {
                "201": _json("Administration", "the administration as recorded, with its discrepancies"),
                **_errors(400, 401, 403, 409, 413, 415, 503),
            },
        },
        "get": {
            "summary": "The administrations under an authorisation, in the order given, with their discrepancies",
            "description": roles.described("read_administrations"),
            "security": _SECURED,
            "parameters": [{"name": "authorisation_id", "in": "query", "required": True, "schema": _TEXT}],
            "responses": {
                "200": {
                    "description": "oldest first",
                    "content": {
                        "application/json": {
                            "schema": _object({"administrations": {"type": "array", "items": _ref("Administration")}})
                        }
                    },
                },
                **_errors(400, 401, 403, 503),
            },
        },
    },
    "/v1/administrations/{administration_id}": {
        "get": {
            "summary": "An administration with its discrepancies",
            "description": roles.described("read_administrations"),
            "security": _SECURED,
            "parameters": [{"name": "administration_id", "in": "path", "required": True, "schema": _TEXT}],
            "responses": {"200": _json("Administration", "the administration"), **_errors(401, 403, 404, 503)},
        }
    },
    "/v1/discrepancies": {
        "get": {
            "summary": "Discrepancies: open ones oldest first (the work queue), or resolved ones newest first",
            "description": roles.described("read_discrepancies"),
            "security": _SECURED,
            "parameters": [
                {"name": "status", "in": "query", "required": False, "schema": {"enum": ["open", "resolved"]}},
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                },
            ],
            "responses": {
                "200": {
                    "description": "the discrepancies, each with its administration's authorisation, product and day",
                    "content": {
                        "application/json": {
                            "schema": _object({"discrepancies": {"type": "array", "items": _ref("Discrepancy")}})
                        }
                    },
                },
                **_errors(400, 401, 403, 503),
            },
        }
    },
    "/v1/discrepancies/{discrepancy_id}/resolution": {
        "post": {
            "summary": "Resolve a discrepancy with a reason (once: a second is 409 already_resolved)",
            "description": roles.described("resolve_discrepancy"),
            "security": _SECURED,
            "parameters": [{"name": "discrepancy_id", "in": "path", "required": True, "schema": _TEXT}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _object({"reason": _TEXT})}}},
            "responses": {
                "201": _json("Discrepancy", "the discrepancy, resolved"),
                **_errors(400, 401, 403, 404, 409, 413, 415, 503),
            },
        }
    },
    "/cds-services": {
        "get": {
            "summary": "CDS Hooks discovery: the services ivig-order-select and ivig-order-sign, with their prefetch templates",
            "description": "CDS Hooks 2.0 (https://cds-hooks.hl7.org/2.0/). Every call carries the EHR's signed JWT "
            "(a client added with `formulary cds-clients add`); its aud is this URL.",
            "security": [{"cdsJwt": []}],
            "responses": {"200": _json("CdsHooksObject", "{services: [...]}"), **_errors(401, 503)},
        }
    },
    "/cds-services/{service_id}": {
        "post": {
            "summary": "A CDS Hooks call (order-select or order-sign): one card per IVIG draft MedicationRequest",
            "description": "Each IVIG order is decided and recorded as a decision (requester `<client iss>/<userId>`); "
            "the cards follow the CDS Hooks 2.0 response.",
            "security": [{"cdsJwt": []}],
            "parameters": [{"name": "service_id", "in": "path", "required": True, "schema": _TEXT}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("CdsHooksObject")}}},
            "responses": {
                "200": _json("CdsHooksObject", "{cards: [...]}"),
                **_errors(400, 401, 404, 413, 415, 503),
            },
        }
    },
    "/cds-services/{service_id}/feedback": {
        "post": {
            "summary": "CDS Hooks feedback: cards accepted or overridden, recorded against their decisions",
            "security": [{"cdsJwt": []}],
            "parameters": [{"name": "service_id", "in": "path", "required": True, "schema": _TEXT}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("CdsHooksObject")}}},
            "responses": {
                "200": _json("CdsHooksObject", "{recorded: [{card, decision_id, record_id}]}"),
                **_errors(400, 401, 404, 413, 415, 503),
            },
        }
    },
    "/v1/reports/utilisation": {
        "get": {
            "summary": "Utilisation by a grouping: requests, decisions, authorisations, patients, grams and cost",
            "description": roles.described("read_reports"),
            "security": _SECURED,
            "parameters": _REPORT_PERIOD + [_REPORT_GROUP],
            "responses": {
                "200": _json("UtilisationReport", "a row a group, and the totals"),
                **_errors(400, 401, 403, 503),
            },
        }
    },
    "/v1/reports/utilisation.csv": {
        "get": {
            "summary": "The utilisation report as CSV (a row a group and currency, then the totals)",
            "description": roles.described("read_reports"),
            "security": _SECURED,
            "parameters": _REPORT_PERIOD + [_REPORT_GROUP],
            "responses": {
                "200": {"description": "CSV with a header row", "content": {"text/csv": {"schema": _TEXT}}},
                **_errors(400, 401, 403, 503),
            },
        }
    },
    "/v1/reports/stewardship": {
        "get": {
            "summary": "Stewardship figures: outcomes, evidence, adherence, doses, weights, rounding, turnaround, capture",
            "description": roles.described("read_reports"),
            "security": _SECURED,
            "parameters": _REPORT_PERIOD,
            "responses": {
                "200": _json("StewardshipReport", "the figures for the period"),
                **_errors(400, 401, 403, 503),
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness and the rulebook version served (no token needed)",
            "responses": {
                "200": _json("Health", "serving; 'degraded' when the database's disk is below FORMULARY_MIN_FREE_MB"),
                "503": _json("Health", "the database does not answer or cannot be written"),
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}
            },
        }
    },
}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {
        "title": "IVIG formulary prior-authorisation API",
        "version": "1",
        "description": "Decisions on intravenous immunoglobulin requests from a declarative rulebook, "
        "each recorded in a tamper-evident audit log before it is returned.",
    },
    "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "a token from `formulary tokens create`"},
            "cdsJwt": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "a JWT signed by a CDS client's key (ES384, RS384, ES256, RS256), as CDS Hooks requires",
            },
        },
    },
}


@blueprint.get("/openapi.json")
def openapi_document():
    return jsonify(DOCUMENT)
