"""The urgent pathway: when an urgent request that needs review may be given a provisional
authorisation for one course at once, with a retrospective review due within the rulebook's period.

Pure, like the rest of deciding. A provisional authorisation never follows a guess: only a rule the
committee marked `urgent` that decided the request (not an approximate diagnosis, not a request no
rule covers) qualifies, and only for an identified patient who has none active for the diagnosis and whose
history did not send the request to review (a course limit reached, an authorisation to continue),
and never for a request a supply phase sent to review (service/decide/supply.py).
"""

from service.decide.decision import Decision
from service.rulebook.model import Rule, Rulebook


def why_not_provisional(
    rulebook: Rulebook, decision: Decision, rule: Rule | None, identified: bool, already_given: bool, held: bool
) -> str | None:
    """None when a provisional authorisation is given; otherwise why not, in a requester's words.
    `held`: the patient's history (a course limit reached, an authorisation to continue) sent the
    request to review, which a stated urgency must not step round."""
    if rulebook.authorisations.provisional is None:
        return "the rulebook has no urgent pathway (authorisations.provisional)"
    if decision.outcome != "needs_review":
        return f"the decision is {decision.outcome}: there is no review to wait for"
    if rule is None:
        return "no rule decided it: only a rule the committee marked urgent gives a provisional authorisation"
    if not rule.urgent:
        return f"rule {rule.id} is not urgent: the committee has not marked this indication for the urgent pathway"
    phase = decision.supply or {}
    if phase.get("changed"):
        return (
            f"supply phase {phase['phase']} sends {phase['tier']}-tier indications to review: while it lasts, IVIG "
            "for them is given only once a pharmacist or the committee has decided"
        )
    if not identified:
        return "the request has no patient reference: an authorisation is for one identified patient"
    if already_given:
        return "a provisional authorisation for this diagnosis is already active for this patient, or was given with their open case"
    if held:
        return (
            "the patient already had IVIG for this diagnosis (a course limit reached, or an authorisation to "
            "continue): a further course is reviewed before it is given"
        )
    return None
