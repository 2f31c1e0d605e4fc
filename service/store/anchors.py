"""The chain head, copied outside the database: the anchors file.

The chain shows any record edited, inserted, deleted or reordered, but not records cut off its
end (the head row is rewritten with them) or a database emptied. So the audit writer appends
the head (id, hash, count, time) to `anchors.jsonl` in the instance folder, one JSON line each:
after the commit that takes the chain past every `every` records, and after `minutes` since the
newest anchor when records were added. Verify then requires every anchored record in the chain,
with the anchored hash. The file is only ever appended to, so it can be shipped off the machine
as it grows (syslog, WORM storage: see the README), out of reach of whoever can write the
database.

Each anchor is one os.write on a descriptor opened with O_APPEND, a line far below PIPE_BUF, so
the writers of several processes never interleave within a line. The file is created owner-only.
"""

import json
import logging
import os
from pathlib import Path

from service import clock
from service.store import json_text

FILE_NAME = "anchors.jsonl"
TAIL_BYTES = 4096  # the newest anchor is in the file's last 4 KiB (a line is about 150 bytes)

log = logging.getLogger(__name__)


class Anchors:
    def __init__(self, path: Path, every: int, minutes: float):
        self.path, self.every, self.seconds = path, every, minutes * 60
        # The newest anchor this process knows of (its own, or read from the file): (id, stored time).
        self._known: tuple[int, str] | None = None

    def after_commit(self, first_id: int, last_id: int, last_hash: str):
        """Anchor the head if the commit of records first_id..last_id is due one."""
        self._anchor(last_id // self.every > (first_id - 1) // self.every, last_id, last_hash)

    def when_idle(self, last_id: int, last_hash: str):
        """Anchor this process's last head if records came after the newest anchor and it is
        `minutes` old: the last records before a quiet spell are anchored too."""
        self._anchor(False, last_id, last_hash)

    def _anchor(self, crossed: bool, last_id: int, last_hash: str):
        """Never raises: the records are committed already, and verify reports a missing anchor."""
        try:
            if crossed or self.due(last_id):
                self.write(last_id, last_hash)
        except OSError as error:
            log.error("the chain head (record %d) could not be anchored in %s: %s", last_id, self.path, error)

    def due(self, head_id: int) -> bool:
        """Records up to head_id are newer than the newest anchor, which is `minutes` old (or none
        exists). The file is read only when this process's own knowledge says it is due, so
        another process's recent anchor is found before a second one is written."""
        if self._known is not None and (head_id <= self._known[0] or not self._old(self._known[1])):
            return False
        newest = self.newest()
        if newest is not None:
            self._known = (newest["id"], newest["at"])
        return newest is None or (head_id > newest["id"] and self._old(newest["at"]))

    def _old(self, stored: str) -> bool:
        return clock.seconds_since(stored) >= self.seconds

    def write(self, head_id: int, head_hash: str):
        at = clock.utc_now()
        line = json_text.dumps({"id": head_id, "hash": head_hash, "count": head_id, "at": at}) + "\n"
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, line.encode())
        finally:
            os.close(descriptor)
        self._known = (head_id, at)

    def newest(self) -> dict | None:
        """The last complete anchor line of the file, or None."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - TAIL_BYTES))
                tail = handle.read()
        except FileNotFoundError:
            return None
        for line in reversed(tail.splitlines()):
            anchor = _parse(line)
            if anchor is not None:
                return anchor
        return None

    def read(self) -> tuple[list[dict], int] | None:
        """Every anchor in the file and how many lines could not be read; None if there is no file."""
        anchors, unreadable = [], 0
        try:
            with open(self.path, "rb") as handle:
                for line in handle:
                    anchor = _parse(line)
                    if anchor is None:
                        unreadable += bool(line.strip())
                    else:
                        anchors.append(anchor)
        except FileNotFoundError:
            return None
        return anchors, unreadable


def _parse(line: bytes) -> dict | None:
    try:
        anchor = json.loads(line)
        if isinstance(anchor["id"], int) and isinstance(anchor["hash"], str) and isinstance(anchor["at"], str):
            clock.seconds_since(anchor["at"])  # a stored time, or ValueError
            return anchor
    except (ValueError, KeyError, TypeError):
        pass
    return None
