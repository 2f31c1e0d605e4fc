"""Who may do what: the one role table that the API's guards, the console's menu and guards, and
the OpenAPI document all read.

The role names are the ones a token can carry (service/store/tokens.py). An action may limit a
role to what that person requested themselves (a clinician sees only their own decisions and
cases); `check_owner` enforces that once the record's requester is known.
"""

from dataclasses import dataclass

from service.store.tokens import ROLES, Principal
from service.web.errors import Refusal


@dataclass(frozen=True)
class Permission:
    roles: tuple[str, ...]
    own_only: tuple[str, ...] = ()  # roles that may act only on what they requested themselves
    own_words: str = "own"  # how the API description says so: "clinician (own decisions)"
    not_own: str = ""  # the refusal when such a role reaches for someone else's record
    reads_patient_data: bool = False  # each successful call is an `access` record (service/web/access.py)


# Every role but the committee's: its members change the rules, and patients' records are not theirs to read.
PATIENT_READERS = tuple(role for role in ROLES if role != "committee")

PERMISSIONS: dict[str, Permission] = {
    "decide": Permission(("clinician", "pharmacist", "admin")),
    "read_decision": Permission(
        ("clinician", "pharmacist", "auditor", "admin"),
        own_only=("clinician",),
        own_words="own decisions",
        not_own="a clinician may read only the decisions they submitted",
        reads_patient_data=True,
    ),
    # The rulebook a decision was made on: who may read the decision, without its patient data.
    "read_decision_rulebook": Permission(
        ("clinician", "pharmacist", "auditor", "admin"),
        own_only=("clinician",),
        own_words="own decisions",
        not_own="a clinician may read only the decisions they submitted",
    ),
    "read_rulebook": Permission(ROLES),
    "reload_rulebook": Permission(("admin",)),
    "roll_back_rulebook": Permission(("admin",)),
    # Rulebook proposals: the pharmacy and therapeutics committee's members propose and approve
    # (never their own: service/workflow/proposals.py); those who act on decisions may follow them.
    "propose_rulebook": Permission(("committee", "admin")),
    "approve_rulebook": Permission(("committee", "admin")),
    "read_proposals": Permission(("pharmacist", "auditor", "committee", "admin")),
    "read_audit": Permission(("auditor", "admin"), reads_patient_data=True),
    "list_reviews": Permission(("pharmacist", "admin"), reads_patient_data=True),
    "read_case": Permission(
        ("clinician", "pharmacist", "admin"),
        own_only=("clinician",),
        not_own="a clinician may read only the cases of their own requests",
        reads_patient_data=True,
    ),
    "add_facts": Permission(
        ("clinician", "pharmacist", "admin"),
        own_only=("clinician",),
        not_own="a clinician may add facts only to the cases of their own requests",
    ),
    "resolve_case": Permission(("pharmacist", "admin")),
    "read_authorisations": Permission(PATIENT_READERS, reads_patient_data=True),
    "read_authorisation": Permission(
        PATIENT_READERS,
        own_only=("clinician",),
        own_words="own requests",
        not_own="a clinician may read only the authorisations their own requests were granted",
        reads_patient_data=True,
    ),
    "record_measurement": Permission(
        ("clinician", "pharmacist", "admin"),
        own_only=("clinician",),
        own_words="own requests",
        not_own="a clinician may record measurements only against the authorisations of their own requests",
    ),
    "continue_authorisation": Permission(
        ("clinician", "pharmacist", "admin"),
        own_only=("clinician",),
        own_words="own requests",
        not_own="a clinician may ask to continue only the authorisations of their own requests",
    ),
    "preapprove": Permission(("pharmacist", "admin")),
    "record_administration": Permission(("pharmacist", "admin")),
    "read_administrations": Permission(
        PATIENT_READERS,
        own_only=("clinician",),
        own_words="own requests",
        not_own="a clinician may read only the administrations under the authorisations their own requests were granted",
        reads_patient_data=True,
    ),
    "read_discrepancies": Permission(("pharmacist", "auditor", "admin"), reads_patient_data=True),
    "resolve_discrepancy": Permission(("pharmacist", "admin")),
    "read_supply": Permission(ROLES),
    "set_supply_phase": Permission(("admin",)),
    # Stewardship reports: counts, grams and cost by group, never a patient's record.
    "read_reports": Permission(("pharmacist", "auditor", "admin")),
}


def may(principal: Principal | None, action: str) -> bool:
    return principal is not None and principal.role in PERMISSIONS[action].roles


def own_only(principal: Principal, action: str) -> str | None:
    """The requester a role limited to its own records is limited to (its name), else None."""
    return principal.name if principal.role in PERMISSIONS[action].own_only else None


def check_owner(principal: Principal, action: str, requester: str) -> None:
    """Refuse (403) a role limited to its own records reaching for a record someone else requested."""
    permission = PERMISSIONS[action]
    if principal.role in permission.own_only and requester != principal.name:
        raise Refusal(403, "forbidden", permission.not_own)


def described(action: str) -> str:
    """The roles as the API document lists them: 'Roles: clinician (own decisions), pharmacist.'"""
    permission = PERMISSIONS[action]
    names = [f"{role} ({permission.own_words})" if role in permission.own_only else role for role in permission.roles]
    return "Roles: " + ", ".join(names) + "."
