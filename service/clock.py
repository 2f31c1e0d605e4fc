"""The service's one clock: every time a record, an authorisation or a page shows is read here.

Times are UTC. Stored times are fixed-width ISO 8601 text ("2026-11-22T21:04:05.123456Z"), so
they sort and compare as text alike on SQLite and PostgreSQL. Tests move the clock by replacing
`now` in this module, and every reader follows.
"""

import datetime

STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def utc_now() -> str:
    """Now, as stored text."""
    return stamp(now())


def utc_today() -> datetime.date:
    return now().date()


def stamp(moment: datetime.datetime) -> str:
    """A moment with an offset as stored text, in UTC."""
    return moment.astimezone(datetime.UTC).strftime(STAMP_FORMAT)


def day_start(day: datetime.date) -> str:
    """The stored text of midnight UTC at the start of a day (a window's bound)."""
    return stamp(datetime.datetime.combine(day, datetime.time(), datetime.UTC))


def seconds_since(stored: str) -> int:
    """Whole seconds from a stored time to now."""
    then = datetime.datetime.strptime(stored, STAMP_FORMAT).replace(tzinfo=datetime.UTC)
    return int((now() - then).total_seconds())
