"""The console's Reports page: the utilisation and stewardship reports of GET /v1/reports/*, as
tables with a CSV download each and charts drawn on the server (chart.py), for a period and a
grouping chosen in a form. A bad value is the API's 400 message beside its field."""

from flask import Blueprint, g, render_template, request

from service.decide.request import RequestError
from service.rulebook.model import OUTCOMES
from service.web.api.reports import csv_download, stewardship_report, utilisation_report
from service.web.console import chart
from service.web.console.auth import page
from service.workflow import reports

blueprint = Blueprint("console_reports", __name__, url_prefix="/console")

TOP_INDICATIONS = 10  # the cost chart shows this many indications, the most first
GRAMS = ("given", "wasted")


def _values() -> dict:
    return {name: request.args.get(name, "").strip() for name in reports.ARGUMENTS}


@blueprint.get("/reports")
@page("read_reports")
def reports_page():
    """The period and grouping as a form, the utilisation table, the stewardship figures and the charts."""
    values = _values()
    errors: dict = {}
    try:
        report = utilisation_report(values)
    except RequestError as error:
        g.refusal = error.to_dict()
        errors = {error.field or "form": error.message}
        report = utilisation_report({})  # the default period, with the form saying what was refused
    period = report["period"]
    shown = {"since": period["since"], "until": period["until"]}
    by = {report["group_by"]: report}
    for group in ("month", "diagnosis"):
        if group not in by:
            by[group] = utilisation_report({**shown, "group_by": group})
    figures = stewardship_report(shown)
    return render_template(
        "console/reports.html",
        report=report,
        figures=figures,
        sections=_sections(figures),
        charts=_charts(by["month"], by["diagnosis"], figures),
        groups=reports.GROUPS,
        values=values,
        shown=shown,
        errors=errors,
    ), (400 if errors else 200)


@blueprint.get("/reports/utilisation.csv")
@page("read_reports")
def utilisation_csv():
    """The utilisation table as CSV: the same file as GET /v1/reports/utilisation.csv."""
    report = utilisation_report(_values())
    period = report["period"]
    return csv_download(
        reports.utilisation_rows(report), f"utilisation-{report['group_by']}-{period['since']}-{period['until']}.csv"
    )


@blueprint.get("/reports/stewardship.csv")
@page("read_reports")
def stewardship_csv():
    """The stewardship figures as CSV, one figure a row."""
    values = _values()
    figures = stewardship_report({name: values[name] for name in ("since", "until")})
    period = figures["period"]
    return csv_download(reports.stewardship_rows(figures), f"stewardship-{period['since']}-{period['until']}.csv")


def _sections(figures: dict) -> list[dict]:
    """The stewardship rows grouped by their first name (decisions, adherence, ...), notes apart."""
    sections: dict[str, dict] = {}
    rows = reports.stewardship_rows(figures)
    next(rows)  # the header
    for figure, value in rows:
        head, _, rest = figure.partition(".")
        if head == "period":
            continue
        section = sections.setdefault(head, {"name": head.replace("_", " "), "rows": [], "notes": []})
        if rest.endswith("note"):
            section["notes"].append(value)
        else:
            section["rows"].append((rest.replace(".", " · ").replace("_", " "), value))
    return list(sections.values())


def _grams(group: dict) -> dict[str, float]:
    return {"given": group["grams_given"], "wasted": group["grams_wasted"]}


def _figure(caption: str, drawn: chart.Chart, first: str, order: tuple[str, ...], items, unit: str = "") -> dict:
    """A chart with its caption and the table of what it draws (its text alternative, beside it)."""
    return {
        "caption": caption,
        "chart": drawn,
        "columns": [first, *(name.replace("_", " ") + (f" ({unit})" if unit else "") for name in order)],
        "rows": [[name, *(by_series.get(series, 0) for series in order)] for name, by_series in items],
    }


