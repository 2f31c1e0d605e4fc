"""The console's inline SVG charts: decisions per day by outcome (the audit page), and the
reports page's figures per month (stacked bars) and ranked rows (horizontal bars).

The console has no JavaScript and loads nothing from a CDN, so the server draws the chart. The
drawing is split where the concerns split: this module decides what to draw (which days or ISO
weeks, how tall each segment is, where the ticks, labels and legend keys go, what the title,
description and tooltips say) and returns it as plain data, easy to test; the template
console/_chart.svg.html writes that data out as SVG under Flask's autoescape, like every other
page, so no outcome, label or id reaches the page unescaped.

The chart is accessible without colour: the SVG is one image (`role="img"`) whose <title> and
<desc> say what it shows and the totals per outcome, the legend names each outcome in text, and
every bar segment carries a tooltip with its day, count and outcome. Colours come from the
stylesheet through `seg-<outcome>` classes, so the chart follows the console's palette.
"""

import datetime
import math
from dataclasses import dataclass

MAX_BARS = 90  # more days than this are grouped by ISO week
WIDTH, PLOT_HEIGHT = 720, 200
LEFT, RIGHT, TOP = 48, 12, 12
PLOT_WIDTH, BASELINE = WIDTH - LEFT - RIGHT, TOP + PLOT_HEIGHT
X_LABELS_HEIGHT = 28
LEGEND_ROW_HEIGHT = 20
LABEL_WIDTH = 76  # room for one x label ("2026-11-22"), so labels never overlap
MAX_BAR_WIDTH = 48  # a short period still looks like bars, not a wall
SWATCH_SIZE, SWATCH_GAP = 12, 6  # a legend key's colour square, and the space before its text
EMPTY_HEIGHT, EMPTY_TEXT_Y = 40, 24
NO_DECISIONS = "No decisions in this period"

Bin = tuple[str, dict[str, float], str]  # a day or an ISO week: (label, counts by outcome, tooltip prefix)


@dataclass(frozen=True)
class Tick:
    """A y-axis value and the height of its grid line."""

    value: int
    y: float


@dataclass(frozen=True)
class Segment:
    """One outcome's part of a bar, with the tooltip that names its period, count and outcome."""

    outcome: str
    x: float
    y: float
    width: float
    height: float
    tooltip: str


@dataclass(frozen=True)
class Bar:
    """One day (or ISO week): its segments stacked from the axis up, none on a quiet day."""

    period: str
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Label:
    """Text placed at a point: an x-axis period, or the message of an empty chart."""

    text: str
    x: float
    y: float


@dataclass(frozen=True)
class LegendKey:
    """An outcome's colour swatch with its name and total beside it."""

    outcome: str
    text: str
    x: int
    y: int
    size: int
    text_x: int
    text_y: int


@dataclass(frozen=True)
class Plot:
    """Everything drawn when there are decisions: axes, bars, period labels and the legend."""

    left: int
    right: int
    baseline: int
    tick_label_x: int
    ticks: tuple[Tick, ...]
    bars: tuple[Bar, ...]
    x_labels: tuple[Label, ...]
    legend: tuple[LegendKey, ...]


@dataclass(frozen=True)
class Row:
    """One ranked item drawn across: its name (cut short; whole in `tooltip`), its segments left to
    right, and its total written after the bar."""

    label: Label
    tooltip: str
    segments: tuple[Segment, ...]
    total: Label


@dataclass(frozen=True)
class Ranked:
    """Everything drawn for ranked rows: the x ticks (vertical grid lines), the rows, the legend."""

    left: int
    right: int
    top: int
    bottom: int
    tick_label_y: int
    ticks: tuple[Label, ...]
    rows: tuple[Row, ...]
    legend: tuple[LegendKey, ...]


@dataclass(frozen=True)
class Chart:
    """One chart for the template, in SVG user units: a plot, ranked rows, or (nothing to draw) a message."""

    id: str
    title: str
    description: str
    width: int
    height: int
    plot: Plot | None = None
    message: Label | None = None
    ranked: Ranked | None = None


