"""Stewardship reports (issue 17): what the utilisation report sums (requests and decisions by
outcome, pre-approvals and the grams they authorised, authorisations, administrations, grams given
and wasted, cost) added up a day at a time for each grouping, so a report sums a period's days
rather than group and join its rows (service/store/report_days.py). The table is derived: this
migration derives it from the decision records, pre-approval figures, authorisations and
administrations with the joins report_patients uses (an authorisation takes its decision's
requester, what was given its authorisation's rule and basis); the service adds each row it writes
from then on, and rebuilding it means running this again.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

OUTCOMES = ("approved", "off_label_with_evidence", "needs_review", "not_supported")
FIGURES = (
    "requests",
    *(f"decided_{o}" for o in OUTCOMES),
    "preapprovals",
    "grams_authorised",
    "authorisations",
    "administrations",
    "grams_given",
    "grams_wasted",
    "cost",
    "grams_without_price",
)
# The groupings each kind of row is counted in.
GROUPINGS = {
    "code": ("decision", "preapproval", "authorisation", "administration"),
    "rule_id": ("decision", "preapproval", "authorisation", "administration"),
    "outcome": ("decision", "preapproval", "authorisation", "administration"),
    "requester": ("decision", "preapproval", "authorisation"),
    "product": ("administration",),
}


def upgrade():
    table = op.create_table(
        "report_days",
        sa.Column("grouping", sa.String(16), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("value", sa.String(128), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in FIGURES[:6]),
        sa.Column("grams_authorised", sa.Float, nullable=False),
        sa.Column("authorisations", sa.BigInteger, nullable=False),
        sa.Column("administrations", sa.BigInteger, nullable=False),
        sa.Column("grams_given", sa.Float, nullable=False),
        sa.Column("grams_wasted", sa.Float, nullable=False),
        sa.Column("cost", sa.Float),
        sa.Column("grams_without_price", sa.Float, nullable=False),
    )
    a = sa.table(
        "audit_records",
        *map(sa.column, ("kind", "created_at", "decision_id", "code", "rule_id", "outcome", "requester")),
    )
    p = sa.table(
        "preapproval_figures",
        *map(
            sa.column, ("created_at", "code", "rule_id", "outcome", "requester", "dispense", "grams", "rounded_grams")
        ),
    )
    u = sa.table("authorisations", *map(sa.column, ("id", "created_at", "code", "rule_id", "basis", "decision_id")))
    d = sa.table(
        "administrations",
        *map(
            sa.column,
            (
                "given_on",
                "code",
                "product",
                "authorisation_id",
                "grams_given",
                "grams_wasted",
                "price_per_g",
                "currency",
            ),
        ),
    )
    r, ua = a.alias("r"), u.alias("ua")

    def row(source, day, code, rule_id, outcome, requester, product, currency="", **figures):
        zero = {name: sa.literal(0) for name in FIGURES} | {"cost": sa.cast(sa.null(), sa.Float)}
        named = (
            {
                "source": sa.literal(source),
                "day": sa.func.substr(day, 1, 10),
                "code": code,
                "rule_id": rule_id,
                "outcome": outcome,
                "requester": requester,
                "product": product,
                "currency": currency if not isinstance(currency, str) else sa.literal(currency),
            }
            | zero
            | figures
        )
        return [value.label(name) for name, value in named.items()]

    text = sa.String()
    decided = {f"decided_{o}": sa.case((a.c.outcome == o, 1), else_=0) for o in OUTCOMES}
    opened = d.c.grams_given + d.c.grams_wasted
    rows = sa.union_all(
        sa.select(
            *row(
                "decision",
                a.c.created_at,
                a.c.code,
                a.c.rule_id,
                a.c.outcome,
                a.c.requester,
                sa.cast(sa.null(), text),
                requests=sa.literal(1),
                **decided,
            )
        ).where(a.c.kind == "decision"),
        sa.select(
            *row(
                "preapproval",
                p.c.created_at,
                p.c.code,
                p.c.rule_id,
                p.c.outcome,
                p.c.requester,
                sa.cast(sa.null(), text),
                preapprovals=sa.literal(1),
                grams_authorised=sa.case(
                    (p.c.dispense, sa.func.coalesce(p.c.rounded_grams, p.c.grams, 0.0)), else_=0.0
                ),
            )
        ),
        sa.select(
            *row(
                "authorisation",
                u.c.created_at,
                u.c.code,
                u.c.rule_id,
                u.c.basis,
                r.c.requester,
                sa.cast(sa.null(), text),
                authorisations=sa.literal(1),
            )
        ).select_from(u.outerjoin(r, r.c.decision_id == u.c.decision_id)),
        sa.select(
            *row(
                "administration",
                d.c.given_on,
                d.c.code,
                ua.c.rule_id,
                ua.c.basis,
                sa.cast(sa.null(), text),
                d.c.product,
                sa.func.coalesce(d.c.currency, ""),
                administrations=sa.literal(1),
                grams_given=d.c.grams_given,
                grams_wasted=d.c.grams_wasted,
                cost=sa.case((d.c.price_per_g.is_not(None), opened * d.c.price_per_g), else_=sa.null()),
                grams_without_price=sa.case((d.c.price_per_g.is_(None), opened), else_=0.0),
            )
        ).select_from(d.outerjoin(ua, ua.c.id == d.c.authorisation_id)),
    ).subquery("written")
    for grouping, sources in GROUPINGS.items():
        value = sa.func.coalesce(rows.c[grouping], "")
        summed = [
            sa.func.sum(rows.c[name]) if name == "cost" else sa.func.coalesce(sa.func.sum(rows.c[name]), 0)
            for name in FIGURES
        ]
        counted = (
            sa.select(sa.literal(grouping), rows.c.day, value, rows.c.currency, *summed)
            .where(rows.c.source.in_(sources))
            .group_by(rows.c.day, value, rows.c.currency)
        )
        op.execute(table.insert().from_select(["grouping", "day", "value", "currency", *FIGURES], counted))
    op.execute("ANALYZE report_days")


def downgrade():
    op.drop_table("report_days")
