"""The v1 JSON API, one blueprint per subject. Every endpoint names its action in the role table
(service/web/roles.py); every error is the one JSON shape (service/web/errors.py)."""

from service.web.api import administrations, audit, cds_hooks, decisions, health, reports, rulebook, supply, workflow

BLUEPRINTS = (
    decisions.blueprint,
    rulebook.blueprint,
    audit.blueprint,
    workflow.blueprint,
    administrations.blueprint,
    reports.blueprint,
    health.blueprint,
    supply.blueprint,
    cds_hooks.blueprint,
)