def daily_outcomes_chart(
    counts: dict[str, dict[str, int]], outcomes: tuple[str, ...], *, chart_id: str = "daily-outcomes"
) -> Chart:
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
        return Chart(
            id=chart_id,
            title=NO_DECISIONS,
            description="",
            width=WIDTH,
            height=EMPTY_HEIGHT,
            message=Label(NO_DECISIONS, LEFT, EMPTY_TEXT_Y),
        )

    first, last = min(days), max(days)
    span = (last - first).days + 1
    weekly = span > MAX_BARS
    bins = _weeks(days, first, last) if weekly else _days(days, first, span)
    legend = _legend(order, totals, top=BASELINE + X_LABELS_HEIGHT + 4)
    rows = len({key.y for key in legend})
    return Chart(
        id=chart_id,
        title=_title(first, last, span, weekly),
        description=_description(order, totals),
        width=WIDTH,
        height=BASELINE + X_LABELS_HEIGHT + LEGEND_ROW_HEIGHT * rows + 8,
        plot=_plot(bins, order, legend),
    )


def _title(first: datetime.date, last: datetime.date, span: int, weekly: bool) -> str:
    period = f"{first.isoformat()} to {last.isoformat()}" if first != last else first.isoformat()
    if weekly:
        return (
            f"Decisions per ISO week by outcome, {period} "
            f"({span} days, grouped by week: at most {MAX_BARS} days are shown one bar a day)"
        )
    return f"Decisions per day by outcome, {period}"


def _description(order: tuple[str, ...], totals: dict[str, int]) -> str:
    grand = sum(totals.values())
    return (
        f"{grand} decision{'s' if grand != 1 else ''} in total: "
        + ", ".join(f"{totals[o]} {_words(o)}" for o in order)
        + "."
    )


def _plot(bins: list[Bin], order: tuple[str, ...], legend: tuple[LegendKey, ...], unit: str = "") -> Plot:
    """The y ticks, the stacked bars and the thinned x labels, scaled to the tallest bin."""
    top_tick, tick_values = _ticks(max(sum(by_outcome.values()) for _, by_outcome, _ in bins))
    scale = PLOT_HEIGHT / top_tick
    slot = PLOT_WIDTH / len(bins)
    return Plot(
        left=LEFT,
        right=WIDTH - RIGHT,
        baseline=BASELINE,
        tick_label_x=LEFT - 6,
        ticks=tuple(Tick(value, _coordinate(BASELINE - value * scale)) for value in tick_values),
        bars=_bars(bins, order, scale, slot, unit),
        x_labels=_x_labels(bins, slot),
        legend=legend,
    )


def _bars(bins: list[Bin], order: tuple[str, ...], scale: float, slot: float, unit: str = "") -> tuple[Bar, ...]:
    """One bar centred in each bin's slot, its segments stacked up from the axis in outcome order."""
    width = min(max(slot * 0.8, 1.0), MAX_BAR_WIDTH)
    bars = []
    for index, (period, by_outcome, tip) in enumerate(bins):
        x = LEFT + index * slot + (slot - width) / 2
        y = float(BASELINE)
        segments = []
        for outcome in order:
            n = by_outcome.get(outcome, 0)
            if not n:
                continue
            y -= n * scale
            segments.append(
                Segment(
                    outcome,
                    _coordinate(x),
                    _coordinate(y),
                    _coordinate(width),
                    _coordinate(n * scale),
                    f"{tip}: {_quantity(n, unit)} {_words(outcome)}",
                )
            )
        bars.append(Bar(period, tuple(segments)))
    return tuple(bars)


