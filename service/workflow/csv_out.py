"""CSV the service writes, safe to open in a spreadsheet.

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` as a formula (and a leading tab or
carriage return can hide one), so a patient reference, a diagnosis text, a reason or a requester
name typed as `=HYPERLINK(...)` would come back live in the audit or pre-approval download. Every
CSV writer of the service (the audit download, the console's pre-approval results, `formulary
preapprove --output`) goes through `Writer`, which applies the OWASP rule: a text cell starting
with one of those characters is written behind a single quote, which a spreadsheet shows as text
(`'=1+1`, `'-3`). Numbers the service itself writes (row numbers, record ids, grams) are not text
anyone typed and stay numbers.
"""

import csv
from collections.abc import Iterable
from typing import IO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class Writer:
    """csv.writer whose rows are neutralised cell by cell."""

    def __init__(self, stream: IO[str]):
        self._writer = csv.writer(stream)

    def writerow(self, row: Iterable) -> None:
        self.writerows((row,))

    def writerows(self, rows: Iterable[Iterable]) -> None:
        """Each text cell that a spreadsheet would read as a formula is written behind a single quote
        (one comprehension, no call a cell: the audit export writes millions of cells)."""
        self._writer.writerows(
            ["'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value for value in row]
            for row in rows
        )
