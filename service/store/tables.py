"""The database tables, as SQLAlchemy Core (queries use these; migrations create them).

Times are stored as ISO 8601 UTC text with a fixed width, so they sort and compare as text the
same way on SQLite and PostgreSQL.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

audit_records = Table(
    "audit_records",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),  # 1, 2, 3, ...: the chain order
    Column("created_at", String(32), nullable=False),
    Column("kind", String(32), nullable=False),  # decision, refusal, rulebook_reload
    Column("requester", String(128)),
    Column("status", Integer),
    Column("decision_id", String(36), unique=True),
    Column("outcome", String(32)),
    Column("rule_id", String(128)),
    Column("code", String(16)),  # dotless, so a prefix finds descendants
    Column("matched_by", String(16)),
    Column("patient_ref_hash", String(64)),
    Column("rulebook_version", String(64)),
    Column("rulebook_digest", String(64)),
    Column("content", Text, nullable=False),  # canonical JSON, signed
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_created_at", "created_at"),
    Index("ix_audit_code", "code", "id"),  # (column, id): filtered pages read newest first off the index
    Index("ix_audit_rule", "rule_id", "id"),
    Index("ix_audit_requester", "requester", "id"),
    Index("ix_audit_patient", "patient_ref_hash", "id"),
    Index("ix_audit_outcome", "outcome", "id"),
    # A report's period of decisions or pre-approvals, covering the columns its aggregates group and count by.
    Index("ix_audit_report", "kind", "created_at", "outcome", "code", "rule_id", "requester", "patient_ref_hash"),
)

# One row: the latest record's id and hash. Appends lock it, so writers on several processes or
# hosts extend one chain in turn.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_id", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", String(32), nullable=False),
    Column("revoked_at", String(32)),
)

# A console sign-in, open until its sign-out deletes it (or its token is revoked, or it is older
# than the session lifetime). The signed session cookie carries the id; only its digest is kept.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False),
    Column("created_at", String(32), nullable=False),
    Index("ix_console_session_created", "created_at"),
)

# Which rulebook version every service process should serve; the newest row wins.
rulebook_activations = Table(
    "rulebook_activations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("version", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("activated_at", String(32), nullable=False),
    Column("activated_by", String(128), nullable=False),
    Index("ix_rulebook_activation_digest", "digest"),
)

# Every rulebook version ever activated, once per digest, with the exact texts it was read from:
# JSON {name: text}, the rulebook by its file name and each reference data file as "data/<name>"
# (service.rulebook.reader.digest_texts recomputes the digest from them). The reader bounds each
# text (MAX_FILE_BYTES) and there are at most seven.
rulebook_versions = Table(
    "rulebook_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("version", String(64), nullable=False),
    Column("effective", String(32), nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("texts", Text, nullable=False),
    Column("stored_at", String(32), nullable=False),
    Column("stored_by", String(128), nullable=False),
    Index("ix_rulebook_version", "version"),
)
rulebook_proposals = Table(
    "rulebook_proposals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("proposed_at", String(32), nullable=False),
    Column("proposed_by", String(128), nullable=False),
    Column("summary", Text, nullable=False),
    Column("status", String(16), nullable=False),  # failed, open, scheduled, active, rejected
    Column("name", String(128)),  # the candidate's; null when it did not read
    Column("version", String(64)),
    Column("effective", String(32)),
    Column("digest", String(64)),
    Column("base_version", String(64), nullable=False),  # the version served when it was proposed
    Column("base_digest", String(64), nullable=False),
    Column("texts", Text, nullable=False),  # JSON {name: text}, as rulebook_versions keeps them
    Column("tests", Text),  # the rule cases sent with it, if any
    Column("report", Text, nullable=False),  # JSON: lint problems, case results, diff, replay
    Column("decided_at", String(32)),  # when it was activated or rejected
    Index("ix_rulebook_proposal_status", "status", "effective"),
)
rulebook_proposal_votes = Table(
    "rulebook_proposal_votes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("proposal_id", Integer, ForeignKey("rulebook_proposals.id"), nullable=False),
    Column("voted_at", String(32), nullable=False),
    Column("voted_by", String(128), nullable=False),
    Column("decision", String(8), nullable=False),  # approve, reject
    Column("reason", Text, nullable=False),
    UniqueConstraint("proposal_id", "voted_by", name="uq_proposal_vote_by"),
)

GENESIS_HASH = "0" * 64

# A needs_review decision opens a case; resolutions and re-decisions attach to it.
review_cases = Table(
    "review_cases",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("opened_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    Column("status", String(24), nullable=False),  # open, pending_information, approved, denied, closed_by_rules
    Column("requester", String(128), nullable=False),
    Column("patient_ref_hash", String(64)),
    Column("code", String(16)),
    Column("opening_decision_id", String(36), nullable=False),
    Column("latest_decision_id", String(36), nullable=False),
    Column("request", Text, nullable=False),  # the request as recorded (no clear identifier)
    Column("version", Integer, nullable=False, server_default="0"),  # +1 at every transition (checked when applied)
    Column("reason", String(24)),  # why it needs review: missing_facts, unclear_diagnosis, no_rule, rule_review, ...
    Column("due_at", String(32)),  # a retrospective review of a provisional authorisation: resolve by then
    # Its first resolution's created_at, written with it (derived: migration 0019 fills it from them).
    Column("first_resolved_at", String(32)),
    Index("ix_review_status", "status", "opened_at"),
    Index("ix_review_reason", "status", "reason", "opened_at"),
    Index("ix_review_due", "status", "due_at"),
    # The review turnaround: a period's cases off the index alone (the rows hold the whole request).
    Index("ix_review_opened", "opened_at", "due_at", "status", "first_resolved_at"),
)

review_resolutions = Table(
    "review_resolutions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("resolution", String(24), nullable=False),  # approved, denied, more_information
    Column("reason", Text, nullable=False),
    Column("valid_days", Integer),
    Column("reviewer", String(128), nullable=False),
    Column("references_id", String(36)),  # a second opinion names the resolution it follows
    # Bound to the chained record that created it (service/store/audit.py: AuditStore.bind).
    Column("record_id", BigInteger),
    Column("binding", String(64)),
    Index("ix_resolution_case_time", "case_id", "created_at"),  # a case's resolutions, the first one first
)

# Permission to give IVIG to one patient for one diagnosis until a date.
authorisations = Table(
    "authorisations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", String(32), nullable=False),
    Column("patient_ref_hash", String(64), nullable=False),
    Column("diagnosis_id", String(128)),
    Column("code", String(16), nullable=False),
    Column("basis", String(24), nullable=False),  # approved, off_label_with_evidence, review
    Column("rule_id", String(128)),
    Column("products", Text, nullable=False),  # JSON list; empty: any formulary product
    Column("dosing", Text, nullable=False),  # JSON: the dosing profile when it was granted
    Column("valid_from", String(10), nullable=False),
    Column("valid_until", String(10), nullable=False),  # last valid day, inclusive
    Column("decision_id", String(36)),
    Column("case_id", String(36)),
    Column("rulebook_version", String(64), nullable=False),
    Column("rulebook_digest", String(64), nullable=False),
    Column("record_id", BigInteger),  # bound like review_resolutions
    Column("binding", String(64)),
    Column("previous_id", String(36)),  # the authorisation this one continues, if any
    Index("ix_authorisation_patient", "patient_ref_hash", "valid_until"),
    Index("ix_authorisation_valid_until", "valid_until"),
    Index("ix_authorisation_previous", "previous_id"),
    Index("ix_authorisation_created", "created_at"),
    Index("ix_authorisation_report", "id", "rule_id", "basis"),  # what was given grouped by rule or basis, index only
)

# An outcome measure recorded against an authorisation (its baseline is the granting decision's
# observations): the value as given and in the measure's canonical unit. Bound like authorisations.
authorisation_measurements = Table(
    "authorisation_measurements",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("authorisation_id", String(36), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("measure", String(64), nullable=False),
    Column("value", Float, nullable=False),  # in the measure's canonical unit
    Column("unit", String(32), nullable=False),  # the canonical unit
    Column("value_given", Float, nullable=False),
    Column("unit_given", String(32), nullable=False),
    Column("taken_on", String(10), nullable=False),
    Column("recorded_by", String(128), nullable=False),
    Column("record_id", BigInteger),
    Column("binding", String(64)),
    Index("ix_measurement_authorisation", "authorisation_id", "taken_on"),
)

# What was given (issue 17): one infusion, checked against its authorisation when recorded. Bound
# like authorisations. `source_id` is the pharmacy system's dispense id, once only (re-imports).
administrations = Table(
    "administrations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", String(32), nullable=False),
    Column("source_id", String(128), unique=True),
    Column("authorisation_id", String(36)),  # null: given with no valid authorisation (a discrepancy)
    Column("preapproval_id", BigInteger),  # the audit record of the pre-approval it was checked against, if any
    Column("patient_ref_hash", String(64), nullable=False),
    Column("code", String(16)),  # the authorisation's, dotless
    Column("product", String(128), nullable=False),
    Column("lot", String(64), nullable=False),
    Column("vials", Text, nullable=False),  # JSON [{"size_g", "count"}]
    Column("grams_given", Float, nullable=False),
    Column("grams_wasted", Float, nullable=False),
    Column("given_on", String(10), nullable=False),
    Column("site", String(128)),
    Column("recorded_by", String(128), nullable=False),
    Column("price_per_g", Float),  # the committee's local price when it was recorded; null: no price
    Column("currency", String(3)),
    Column("record_id", BigInteger),
    Column("binding", String(64)),
    Index("ix_administration_authorisation", "authorisation_id", "given_on"),
    Index("ix_administration_patient", "patient_ref_hash", "given_on"),
    # A period of what was given, covering what the utilisation report groups and sums by.
    Index(
        "ix_administration_report",
        "given_on",
        "authorisation_id",
        "code",
        "product",
        "currency",
        "grams_given",
        "grams_wasted",
        "price_per_g",
    ),
)

# What an administration's checks found differed from its authorisation, in words, with the value
# expected and the value found. Written with the administration, in the same record.
discrepancies = Table(
    "discrepancies",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("administration_id", String(36), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("expected", Text, nullable=False),
    Column("actual", Text, nullable=False),
    Column("record_id", BigInteger),
    Column("binding", String(64)),
    Index("ix_discrepancy_administration", "administration_id"),
    Index("ix_discrepancy_created", "created_at"),
)

# A discrepancy is open until its one resolution (unique: a second is refused by the database too).
discrepancy_resolutions = Table(
    "discrepancy_resolutions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("discrepancy_id", String(36), nullable=False, unique=True),
    Column("created_at", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("resolved_by", String(128), nullable=False),
    Column("record_id", BigInteger),
    Column("binding", String(64)),
)

# The instance's supply phase, one row each time an admin sets it; the newest (set_at, id) is the
# phase every service process follows (service/store/supply_phases.py). Bound like authorisations.
supply_phases = Table(
    "supply_phases",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("set_at", String(32), nullable=False),
    Column("phase", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("set_by", String(128), nullable=False),
    Column("rulebook_version", String(64), nullable=False),  # the rulebook whose phases it was set from
    Column("rulebook_digest", String(64), nullable=False),
    Column("record_id", BigInteger),
    Column("binding", String(64)),
    Index("ix_supply_phase_set_at", "set_at", "id"),
)

# The EHRs (CDS Clients) whose signed JWTs the CDS Hooks service accepts (issue 19): the issuer,
# its JWK Set (inline, JSON), the one jku URL its keys may also be fetched from, and the FHIR
# servers the service may fetch from on its calls.
cds_clients = Table(
    "cds_clients",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("iss", String(256), nullable=False, unique=True),
    Column("jwks", Text, nullable=False),
    Column("jku", String(512)),
    Column("fhir_servers", Text, nullable=False),  # JSON list: the FHIR base URLs its calls may name to fetch from
    Column("added_at", String(32), nullable=False),
    Column("added_by", String(128), nullable=False),
)

# The jti of every JWT accepted, until it expires: a replay is refused by every process and host
# (the primary key), and rows past their expiry are deleted as new ones come.
cds_jtis = Table(
    "cds_jtis",
    metadata,
    Column("iss", String(256), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires_at", String(32), nullable=False),
    Index("ix_cds_jtis_expires", "expires_at"),
)

# A pre-approval as the reports read it (issue 17): the record's indexed fields they group by and
# the figures they sum, copied out of its signed record in the transaction that writes it. A derived
# index of the record's content, not a record of its own, so it carries no binding; migration 0015
# fills it from the records (service/store/preapproval_figures.py).
preapproval_figures = Table(
    "preapproval_figures",
    metadata,
    # The pre-approval's audit record; on SQLite the table's rowid.
    Column("record_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("created_at", String(32), nullable=False),  # the record's, as are the five columns after it
    Column("requester", String(128)),
    Column("outcome", String(32)),
    Column("rule_id", String(128)),
    Column("code", String(16)),
    Column("patient_ref_hash", String(64)),
    Column("dispense", Boolean, nullable=False),
    Column("grams", Float),  # the dose computed, exact
    Column("rounded_grams", Float),  # the same in whole vials, when a combination fits
    Column("g_per_kg", Float),  # the dose per kg computed
    Column("actual_kg", Float),
    Column("dosing_kg", Float),  # the dose-determining weight
    Column("ordered_g_per_kg", Float),
    Column("max_g_per_kg", Float),  # the maximum of the dosing profile applied
    Index("ix_preapproval_figures_created", "created_at"),
)


# Every row the utilisation report counts a patient in (issue 17): a decision's or a pre-approval's
# record, an authorisation, an administration, with the values it is grouped by as the report
# groups it (an administration by its authorisation's rule and basis, an authorisation by its
# decision's requester) and the day it counts in. Distinct patients a group are then read in order
# off an index (group, patient, day), never sorted from the ~1,150,000 rows of a year. Derived from
# the records and rows, written with them and rebuilt by migration 0016, so it carries no binding
# (service/store/report_patients.py).
report_patients = Table(
    "report_patients",
    metadata,
    Column("source", String(16), primary_key=True),  # decision, preapproval, authorisation, administration
    Column("source_id", String(36), primary_key=True),  # the record's id; the authorisation's, administration's
    Column("day", String(10), nullable=False),  # created (an administration: given), UTC
    Column("month", String(7), nullable=False),  # the day's
    Column("patient_ref_hash", String(64), nullable=False),
    Column("code", String(16)),
    Column("rule_id", String(128)),
    Column("outcome", String(32)),  # a decision's outcome; an authorisation's (or administration's) basis
    Column("requester", String(128)),  # null for an administration: not grouped by requester
    Column("product", String(128)),  # an administration's only: the others are not grouped by product
    Index("ix_report_patients_code", "code", "patient_ref_hash", "day"),
    Index("ix_report_patients_rule", "rule_id", "patient_ref_hash", "day"),
    Index("ix_report_patients_outcome", "outcome", "patient_ref_hash", "day"),
    Index("ix_report_patients_requester", "requester", "patient_ref_hash", "day", "source"),
    Index("ix_report_patients_product", "product", "patient_ref_hash", "day"),
    Index("ix_report_patients_month", "month", "patient_ref_hash", "day"),
    # By patient, with the stored values a rulebook maps (a group of several codes or rules counts off it).
    Index("ix_report_patients_patient", "patient_ref_hash", "day", "source", "code", "rule_id"),
)


# The decision records of each day counted by outcome and rule (issue 17): the stewardship report's
# decisions by outcome and by evidence sum a period's days here instead of grouping its ~600,000
# records. Derived from the records, counted up as they are written and rebuilt by migration 0017
# (service/store/decision_days.py); '' stands for an outcome or rule the record does not name (a
# primary key column cannot be null).
decision_days = Table(
    "decision_days",
    metadata,
    Column("day", String(10), primary_key=True),  # the record's created_at, UTC
    Column("outcome", String(32), primary_key=True),
    Column("rule_id", String(128), primary_key=True),
    Column("decisions", BigInteger, nullable=False),
)


# What the utilisation report sums, a day at a time for each grouping (issue 17): its year by
# diagnosis, rule, outcome, requester, product or month summed a year's ~1,150,000 decisions,
# pre-approvals, authorisations and administrations; a period's days here are a few thousand rows.
# Derived from those four, added to as the service writes them and rebuilt by migration 0018
# (service/store/report_days.py). `grouping` names the value: code, rule_id, outcome, requester or
# product; '' stands for a value the row does not name, as in decision_days.
report_days = Table(
    "report_days",
    metadata,
    Column("grouping", String(16), primary_key=True),
    Column("day", String(10), primary_key=True),  # created (an administration: given), UTC
    Column("value", String(128), primary_key=True),
    Column("currency", String(3), primary_key=True),  # what was given's price's; '' for the rest
    Column("requests", BigInteger, nullable=False),  # decision records, and by outcome:
    Column("decided_approved", BigInteger, nullable=False),
    Column("decided_off_label_with_evidence", BigInteger, nullable=False),
    Column("decided_needs_review", BigInteger, nullable=False),
    Column("decided_not_supported", BigInteger, nullable=False),
    Column("preapprovals", BigInteger, nullable=False),
    Column("grams_authorised", Float, nullable=False),  # the pre-approvals that said dispense
    Column("authorisations", BigInteger, nullable=False),
    Column("administrations", BigInteger, nullable=False),
    Column("grams_given", Float, nullable=False),
    Column("grams_wasted", Float, nullable=False),
    Column("cost", Float),  # grams opened x price, of those with a price; null: none had one
    Column("grams_without_price", Float, nullable=False),  # opened with no price known
)