def _x_labels(bins: list[Bin], slot: float) -> tuple[Label, ...]:
    """Period labels under their bars, thinned to one every so many bars so that none overlap."""
    every = max(1, math.ceil(len(bins) / max(1, int(PLOT_WIDTH // LABEL_WIDTH))))
    return tuple(
        Label(
            bins[index][0], _coordinate(min(LEFT + index * slot + slot / 2, WIDTH - LABEL_WIDTH / 2)), BASELINE + 16
        )  # min(): the last label stays inside
        for index in range(0, len(bins), every)
    )


def _words(outcome: str) -> str:
    return outcome.replace("_", " ")


def _quantity(value: float, unit: str = "") -> str:
    """A count or an amount as the chart writes it: 12, 12.5 g, 1,200 g."""
    number = _coordinate(value)
    text = f"{number:,}" if isinstance(number, int) else f"{number:,.2f}".rstrip("0").rstrip(".")
    return f"{text} {unit}" if unit else text


def _coordinate(value: float) -> float:
    """A coordinate, short: 12 rather than 12.0, two decimals at most."""
    rounded = round(float(value), 2)
    return int(rounded) if rounded.is_integer() else rounded


def _days(days: dict, first: datetime.date, span: int) -> list[Bin]:
    """A bin for every day from the first to the last, gaps as {}."""
    out = []
    for offset in range(span):
        day = first + datetime.timedelta(days=offset)
        out.append((day.isoformat(), days.get(day, {}), day.isoformat()))
    return out


def _weeks(days: dict, first: datetime.date, last: datetime.date) -> list[Bin]:
    """The same, one bin per ISO week (Monday to Sunday) from the first day's week to the last's."""
    monday = first - datetime.timedelta(days=first.weekday())
    out = []
    while monday <= last:
        week: dict[str, float] = {}
        for offset in range(7):
            for outcome, n in days.get(monday + datetime.timedelta(days=offset), {}).items():
                week[outcome] = week.get(outcome, 0) + n
        year, number, _ = monday.isocalendar()
        label = f"{year}-W{number:02d}"
        out.append((label, week, f"{label} (week of {monday.isoformat()})"))
        monday += datetime.timedelta(days=7)
    return out


def _ticks(highest: float) -> tuple[int, list[int]]:
    """Round y ticks (1, 2 or 5 times a power of ten) from 0 to at least `highest`, about 4 steps."""
    highest = max(highest, 1)
    raw = highest / 4
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(int(step), 1)
    top = step * math.ceil(highest / step)
    return top, list(range(0, top + 1, step))


def _legend(order: tuple[str, ...], totals: dict, *, top: int, unit: str = "") -> tuple[LegendKey, ...]:
    """Legend keys ("needs review (12)") placed left to right from `top`, wrapping a row when full."""
    keys: list[LegendKey] = []
    x, y = LEFT, top
    for outcome in order:
        text = f"{_words(outcome)} ({_quantity(totals[outcome], unit)})"
        width = SWATCH_SIZE + SWATCH_GAP + round(6.5 * len(text)) + 16  # text at about 6.5 px a character
        if x > LEFT and x + width > WIDTH - RIGHT:
            x, y = LEFT, y + LEGEND_ROW_HEIGHT
        keys.append(
            LegendKey(
                outcome, text, x, y, SWATCH_SIZE, text_x=x + SWATCH_SIZE + SWATCH_GAP, text_y=y + SWATCH_SIZE // 2
            )
        )
        x += width
    return tuple(keys)


def _empty(chart_id: str, message: str) -> Chart:
    return Chart(
        id=chart_id, title=message, description="", width=WIDTH, height=EMPTY_HEIGHT, message=Label(message, LEFT, 24)
    )


def _totals(values: list[dict[str, float]], order: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, float]]:
    """The series in `order`, then any others rather than dropped, and the total of each."""
    extra = sorted({name for by_series in values for name in by_series} - set(order))
    full = tuple(order) + tuple(extra)
    return full, {name: sum(by_series.get(name, 0) for by_series in values) for name in full}


def _summary(lead: str, order: tuple[str, ...], totals: dict[str, float], unit: str) -> str:
    return f"{lead}: " + ", ".join(f"{_quantity(totals[name], unit)} {_words(name)}" for name in order) + "."


def monthly_chart(
    counts: dict[str, dict[str, float]],
    order: tuple[str, ...],
    *,
    chart_id: str,
    what: str,
    unit: str = "",
    empty: str = "Nothing in this period",
) -> Chart:
    """A stacked bar chart per month ('YYYY-MM' -> {series: amount}), the months between the first
    and the last drawn as empty bars; `what` names the amount ("Decisions", "Grams opened")."""
    months = {key: by_series for key, by_series in counts.items() if key}
    order, totals = _totals(list(months.values()), order)
    grand = sum(totals.values())
    if not months or not grand:
        return _empty(chart_id, empty)
    first, last = min(months), max(months)
    bins: list[Bin] = []
    year, month = int(first[:4]), int(first[5:7])
    while f"{year:04d}-{month:02d}" <= last:
        key = f"{year:04d}-{month:02d}"
        bins.append((key, months.get(key, {}), key))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    legend = _legend(order, totals, top=BASELINE + X_LABELS_HEIGHT + 4, unit=unit)
    rows = len({key.y for key in legend})
    period = f"{first} to {last}" if first != last else first
    return Chart(
        id=chart_id,
        title=f"{what} per month, {period}",
        description=_summary(f"{_quantity(grand, unit)} in total", order, totals, unit),
        width=WIDTH,
        height=BASELINE + X_LABELS_HEIGHT + LEGEND_ROW_HEIGHT * rows + 8,
        plot=_plot(bins, order, legend, unit),
    )


ROW_HEIGHT, ROW_BAR = 24, 16  # a ranked row's slot and its bar's thickness
NAME_WIDTH = 230  # the column of row names, left of the bars
NAME_CHARACTERS = 34  # a longer name is cut short with an ellipsis (the whole name is its tooltip)
TOTAL_WIDTH = 80  # room after the longest bar for its total


def ranked_chart(
    rows: list[tuple[str, dict[str, float]]],
    order: tuple[str, ...],
    *,
    chart_id: str,
    title: str,
    unit: str = "",
    empty: str = "Nothing in this period",
) -> Chart:
    """Horizontal bars, one per (name, {series: amount}) in the order given (rank them first),
    segments stacked left to right in series order, each row's total written after its bar."""
    order, totals = _totals([by_series for _, by_series in rows], order)
    grand = sum(totals.values())
    if not rows or not grand:
        return _empty(chart_id, empty)
    left, right, top = NAME_WIDTH + 8, WIDTH - RIGHT - TOTAL_WIDTH, TOP + 16
    bottom = top + ROW_HEIGHT * len(rows)
    top_tick, tick_values = _ticks(max(sum(by_series.values()) for _, by_series in rows))
    scale = (right - left) / top_tick
    drawn = []
    for index, (name, by_series) in enumerate(rows):
        y = top + index * ROW_HEIGHT + (ROW_HEIGHT - ROW_BAR) / 2
        x = float(left)
        segments = []
        for series in order:
            amount = by_series.get(series, 0)
            if not amount:
                continue
            width = amount * scale
            segments.append(
                Segment(
                    series,
                    _coordinate(x),
                    _coordinate(y),
                    _coordinate(width),
                    ROW_BAR,
                    f"{name}: {_quantity(amount, unit)} {_words(series)}",
                )
            )
            x += width
        short = name if len(name) <= NAME_CHARACTERS else name[: NAME_CHARACTERS - 1].rstrip() + "\u2026"
        middle = _coordinate(y + ROW_BAR / 2)
        drawn.append(
            Row(
                label=Label(short, left - 8, middle),
                tooltip=name,
                segments=tuple(segments),
                total=Label(_quantity(sum(by_series.values()), unit), _coordinate(x + 6), middle),
            )
        )
    legend = _legend(order, totals, top=bottom + 8, unit=unit) if len(order) > 1 else ()
    legend_rows = len({key.y for key in legend})
    return Chart(
        id=chart_id,
        title=title,
        description=_summary(
            f"{len(rows)} row{'s' if len(rows) != 1 else ''}, {_quantity(grand, unit)} in total",
            order,
            totals,
            unit,
        )
        + " "
        + "; ".join(f"{name}: {_quantity(sum(by_series.values()), unit)}" for name, by_series in rows)
        + ".",
        width=WIDTH,
        height=bottom + 8 + LEGEND_ROW_HEIGHT * legend_rows + 4,
        ranked=Ranked(
            left=left,
            right=right,
            top=top,
            bottom=bottom,
            tick_label_y=top - 6,
            ticks=tuple(Label(_quantity(value), _coordinate(left + value * scale), top) for value in tick_values),
            rows=tuple(drawn),
            legend=legend,
        ),
    )
