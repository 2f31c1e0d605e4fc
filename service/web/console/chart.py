"""Decisions per day by outcome: the arithmetic of the audit page's inline SVG chart.

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

Bin = tuple[str, dict[str, int], str]  # a day or an ISO week: (label, counts by outcome, tooltip prefix)


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
class Chart:
    """One chart for the template, in SVG user units: a plot, or (no decisions) a message."""

    id: str
    title: str
    description: str
    width: int
    height: int
    plot: Plot | None = None
    message: Label | None = None


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


def _plot(bins: list[Bin], order: tuple[str, ...], legend: tuple[LegendKey, ...]) -> Plot:
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
        bars=_bars(bins, order, scale, slot),
        x_labels=_x_labels(bins, slot),
        legend=legend,
    )


def _bars(bins: list[Bin], order: tuple[str, ...], scale: float, slot: float) -> tuple[Bar, ...]:
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
                    f"{tip}: {n} {_words(outcome)}",
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


def _legend(order: tuple[str, ...], totals: dict[str, int], *, top: int) -> tuple[LegendKey, ...]:
    """Legend keys ("needs review (12)") placed left to right from `top`, wrapping a row when full."""
    keys: list[LegendKey] = []
    x, y = LEFT, top
    for outcome in order:
        text = f"{_words(outcome)} ({totals[outcome]})"
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
