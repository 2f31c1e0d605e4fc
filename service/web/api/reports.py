"""Stewardship reports: utilisation by a grouping (JSON or CSV), and the stewardship figures."""

import io

from flask import Blueprint, Response, jsonify, request

from service import clock
from service.decide.request import known_arguments
from service.web.api.guard import requires
from service.web.context import active_rulebook, current_instance
from service.workflow import csv_out, reports

blueprint = Blueprint("api_reports", __name__)


def utilisation_report(args) -> dict:
    """The utilisation report for query arguments (the console's form reads the same)."""
    known_arguments(args, reports.ARGUMENTS, "a report argument")
    period = reports.period_from(args, clock.utc_today())
    group = reports.group_from(args)
    with active_rulebook().use() as formulary:
        return reports.utilisation(current_instance(), formulary.rulebook, formulary.terminology, period, group)


def stewardship_report(args) -> dict:
    known_arguments(args, ("since", "until"), "a report argument")
    period = reports.period_from(args, clock.utc_today())
    with active_rulebook().use() as formulary:
        return reports.stewardship(current_instance(), formulary.rulebook, period)


def csv_download(rows, name: str) -> Response:
    """Rows as a CSV download, each cell safe to open in a spreadsheet (csv_out)."""
    buffer = io.StringIO()
    writer = csv_out.Writer(buffer)
    for row in rows:
        writer.writerow(row)
    return Response(
        buffer.getvalue(), mimetype="text/csv", headers={"Content-Disposition": f"attachment; filename={name}"}
    )


@blueprint.get("/v1/reports/utilisation")
@requires("read_reports")
def utilisation():
    return jsonify(utilisation_report(request.args))


@blueprint.get("/v1/reports/utilisation.csv")
@requires("read_reports")
def utilisation_csv():
    report = utilisation_report(request.args)
    period = report["period"]
    name = f"utilisation-{report['group_by']}-{period['since']}-{period['until']}.csv"
    return csv_download(reports.utilisation_rows(report), name)


@blueprint.get("/v1/reports/stewardship")
@requires("read_reports")
def stewardship():
    return jsonify(stewardship_report(request.args))
