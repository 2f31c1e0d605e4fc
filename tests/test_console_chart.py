"""The decisions-per-day chart: computed by chart.py, drawn by the console's template, and read
back as XML, so the tests check what the chart says and how it is laid out, not its bytes."""

import datetime
import re
import xml.etree.ElementTree as ET
from itertools import pairwise
from pathlib import Path

from flask import Flask, render_template

import service.web
from service.rulebook.model import OUTCOMES
from service.web.console.chart import MAX_BARS, daily_outcomes_chart, monthly_chart, ranked_chart

from .conftest import csrf_token, sign_in

SVG = "{http://www.w3.org/2000/svg}"
# The service's templates under Flask's own autoescape policy, which the service keeps.
PAGES = Flask(__name__, template_folder=Path(service.web.__file__).parent / "templates")


def draw(counts, outcomes=OUTCOMES, chart_id="daily-outcomes") -> str:
    with PAGES.app_context():
        return render_template(
            "console/_chart.svg.html", chart=daily_outcomes_chart(counts, outcomes, chart_id=chart_id)
        )


def close(a: float, b: float) -> bool:
    """Equal to the two decimals the chart's coordinates keep."""
    return abs(a - b) < 0.02


def parse(counts, outcomes=OUTCOMES):
    return ET.fromstring(draw(counts, outcomes))


def bars(svg):
    return svg.find(f"{SVG}g[@class='bars']").findall(f"{SVG}g[@class='bar']")


def segments(bar):
    return bar.findall(f"{SVG}rect")


def tooltips(svg):
    return [rect.find(f"{SVG}title").text for bar in bars(svg) for rect in segments(bar)]


def test_the_chart_is_one_image_with_a_title_and_a_description():
    svg = parse({"2026-11-22": {"approved": 2, "needs_review": 3}})
    assert svg.get("role") == "img" and svg.get("class") == "chart"
    title, desc = svg[0], svg[1]
    assert title.tag == f"{SVG}title" and desc.tag == f"{SVG}desc"
    assert svg.get("aria-labelledby").split() == [title.get("id"), desc.get("id")]
    assert "2026-11-22" in title.text


def test_each_segment_says_its_day_count_and_outcome():
    svg = parse({"2026-11-22": {"approved": 2, "needs_review": 3}})
    assert tooltips(svg) == ["2026-11-22: 2 approved", "2026-11-22: 3 needs review"]


def test_segments_are_coloured_by_outcome_classes_and_stacked_in_outcome_order():
    svg = parse({"2026-11-22": {"not_supported": 1, "approved": 2, "off_label_with_evidence": 1}})
    rects = segments(bars(svg)[0])
    assert [r.get("class").split() for r in rects] == [
        ["seg", "seg-approved"],
        ["seg", "seg-off_label_with_evidence"],
        ["seg", "seg-not_supported"],
    ]
    # Each segment sits on the one before it: the first starts at the axis and they go up.
    axis = float(svg.find(f"{SVG}line[@class='axis']").get("y1"))
    assert close(float(rects[0].get("y")) + float(rects[0].get("height")), axis)
    for lower, upper in pairwise(rects):
        assert close(float(upper.get("y")) + float(upper.get("height")), float(lower.get("y")))


def test_bar_heights_are_proportional_to_the_counts():
    svg = parse({"2026-11-20": {"approved": 1}, "2026-11-21": {"approved": 4}, "2026-11-22": {"approved": 3}})
    one, four, three = (float(segments(b)[0].get("height")) for b in bars(svg))
    assert close(four, 4 * one) and close(three, 3 * one)


def test_bars_share_one_width_and_stay_inside_the_plot():
    svg = parse({"2026-11-20": {"approved": 1}, "2026-11-29": {"needs_review": 2}})
    axis = svg.find(f"{SVG}line[@class='axis']")
    left, right = float(axis.get("x1")), float(axis.get("x2"))
    rects = [rect for bar in bars(svg) for rect in segments(bar)]
    assert len({rect.get("width") for rect in rects}) == 1
    for rect in rects:
        assert left <= float(rect.get("x")) and float(rect.get("x")) + float(rect.get("width")) <= right


def test_days_without_decisions_show_as_empty_bars():
    svg = parse({"2026-11-20": {"approved": 1}, "2026-11-23": {"needs_review": 2}})
    periods = [bar.get("data-period") for bar in bars(svg)]
    assert periods == ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"]
    assert [len(segments(bar)) for bar in bars(svg)] == [1, 0, 0, 1]


def test_days_are_in_order_whatever_the_order_of_the_counts():
    svg = parse({"2026-12-02": {"approved": 1}, "2026-11-30": {"approved": 1}})
    assert [bar.get("data-period") for bar in bars(svg)] == ["2026-11-30", "2026-12-01", "2026-12-02"]


def test_totals_are_in_the_description():
    svg = parse({"2026-11-20": {"approved": 1, "needs_review": 2}, "2026-11-21": {"needs_review": 5}})
    desc = svg.find(f"{SVG}desc").text
    assert "8 decisions" in desc
    for said in ("1 approved", "7 needs review", "0 off label with evidence", "0 not supported"):
        assert said in desc


