"""Helpers for tests (and benches): read streams back as records or bytes, build Job A's rows."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from connectors.kafka.settings import KafkaSettings
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from flows.indicators import indicator_config, to_sma_wide
from flows.portfolio_risk import build_flow as build_job_c
from operators.indicators import IndicatorConfig, IndicatorSet, Row, SymbolIndicators, Tick
from schemas import MarketData, Record, SmaWide, decode, spec

JOB_C_INPUTS = ("trade_signals", "venue_fills", "accounts", "symbol_limits", "control", "market_data")
"""The streams Job C (flows.portfolio_risk) reads."""


def read_all(conn: Connectors, stream: str) -> list[Record]:
    """Return every record of a stream, partition by partition, in offset order."""
    model = spec(stream).model
    return [decode(model, r.value) for r in conn.scan(stream, 10_000)]


def feed_paced(
    settings: Settings,
    stream: str,
    records: Sequence[Record],
    errors: list[BaseException],
    *,
    per_s: int = 10_000,
) -> threading.Thread:
    """Start a thread writing ``records`` to ``stream`` at about ``per_s`` a second, then closing it.

    A live feed: a flow reading the stream (to its close, or following it) cannot reach its
    end before the feed does, so a test can kill it mid-stream however fast the flow has
    become. An error is put in ``errors`` for the test thread to report.
    """
    batch = max(1, per_s // 10)

    def write() -> None:
        try:
            writer = Connectors(settings).writer(stream)
            try:
                for i in range(0, len(records), batch):
                    writer.write(records[i : i + batch])
                    time.sleep(0.1)
                writer.close_stream()
            finally:
                writer.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    thread = threading.Thread(target=write, name=f"feed-{stream}", daemon=True)
    thread.start()
    return thread


def topic_bytes(kafka: KafkaSettings, topic: str, **config: object) -> bytes:
    """Return every key, value and header of a Kafka topic, concatenated (to search for secrets).

    ``kafka`` must be allowed to read the topic (an admin); ``config`` is added to the
    consumer's configuration (``log_level=0`` to keep it quiet).
    """
    from confluent_kafka import Consumer, TopicPartition

    from connectors.kafka.config import consumer_config

    consumer = Consumer({**consumer_config(kafka, topic, eof=True), **config})
    out = bytearray()
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            seen = low
            while seen < high:
                msg = consumer.poll(5)
                if msg is None or msg.error():
                    continue
                seen = msg.offset() + 1
                out += (msg.key() or b"") + (msg.value() or b"")
                for name, value in msg.headers() or []:
                    out += name.encode() + (value or b"")
    finally:
        consumer.close()
    return bytes(out)


def sma_rows(ticks: list[MarketData]) -> list[Record]:
    """Return the sma_wide rows Job A writes for ``ticks`` (default periods), computed directly."""
    config = indicator_config(load_settings())
    states: dict[str, SymbolIndicators] = {}
    out: list[Record] = []
    for t in ticks:
        st = states.setdefault(t.symbol, SymbolIndicators(config))
        for res in st.on_tick(Tick(t.symbol, t.ts, float(t.price), float(t.volume), t.wm)):
            assert isinstance(res, Row)
            out.append(to_sma_wide(res))
    for st in states.values():  # end of input, as Job A's on_eof
        for res in st.flush():
            assert isinstance(res, Row)
            out.append(to_sma_wide(res))
    return out


def indicator_rows(
    ticks: Iterable[MarketData], config: IndicatorConfig | None = None, *, validate: bool = True
) -> list[SmaWide]:
    """Return an sma_wide row per tick computed by Job A's ``IndicatorSet`` (numbered per symbol).

    ``validate=False`` builds them unvalidated (``model_construct``), as Job A writes them.
    """
    build = SmaWide if validate else SmaWide.model_construct
    sets: dict[str, IndicatorSet] = {}
    seqs: dict[str, int] = {}
    rows: list[SmaWide] = []
    for t in ticks:
        ind = sets.setdefault(t.symbol, IndicatorSet(config or IndicatorConfig()))
        seq = seqs.get(t.symbol, 0)
        seqs[t.symbol] = seq + 1
        price, volume = float(t.price), float(t.volume)
        values = ind.update(price, volume, t.ts)
        vwap = values.pop("vwap")
        rows.append(build(symbol=t.symbol, ts=t.ts, price=price, volume=volume, vwap=vwap, seq=seq, **values))
    return rows


class Phases:
    """Run Job C in-process phase by phase on the embedded store, resuming from its recovery snapshot.

    Each phase writes its inputs, closes every input so the flow ends, runs the flow, then
    reopens the inputs for the next phase. ``flow_s`` adds up the time spent in the flow.
    """

    def __init__(self, settings: Settings, work: Path, epoch: timedelta = timedelta(seconds=0.2)) -> None:
        self.settings = settings
        self.conn = Connectors(settings)
        self.recovery = work / "recovery"
        self.recovery.mkdir()
        init_db_dir(self.recovery, 1)
        self.epoch = epoch
        self.flow_s = 0.0

    def run(self, **streams: list[Record]) -> None:
        """Run one phase over ``streams`` (input name to its new records; the others get none)."""
        self.conn.write_all(streams, JOB_C_INPUTS)
        started = time.perf_counter()
        run_main(build_job_c(self.settings), epoch_interval=self.epoch,
                 recovery_config=RecoveryConfig(str(self.recovery)))
        self.flow_s += time.perf_counter() - started
        self.conn.reopen_all(JOB_C_INPUTS)

    def all(self, stream: str) -> list[Record]:
        """Return every record of ``stream``."""
        return read_all(self.conn, stream)