def _charts(by_month: dict, by_diagnosis: dict, figures: dict) -> list[dict]:
    """The page's charts: decisions and grams per month, grams and cost by indication, review turnaround."""
    months = [item for item in by_month["groups"] if item["key"]]
    decisions = [(item["key"], item["decisions"]) for item in months]
    grams = [(item["key"], _grams(item)) for item in months]
    indications = sorted(by_diagnosis["groups"], key=lambda item: (-item["grams_opened"], item["label"]))
    opened = [(item["label"], _grams(item)) for item in indications if item["grams_opened"]]
    turnaround = figures["review_turnaround"]
    median, p90 = turnaround["median_hours"], turnaround["p90_hours"]
    buckets = [(bucket["label"], {"cases": bucket["cases"]}) for bucket in turnaround["buckets"]]
    hours = "not known" if median is None else f"median {median:g} h, 90th percentile {p90:g} h"
    return [
        _figure(
            "Decisions per month, stacked by outcome.",
            chart.monthly_chart(
                dict(decisions),
                OUTCOMES,
                chart_id="decisions-by-month",
                what="Decisions",
                empty="No decisions in this period",
            ),
            "month",
            OUTCOMES,
            decisions,
        ),
        _figure(
            "Grams opened per month: given, and wasted (opened but not given).",
            chart.monthly_chart(
                dict(grams), GRAMS, chart_id="grams-by-month", what="Grams opened", unit="g", empty=NO_ADMINISTRATIONS
            ),
            "month",
            GRAMS,
            grams,
            "g",
        ),
        _figure(
            "Grams opened by indication (given and wasted), the most first.",
            chart.ranked_chart(
                opened,
                GRAMS,
                chart_id="grams-by-indication",
                title="Grams opened by indication",
                unit="g",
                empty=NO_ADMINISTRATIONS,
            ),
            "indication",
            GRAMS,
            opened,
            "g",
        ),
        _cost_figure(indications),
        _figure(
            f"Review turnaround, hours from a case's opening to its first resolution: {hours}; "
            f"{turnaround['resolved']} of {turnaround['cases_opened']} cases resolved, "
            f"{turnaround['overdue_open']} open past due.",
            chart.ranked_chart(
                buckets,
                ("cases",),
                chart_id="turnaround",
                title=f"Review cases by turnaround ({hours})",
                empty="No review case resolved in this period",
            ),
            "turnaround",
            ("cases",),
            buckets,
        ),
    ]


NO_ADMINISTRATIONS = "No administrations in this period"


def _cost_figure(indications: list[dict]) -> dict:
    """The top indications by cost in the currency most spent; by grams opened where no price is set."""
    spent: dict[str, float] = {}
    for item in indications:
        for cost in item["cost"]:
            spent[cost["currency"]] = spent.get(cost["currency"], 0.0) + cost["amount"]
    if not spent:
        top = [(item["label"], {"opened": item["grams_opened"]}) for item in indications if item["grams_opened"]]
        top = top[:TOP_INDICATIONS]
        return _figure(
            "Top indications by grams opened: no price per gram is set (data/products.yaml price_per_g) "
            "for what was given, so there is no cost to rank by.",
            chart.ranked_chart(
                top,
                ("opened",),
                chart_id="cost-by-indication",
                title="Top indications by grams opened (no price set)",
                unit="g",
                empty=NO_ADMINISTRATIONS,
            ),
            "indication",
            ("opened",),
            top,
            "g",
        )
    currency = max(sorted(spent), key=lambda c: spent[c])
    costed = sorted(
        (
            (item["label"], {currency: cost["amount"]})
            for item in indications
            for cost in item["cost"]
            if cost["currency"] == currency and cost["amount"]
        ),
        key=lambda row: -row[1][currency],
    )[:TOP_INDICATIONS]
    others = sorted(set(spent) - {currency})
    return _figure(
        f"Top indications by cost in {currency}: grams opened x the local price per gram"
        + (f"; costs in {', '.join(others)} are in the utilisation table, not the chart." if others else "."),
        chart.ranked_chart(
            costed,
            (currency,),
            chart_id="cost-by-indication",
            title=f"Top indications by cost, {currency}",
            unit=currency,
        ),
        "indication",
        (currency,),
        costed,
    )
