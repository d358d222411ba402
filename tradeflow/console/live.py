"""What the console reads and writes, through the connectors registry (any profile).

``Live`` keeps one reader per tailed stream and the next offset of each partition, so
each ``refresh`` reads only what was appended since the last one (tables are read as
their changelogs, which is also how the equity chart gets its points). A record that
does not decode is counted and skipped; a stream that cannot be read yet (a topic not
created, or no file yet on the embedded store: the console never creates a stream) is
retried at the next refresh. ``scrape`` reads the jobs' metrics endpoints
(``tradeflow.status``); ``write_control`` appends a control row.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from connectors.base import StoredRecord, StreamReader
from connectors.registry import Connectors
from connectors.settings import Profile, Settings
from schemas import Control, DecodeError, TradingState, decode, spec
from tradeflow.console.model import TAILED, ConsoleView, WrittenControl, control_applied, control_counts
from tradeflow.status import Status, scrape

RECENT_DECISIONS = 2000
"""risk_decisions is read from this many records before its end per partition (latency only)."""


LATEST_ONLY = frozenset({"positions_state", "orders"})
"""Tables of which the view keeps only the latest row per key: of the rows one refresh
reads, only the last per key is decoded (marks update every position many times a second)."""


def latest_per_key(records: list[StoredRecord]) -> list[StoredRecord]:
    """Return the last record of each key, in the order of those last records."""
    last = {rec.key: i for i, rec in enumerate(records)}
    return [rec for i, rec in enumerate(records) if rec.key is None or last[rec.key] == i]


class StreamTail:
    """The records appended to one stream since the last poll."""

    def __init__(self, conn: Connectors, stream: str, *, last: int | None = None, newest_only: bool = False
                 ) -> None:
        self.conn = conn
        self.stream = stream
        self.last = last
        """Start this many records before the end of each partition (None: at the start)."""
        self.newest_only = newest_only
        """Return only the newest record of each partition that grew (market_data: the clock)."""
        self.reader: StreamReader | None = None
        self.offsets: dict[int, int] = {}
        self.error: str | None = None

    def poll(self, limit: int = 5000) -> list[StoredRecord]:
        """Return the new records of every partition (up to ``limit`` each)."""
        try:
            if self.reader is None:
                if not self._exists():
                    return []
                self.reader = self.conn.reader(self.stream)
                ends = self.reader.end_offsets()
                back = self.last
                self.offsets = {p: max(0, end - back) if back else 0 for p, end in ends.items()}
            got: list[StoredRecord] = []
            if self.newest_only:
                for part, end in self.reader.data_ends().items():
                    if end > self.offsets.get(part, 0):
                        got += self.reader.read(part, end - 1, 1)
                        self.offsets[part] = end
                self.error = None
                return got
            for part, offset in self.offsets.items():
                recs = self.reader.read(part, offset, limit)
                if recs:
                    self.offsets[part] = recs[-1].offset + 1
                    got += recs
        except Exception as exc:  # any backend's failure: shown on the page, retried next time
            self.error = f"{type(exc).__name__}: {exc}"[:300]
            self.close()
            return []
        self.error = None
        return got

    def _exists(self) -> bool:
        # The embedded store creates a stream's file when it is first opened; the console
        # must not create streams in the run it watches (a job creates them, with its own
        # partition count), so it waits for the file.
        settings = self.conn.settings
        if settings.profile_for(self.stream) is not Profile.LOCAL:
            return True
        return (settings.data_dir / f"{settings.physical_name(self.stream)}.db").exists()

    def close(self) -> None:
        """Release the reader (the next poll opens a new one at the same offsets)."""
        reader, self.reader = self.reader, None
        if reader is not None:
            with contextlib.suppress(Exception):  # a reader that failed may fail to close too
                reader.close()


class Live:
    """The console's state: the view folded from the streams, and its JSON for the pages.

    ``refresh`` must run on ``io`` (the app does so); ``scrape`` and ``write_control``
    may run on any thread.
    """

    def __init__(self, settings: Settings, metrics: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.metrics = metrics
        self.conn = Connectors(settings)
        self.view = ConsoleView(default_venue=settings.execution.venue)
        self.tails = {
            s: StreamTail(self.conn, s, last=RECENT_DECISIONS if s == "risk_decisions" else None)
            for s in TAILED
        }
        self.tails["market_data"] = StreamTail(self.conn, "market_data", newest_only=True)
        self.lock = threading.Lock()
        self.version = 0
        """Moves whenever a section of the view changed."""
        self._sections: dict[str, tuple[int, str]] = {}
        """Section name -> (the version it last changed at, its JSON)."""
        self.io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-io")
        """The one thread that reads the streams: the readers (SQLite connections on the
        embedded store) are used only by the thread that opened them."""
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="console-scrape")
        self._render()

    def refresh(self) -> bool:
        """Read what was appended to the tailed streams; tell whether the view changed."""
        changed = False
        for stream, tail in self.tails.items():
            records = tail.poll()
            if not records:
                continue
            model = spec(stream).model
            if stream in LATEST_ONLY:
                records = latest_per_key(records)
            with self.lock:
                for rec in records:
                    try:
                        self.view.apply(stream, decode(model, rec.value))
                    except DecodeError:
                        self.view.bad_record(stream)
            changed = True
        if changed:
            self._render()
        return changed

    def _scrape_all(self) -> list[Status]:
        return list(self._pool.map(lambda t: scrape(t, 2.0), self.metrics))

    def scrape(self) -> bool:
        """Read the jobs' metrics: health rows, and which jobs have read the written controls."""
        if not self.metrics:
            return False
        statuses = self._scrape_all()
        now = time.monotonic()
        with self.lock:
            self.view.health = statuses
            for w in self.view.written:
                control_applied(w, statuses, now - w.written_at)
        self._render()
        return True

    def write_control(self, scope: str, state: TradingState, reason: str, who: str) -> Control:
        """Append a control row (validated by its model: a bad scope raises ``ValueError``)."""
        row = Control(scope=scope, state=state, reason=reason, updated_by=who, ts=datetime.now(UTC))
        baseline = control_counts(self._scrape_all()) if self.metrics else {}
        writer = self.conn.writer("control")
        try:
            writer.write([row])
        finally:
            writer.close()
        written = WrittenControl(scope, state.value, row.ts, baseline, written_at=time.monotonic())
        with self.lock:
            self.view.written.append(written)
            del self.view.written[:-50]
        return row

    def errors(self) -> dict[str, str]:
        """Return the streams that could not be read at the last refresh, and why."""
        return {s: t.error for s, t in self.tails.items() if t.error}

    def _render(self) -> None:
        with self.lock:
            body = self.view.to_json()
            body["errors"] = self.errors()
            body["profile"] = self.settings.profile.value
            version = self.version + 1
            changed = False
            for name, value in body.items():
                text = json.dumps(value, separators=(",", ":"))
                old = self._sections.get(name)
                if old is None or old[1] != text:
                    self._sections[name] = (version, text)
                    changed = True
            if changed:
                self.version = version

    def state_since(self, seen: int) -> tuple[int, str]:
        """Return the current version and, as one JSON object, the sections changed after ``seen``.

        ``seen`` -1 gives every section (a page that just connected). Pages merge what
        they get into what they have, so an update carries only what changed.
        """
        with self.lock:
            parts = [f'"{name}":{text}' for name, (at, text) in self._sections.items() if at > seen]
            return self.version, "{" + ",".join([*parts, f'"version":{self.version}']) + "}"

    def close(self) -> None:
        """Close every reader (on the reading thread) and the threads."""
        def close_tails() -> None:
            for tail in self.tails.values():
                tail.close()

        self.io.submit(close_tails).result()
        self.io.shutdown()
        self._pool.shutdown(wait=False, cancel_futures=True)
