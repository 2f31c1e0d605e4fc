"""Decisions per day by outcome, as an inline SVG the server writes.

The console has no JavaScript and loads nothing from a CDN, so the chart is drawn here: a plain
function of the counts, easy to test, that returns markup Jinja can include with `|safe`. It is
accessible without colour: the SVG is one image (`role="img"`) whose <title> and <desc> say what
it shows and the totals per outcome, the legend names each outcome in text, and every bar segment
carries a tooltip with its day, count and outcome. Colours come from the stylesheet through
`seg-<outcome>` classes, so the chart follows the console's palette.
"""
import datetime
import math
from xml.sax.saxutils import escape, quoteattr

MAX_BARS = 90                 # more days than this are grouped by ISO week
WIDTH, PLOT_HEIGHT = 720, 200
LEFT, RIGHT, TOP = 48, 12, 12
X_LABELS_HEIGHT = 28
LEGEND_ROW_HEIGHT = 20
LABEL_WIDTH = 76              # room for one x label ("2026-11-22"), so labels never overlap
MAX_BAR_WIDTH = 48            # a short period still looks like bars, not a wall


def daily_outcomes_svg(counts: dict[str, dict[str, int]], outcomes: tuple[str, ...],
                       *, chart_id: str = "daily-outcomes") -> str:
    """A stacked bar chart of decisions per day (or per ISO week, past MAX_BARS days) by outcome.

    `counts` maps 'YYYY-MM-DD' to {outcome: n}; days missing between the first and the last
    are drawn as empty bars, so a quiet day is visible as one. Outcomes not in `outcomes` are
    drawn after them rather than dropped. `chart_id` prefixes the element ids, for two charts on
    one page.
    """
    days = {datetime.date.fromisoformat(day): by_outcome for day, by_outcome in counts.items()}
    extra = sorted({o for by_outcome in days.values() for o in by_outcome} - set(outcomes))
    order = tuple(outcomes) + tuple(extra)
    totals = {o: sum(by_outcome.get(o, 0) for by_outcome in days.values()) for o in order}
    if not days or sum(totals.values()) == 0:
        return _empty(chart_id)

    first, last = min(days), max(days)
    span = (last - first).days + 1
    weekly = span > MAX_BARS
    bins = _weeks(days, first, last) if weekly else _days(days, first, span)
    period = f"{first.isoformat()} to {last.isoformat()}" if first != last else first.isoformat()
    if weekly:
        title = (f"Decisions per ISO week by outcome, {period} "
                 f"({span} days, grouped by week: at most {MAX_BARS} days are shown one bar a day)")
    else:
        title = f"Decisions per day by outcome, {period}"
    grand = sum(totals.values())
    desc = (f"{grand} decision{'s' if grand != 1 else ''} in total: "
            + ", ".join(f"{totals[o]} {_words(o)}" for o in order) + ".")

    legend_rows = _legend_layout(order, totals)
    height = TOP + PLOT_HEIGHT + X_LABELS_HEIGHT + LEGEND_ROW_HEIGHT * len(legend_rows) + 8
    plot_width = WIDTH - LEFT - RIGHT
    top_tick, ticks = _ticks(max(sum(b[1].values()) for b in bins))
    scale = PLOT_HEIGHT / top_tick
    baseline = TOP + PLOT_HEIGHT
    slot = plot_width / len(bins)
    bar = min(max(slot * 0.8, 1.0), MAX_BAR_WIDTH)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
           f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
           f'aria-labelledby={quoteattr(f"{chart_id}-title {chart_id}-desc")}>',
           f'<title id={quoteattr(chart_id + "-title")}>{escape(title)}</title>',
           f'<desc id={quoteattr(chart_id + "-desc")}>{escape(desc)}</desc>',
           '<g class="y-axis">']
    for tick in ticks:
        y = _n(baseline - tick * scale)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}"/>'
                   f'<text class="tick" x="{LEFT - 6}" y="{y}" text-anchor="end" dominant-baseline="middle">'
                   f'{tick}</text>')
    out.append('</g><g class="bars">')
    for index, (label, by_outcome, tip) in enumerate(bins):
        x = LEFT + index * slot + (slot - bar) / 2
        out.append(f'<g class="bar" data-period={quoteattr(label)}>')
        y = baseline
        for outcome in order:
            n = by_outcome.get(outcome, 0)
            if not n:
                continue
            h = n * scale
            y -= h
            out.append(f'<rect class={quoteattr("seg seg-" + outcome)} x="{_n(x)}" y="{_n(y)}" '
                       f'width="{_n(bar)}" height="{_n(h)}"><title>{escape(f"{tip}: {n} {_words(outcome)}")}'
                       f'</title></rect>')
        out.append('</g>')
    out.append(f'</g><line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{baseline}" y2="{baseline}"/>')

    out.append('<g class="x-axis">')
    every = max(1, math.ceil(len(bins) / max(1, int(plot_width // LABEL_WIDTH))))
    for index in range(0, len(bins), every):
        x = min(LEFT + index * slot + slot / 2, WIDTH - LABEL_WIDTH / 2)    # the last label stays inside
        out.append(f'<text class="tick" x="{_n(x)}" y="{baseline + 16}" text-anchor="middle">'
                   f'{escape(bins[index][0])}</text>')
    out.append('</g>')

    out.append('<g class="legend">')
    y = baseline + X_LABELS_HEIGHT + 4
    for row in legend_rows:
        for x, outcome, text in row:
            out.append(f'<g class="key"><rect class={quoteattr("seg seg-" + outcome)} x="{x}" y="{y}" '
                       f'width="12" height="12"/><text x="{x + 18}" y="{y + 6}" dominant-baseline="middle">'
                       f'{escape(text)}</text></g>')
        y += LEGEND_ROW_HEIGHT
    out.append('</g></svg>')
    return "".join(out)


def _words(outcome: str) -> str:
    return outcome.replace("_", " ")


def _n(value: float) -> str:
    """A coordinate, short: 12 rather than 12.0, two decimals at most."""
    return f"{round(value, 2):g}"


def _days(days: dict, first: datetime.date, span: int) -> list[tuple[str, dict, str]]:
    """(label, counts, tooltip prefix) for every day from the first to the last, gaps as {}."""
    out = []
    for offset in range(span):
        day = first + datetime.timedelta(days=offset)
        out.append((day.isoformat(), days.get(day, {}), day.isoformat()))
    return out


def _weeks(days: dict, first: datetime.date, last: datetime.date) -> list[tuple[str, dict, str]]:
    """The same, one bin per ISO week (Monday to Sunday) from the first day's week to the last's."""
    monday = first - datetime.timedelta(days=first.weekday())
    out = []
    while monday <= last:
        week: dict[str, int] = {}
        for offset in range(7):
            for outcome, n in days.get(monday + datetime.timedelta(days=offset), {}).items():
                week[outcome] = week.get(outcome, 0) + n
        year, number, _ = monday.isocalendar()
        label = f"{year}-W{number:02d}"
        out.append((label, week, f"{label} (week of {monday.isoformat()})"))
        monday += datetime.timedelta(days=7)
    return out


def _ticks(highest: int) -> tuple[int, list[int]]:
    """Round y ticks (1, 2 or 5 times a power of ten) from 0 to at least `highest`, about 4 steps."""
    highest = max(highest, 1)
    raw = highest / 4
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(int(step), 1)
    top = step * math.ceil(highest / step)
    return top, list(range(0, top + 1, step))


def _legend_layout(order: tuple[str, ...], totals: dict[str, int]) -> list[list[tuple[int, str, str]]]:
    """Legend keys ("needs review (12)") placed left to right, wrapping to a new row when full."""
    rows: list[list[tuple[int, str, str]]] = [[]]
    x = LEFT
    for outcome in order:
        text = f"{_words(outcome)} ({totals[outcome]})"
        width = 18 + round(6.5 * len(text)) + 16    # swatch, text at about 6.5 px a character, gap
        if rows[-1] and x + width > WIDTH - RIGHT:
            rows.append([])
            x = LEFT
        rows[-1].append((x, outcome, text))
        x += width
    return rows


def _empty(chart_id: str) -> str:
    message = "No decisions in this period"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-empty" role="img" '
            f'viewBox="0 0 {WIDTH} 40" width="{WIDTH}" height="40" aria-labelledby={quoteattr(chart_id + "-title")}>'
            f'<title id={quoteattr(chart_id + "-title")}>{message}</title>'
            f'<text x="{LEFT}" y="24">{message}</text></svg>')