def test_the_legend_names_every_outcome_in_text_beside_its_colour():
    svg = parse({"2026-11-20": {"approved": 1}})
    keys = svg.find(f"{SVG}g[@class='legend']").findall(f"{SVG}g[@class='key']")
    assert [k.find(f"{SVG}rect").get("class").split()[-1] for k in keys] == [f"seg-{o}" for o in OUTCOMES]
    assert [k.find(f"{SVG}text").text for k in keys] == [
        "approved (1)",
        "off label with evidence (0)",
        "needs review (0)",
        "not supported (0)",
    ]


def test_a_legend_too_wide_for_one_row_wraps_and_the_chart_grows_to_hold_it():
    many = {f"outcome_number_{i}_with_a_long_name": 1 for i in range(8)}
    short, wrapped = parse({"2026-11-20": {"approved": 1}}), parse({"2026-11-20": many})
    rows = {key.find(f"{SVG}rect").get("y") for key in wrapped.find(f"{SVG}g[@class='legend']")}
    assert len(rows) > 1
    width = float(wrapped.get("width"))
    for key in wrapped.find(f"{SVG}g[@class='legend']"):
        assert float(key.find(f"{SVG}rect").get("x")) < width
    assert float(wrapped.get("height")) > float(short.get("height"))


def test_the_y_axis_has_round_ticks_from_zero_past_the_tallest_day():
    svg = parse({"2026-11-20": {"approved": 37}})
    ticks = [int(t.text) for t in svg.find(f"{SVG}g[@class='y-axis']").iter(f"{SVG}text")]
    assert ticks[0] == 0 and ticks[-1] >= 37
    step = ticks[1] - ticks[0]
    assert step in (1, 2, 5, 10, 20, 50) and 3 <= len(ticks) - 1 <= 8
    assert all(b - a == step for a, b in pairwise(ticks))


def test_x_labels_are_thinned_when_there_are_many_days():
    start = datetime.date(2026, 9, 1)
    counts = {(start + datetime.timedelta(days=i)).isoformat(): {"approved": 1} for i in range(80)}
    svg = parse(counts)
    labels = [t.text for t in svg.find(f"{SVG}g[@class='x-axis']").iter(f"{SVG}text")]
    assert len(bars(svg)) == 80
    assert 2 <= len(labels) <= 10 and labels[0] == "2026-09-01"


def test_long_periods_are_grouped_by_week():
    start = datetime.date(2026, 1, 1)  # a Thursday, in ISO week 2026-W01
    counts = {(start + datetime.timedelta(days=i)).isoformat(): {"needs_review": 1} for i in range(MAX_BARS + 30)}
    svg = parse(counts)
    assert "week" in svg.find(f"{SVG}title").text
    periods = [bar.get("data-period") for bar in bars(svg)]
    assert periods[0] == "2026-W01" and len(periods) == 18
    assert tooltips(svg)[0] == "2026-W01 (week of 2025-12-29): 4 needs review"  # Thursday to Sunday
    assert tooltips(svg)[1] == "2026-W02 (week of 2026-01-05): 7 needs review"
    assert "120 decisions" in svg.find(f"{SVG}desc").text


def test_a_period_of_exactly_the_limit_is_still_shown_by_day():
    start = datetime.date(2026, 1, 1)
    svg = parse(
        {
            start.isoformat(): {"approved": 1},
            (start + datetime.timedelta(days=MAX_BARS - 1)).isoformat(): {"approved": 1},
        }
    )
    assert len(bars(svg)) == MAX_BARS


def test_an_empty_period_says_so_in_its_title_and_in_text():
    for counts in ({}, {"2026-11-22": {"approved": 0}}):
        svg = parse(counts)
        assert svg.get("role") == "img" and svg.get("class").split() == ["chart", "chart-empty"]
        title = svg.find(f"{SVG}title")
        assert svg.get("aria-labelledby") == title.get("id")
        assert title.text == svg.find(f"{SVG}text").text == "No decisions in this period"
        assert svg.find(f"{SVG}g[@class='bars']") is None


def test_an_outcome_the_chart_was_not_told_about_is_drawn_not_dropped():
    svg = parse({"2026-11-22": {"approved": 1, "withdrawn": 2}})
    assert tooltips(svg) == ["2026-11-22: 1 approved", "2026-11-22: 2 withdrawn"]
    assert "2 withdrawn" in svg.find(f"{SVG}desc").text


def test_hostile_outcomes_and_ids_come_out_escaped():
    hostile = '"><script>alert(1)</script>&'
    markup = draw({"2026-11-22": {hostile: 1}}, (hostile,), chart_id='x" onload="alert(1)')
    assert "<script>" not in markup and 'onload="' not in markup
    svg = ET.fromstring(markup)  # well-formed despite the markup characters
    assert tooltips(svg) == [f"2026-11-22: 1 {hostile}"]
    assert hostile in svg.find(f"{SVG}desc").text
    assert segments(bars(svg)[0])[0].get("class") == f"seg seg-{hostile}"
    assert svg.find(f"{SVG}title").get("id") == 'x" onload="alert(1)-title'


