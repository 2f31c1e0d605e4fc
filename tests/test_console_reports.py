"""The console's Reports page (issue 17): the form, the utilisation and stewardship tables, their
CSV downloads and the charts, over the hand-built history of tests/test_reports.py; on SQLite and
PostgreSQL."""

import csv
import io
import re
import xml.etree.ElementTree as ET

import pytest

from .conftest import sign_in
from .test_reports import app, history, priced_rulebook  # noqa: F401 (fixtures)

SVG = "{http://www.w3.org/2000/svg}"
NOVEMBER = "since=2026-11-01&until=2026-11-30"


def charts(page: str) -> dict[str, ET.Element]:
    """The page's SVG charts by id, parsed."""
    found = {}
    for markup in re.findall(r'<svg[^>]* class="chart[^"]*".*?</svg>', page, re.S):
        svg = ET.fromstring(markup)
        found[svg.find(f"{SVG}title").get("id").removesuffix("-title")] = svg
    return found


@pytest.mark.parametrize("role", ["clinician", "committee"])
def test_the_reports_page_is_not_for_clinicians_or_the_committee(client, tokens, role):
    sign_in(client, tokens[role])
    for path in ("/console/reports", "/console/reports/utilisation.csv", "/console/reports/stewardship.csv"):
        assert client.get(path).status_code == 403
    assert "/console/reports" not in client.get("/console/").get_data(as_text=True)


@pytest.mark.usefixtures("history")
def test_the_reports_page_shows_the_groups_the_figures_and_the_navigation_link(client, tokens):
    sign_in(client, tokens["auditor"])
    response = client.get(f"/console/reports?{NOVEMBER}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Reports: 2026-11-01 to 2026-11-30" in page
    assert 'href="/console/reports" aria-current="page"' in page
    table = page[page.index('<table class="utilisation">') :]
    table = table[: table.index("</table>")]
    for label in ("Polymyositis", "Primary humoral immunodeficiency", "Total", "8000.0 USD"):
        assert label in table
    assert "Stewardship figures" in page and "median hours" in page
    assert "not known" in page or "48.0" in page


@pytest.mark.usefixtures("history")
def test_the_charts_are_drawn_on_the_server_with_their_text_and_figures(client, tokens):
    sign_in(client, tokens["pharmacist"])
    page = client.get(f"/console/reports?{NOVEMBER}").get_data(as_text=True)
    drawn = charts(page)
    assert set(drawn) == {
        "decisions-by-month",
        "grams-by-month",
        "grams-by-indication",
        "cost-by-indication",
        "turnaround",
    }
    for svg in drawn.values():
        assert svg.get("role") == "img" and svg.find(f"{SVG}title").text
    assert "5 in total" in drawn["decisions-by-month"].find(f"{SVG}desc").text
    assert "340 g in total" in drawn["grams-by-month"].find(f"{SVG}desc").text
    indications = drawn["grams-by-indication"].find(f"{SVG}desc").text
    assert "Polymyositis: 340 g" in indications
    # Privigen has a price: the cost chart ranks by it, in USD.
    assert drawn["cost-by-indication"].find(f"{SVG}title").text == "Top indications by cost, USD"
    assert "Polymyositis: 8,000 USD" in drawn["cost-by-indication"].find(f"{SVG}desc").text
    turnaround = drawn["turnaround"]
    assert "median 48 h" in turnaround.find(f"{SVG}title").text
    assert "1 to 3 days: 1" in turnaround.find(f"{SVG}desc").text
    assert page.count("<figcaption>") == 5 and "https://" not in page.split("<section", 1)[1].split("</main>")[0]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("since=2026-13-01", "since", "since must be a date as YYYY-MM-DD"),
        ("since=2026-12-01&until=2026-11-01", "since", "is after until"),
        ("group_by=ward", "group_by", "group_by must be one of"),
    ],
)
def test_a_bad_value_is_the_apis_400_message_on_the_page(client, tokens, query, field, message):
    sign_in(client, tokens["admin"])
    response = client.get(f"/console/reports?{query}")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'<p class="error" id="{field}-error">' in page and message in page
    assert 'aria-invalid="true"' in page


@pytest.mark.usefixtures("history")
def test_the_utilisation_download_is_the_apis_csv(client, tokens):
    sign_in(client, tokens["auditor"])
    page = client.get(f"/console/reports?{NOVEMBER}&group_by=product").get_data(as_text=True)
    link = re.search(r'href="(/console/reports/utilisation\.csv[^"]*)"', page).group(1).replace("&amp;", "&")
    response = client.get(link)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "utilisation-product-2026-11-01-2026-11-30.csv" in response.headers["Content-Disposition"]
    api = client.get(
        f"/v1/reports/utilisation.csv?{NOVEMBER}&group_by=product",
        headers={"Authorization": f"Bearer {tokens['auditor']}"},
    )
    assert response.get_data() == api.get_data()
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:3] == ["group", "label", "requests"] and rows[-1][0] == "total"


@pytest.mark.usefixtures("history")
def test_the_stewardship_download_is_a_figure_a_row_safe_in_a_spreadsheet(client, tokens):
    sign_in(client, tokens["auditor"])
    response = client.get(f"/console/reports/stewardship.csv?{NOVEMBER}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "stewardship-2026-11-01-2026-11-30.csv" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["figure", "value"]
    figures = dict(rows[1:])
    assert figures["period.since"] == "2026-11-01" and figures["decisions.total"] == "5"
    assert figures["review_turnaround.median_hours"] == "48.0"
    assert figures["review_turnaround.buckets.1 to 3 days"] == "1"
    for value in figures.values():  # only the service's own numbers may start like a formula
        if value.startswith(("=", "+", "-", "@")):
            float(value)


def test_a_bad_value_in_a_download_is_a_400_page(client, tokens):
    sign_in(client, tokens["auditor"])
    response = client.get("/console/reports/stewardship.csv?until=tomorrow")
    assert response.status_code == 400
    assert "YYYY-MM-DD, found &#39;tomorrow&#39;" in response.get_data(as_text=True)
