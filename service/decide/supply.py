"""Supply phases: what a shortage does to a decision, after the rules have made it.

Pure, like the urgent pathway and continuations: given the rulebook's supply table (its tiers and
phases), the phase the instance is in and the reason it was set, it turns the rules' decision into
the decision in that phase. A phase only ever makes a decision more cautious: a tier the phase sends
to review turns a positive decision into needs_review, and a tier it refuses turns a positive or
needs_review decision into not_supported (a decision that still lacks facts stays needs_review: the
facts may lead to another rule, in another tier). A phase the rulebook does not declare (the rulebook
changed after the phase was set) sends every positive decision to review: unsure, the answer is review.
In the default phase the decision is as the rules made it, with nothing recorded.
"""

from dataclasses import replace

from service.decide.decision import Decision
from service.rulebook.model import POSITIVE_OUTCOMES, Rule, Supply

# The outcomes each action changes, and into what.
_CHANGES = {"needs_review": POSITIVE_OUTCOMES, "not_supported": (*POSITIVE_OUTCOMES, "needs_review")}


def is_shortage(supply: Supply | None, phase: str | None) -> bool:
    """Whether a decision made now is made in a phase other than the rulebook's default."""
    return supply is not None and phase is not None and phase != supply.default_phase


def action_for(supply: Supply, phase: str, tier: str | None) -> str:
    """What `phase` does with a decision of a rule in `tier`; a phase the rulebook does not declare
    sends it to review."""
    declared = supply.phases.get(phase)
    return "needs_review" if declared is None else declared.action_for(tier)


def in_phase(decision: Decision, rule: Rule | None, supply: Supply | None, phase: str | None, reason: str) -> Decision:
    """The decision in supply phase `phase` (None: never set, the default), set for `reason`."""
    if supply is None or phase is None or not is_shortage(supply, phase):
        return decision
    tier = rule.tier if rule is not None else None
    action = action_for(supply, phase, tier) if rule is not None else "as_usual"
    changes = action in _CHANGES and decision.outcome in _CHANGES[action] and not decision.missing
    about = {
        "phase": phase,
        "reason": reason,
        "tier": tier,
        "action": action,
        "changed": changes,
        "rule_outcome": decision.outcome,
    }
    if not changes:
        return replace(decision, supply=about)
    assert rule is not None  # only a rule's decision has a tier to act on
    if phase not in supply.phases:
        why = (
            f"The instance is in supply phase '{phase}' ({reason}), which rulebook version {decision.rulebook['version']} "
            "does not declare, so every positive decision goes to review until an admin sets one of its phases"
        )
    elif action == "needs_review":
        why = f"Supply phase {phase} ({reason}): {tier}-tier indications go to review"
    else:
        why = f"Supply phase {phase} ({reason}): {tier}-tier indications are not supported while it lasts"
    outcome = "needs_review" if action == "needs_review" or phase not in supply.phases else "not_supported"
    closing = (
        "A pharmacist or the committee decides."
        if outcome == "needs_review"
        else "An exception is the committee's decision."
    )
    return replace(
        decision,
        outcome=outcome,
        rationale=(
            f"{why}; rule '{rule.title}' would otherwise decide {decision.outcome}. {closing} "
            f"The rule's reasoning: {decision.rationale}"
        ),
        labelled_products=(),
        supply=about,
    )