def test_the_audit_page_draws_the_chart_of_the_decisions_on_record(client, tokens):
    sign_in(client, tokens["clinician"])
    client.post(
        "/console/request",
        data={"diagnosis_code": "G61.0", "age_years": "8", "csrf_token": csrf_token(client, "/console/request")},
    )
    client.post("/console/sign-out", data={"csrf_token": csrf_token(client, "/console/request")})
    sign_in(client, tokens["auditor"])
    page = client.get("/console/audit").get_data(as_text=True)
    svg = ET.fromstring(re.search(r'<svg[^>]* class="chart".*?</svg>', page, re.S).group(0))
    assert svg.get("role") == "img"
    assert [tip.split(": ", 1)[1] for tip in tooltips(svg)] == ["1 off label with evidence"]


def draw_chart(chart) -> ET.Element:
    with PAGES.app_context():
        return ET.fromstring(render_template("console/_chart.svg.html", chart=chart))


def test_a_monthly_chart_has_a_bar_a_month_gaps_included_and_amounts_with_their_unit():
    svg = draw_chart(
        monthly_chart(
            {"2026-11": {"given": 160, "wasted": 2.5}, "2027-01": {"given": 40}},
            ("given", "wasted"),
            chart_id="g",
            what="Grams opened",
            unit="g",
        )
    )
    assert svg.find(f"{SVG}title").text == "Grams opened per month, 2026-11 to 2027-01"
    assert [bar.get("data-period") for bar in bars(svg)] == ["2026-11", "2026-12", "2027-01"]
    assert tooltips(svg) == ["2026-11: 160 g given", "2026-11: 2.5 g wasted", "2027-01: 40 g given"]
    assert svg.find(f"{SVG}desc").text == "202.5 g in total: 200 g given, 2.5 g wasted."
    keys = [k.find(f"{SVG}text").text for k in svg.find(f"{SVG}g[@class='legend']")]
    assert keys == ["given (200 g)", "wasted (2.5 g)"]


def test_ranked_rows_are_drawn_in_the_order_given_with_their_totals_and_long_names_cut_short():
    long_name = "Chronic inflammatory demyelinating polyradiculoneuropathy"
    svg = draw_chart(
        ranked_chart(
            [(long_name, {"USD": 1200}), ("Polymyositis", {"USD": 8000})][::-1],
            ("USD",),
            chart_id="cost",
            title="Top indications by cost, USD",
            unit="USD",
        )
    )
    assert svg.get("role") == "img" and svg.find(f"{SVG}title").text == "Top indications by cost, USD"
    rows = svg.find(f"{SVG}g[@class='rows']").findall(f"{SVG}g[@class='row']")
    assert [row.find(f"{SVG}title").text for row in rows] == ["Polymyositis", long_name]
    names = [row.find(f"{SVG}text[@class='name']").text for row in rows]
    assert names[0] == "Polymyositis" and names[1].endswith("\u2026") and len(names[1]) <= 34
    assert [row.find(f"{SVG}text[@class='total']").text for row in rows] == ["8,000 USD", "1,200 USD"]
    widths = [float(row.find(f"{SVG}rect").get("width")) for row in rows]
    assert close(widths[0] / widths[1], 8000 / 1200)
    assert f"Polymyositis: 8,000 USD; {long_name}: 1,200 USD." in svg.find(f"{SVG}desc").text
    assert svg.find(f"{SVG}g[@class='legend']").findall(f"{SVG}g") == []  # one series: no legend


def test_ranked_segments_stack_left_to_right_and_the_legend_names_each_series():
    svg = draw_chart(
        ranked_chart([("GBS", {"given": 30, "wasted": 10})], ("given", "wasted"), chart_id="r", title="t", unit="g")
    )
    given, wasted = svg.find(f"{SVG}g[@class='rows']").iter(f"{SVG}rect")
    assert close(float(given.get("x")) + float(given.get("width")), float(wasted.get("x")))
    assert [given.find(f"{SVG}title").text, wasted.find(f"{SVG}title").text] == ["GBS: 30 g given", "GBS: 10 g wasted"]
    keys = [k.find(f"{SVG}text").text for k in svg.find(f"{SVG}g[@class='legend']")]
    assert keys == ["given (30 g)", "wasted (10 g)"]


def test_charts_with_nothing_to_draw_say_so():
    for chart in (
        monthly_chart({}, OUTCOMES, chart_id="m", what="Decisions", empty="No decisions in this period"),
        ranked_chart([("GBS", {"cases": 0})], ("cases",), chart_id="r", title="t", empty="No review case resolved"),
    ):
        svg = draw_chart(chart)
        assert svg.get("class").split() == ["chart", "chart-empty"]
        assert svg.find(f"{SVG}title").text == svg.find(f"{SVG}text").text == chart.title
