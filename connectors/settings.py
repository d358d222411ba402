"""Settings read once at the edge (environment, ``.env``), frozen afterwards.

The composed ``Settings`` model: the profile and stream mapping, the per-job
sections, and each backend's own settings model (``connectors.kafka.settings``,
``connectors.fluss.settings``, ``connectors.fix.settings``). It lives in the
connectors layer so that connectors and flows can take it without importing the CLI
layer; ``tradeflow.settings`` re-exports it.

Every field is read from ``TRADEFLOW_<FIELD>`` (nested: ``TRADEFLOW_KAFKA__BOOTSTRAP``).
Flows take a ``Settings`` object, so tests build flows with their own settings and
nothing deep in the code reads the environment.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.fix.settings import FixSettings
from connectors.fluss.settings import FlussSettings
from connectors.kafka.settings import KafkaSettings
from connectors.rest.settings import RestSettings
from connectors.runtime import JOB_GC_THRESHOLDS
from connectors.sharding import UNSHARDED, Shard, ShardError


class Profile(StrEnum):
    """Which data plane the streams live on."""

    LOCAL = "local"
    KAFKA = "kafka"
    FLUSS = "fluss"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IndicatorSettings(_Section):
    """Job A periods (env ``TRADEFLOW_INDICATORS__SMA='[5,10]'`` etc.)."""

    sma: tuple[int, ...] = (5, 10, 20, 50)
    ema: tuple[int, ...] = (12, 26)
    rsi: tuple[int, ...] = (14,)
    vwap: bool = True
    max_future_skew_s: float | None = Field(default=60.0, gt=0)
    """A tick more than this many seconds ahead of the wall clock (following live) or,
    unconfirmed, of its symbol's newest tick goes to dead_letters; None: no check."""

    @field_validator("sma", "ema", "rsi")
    @classmethod
    def _periods_positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(p < 1 for p in v):
            raise ValueError("periods must be >= 1")
        return tuple(sorted(set(v)))


class PortfolioSettings(_Section):
    """Job C (env ``TRADEFLOW_PORTFOLIO__*``)."""

    mark_throttle_ms: int = 1000
    """Marks fanned out to the accounts holding a symbol at most this often (event time)."""
    unknown_account_wait_s: float = 2.0
    """A signal of an account with no accounts row waits this long (wall clock) for
    the row, then is decided without it (FAIL, ACCOUNT_STATUS)."""
    mark_wait_s: float = 1.0
    """A signal waits for its symbol's market data to reach the signal's event time
    (to be priced at the last tick at or before it) at most this long (wall clock)."""
    journal: bool = True
    """Write the input journal (risk_journal) and resume from it; off only for the
    shadow instance and benchmarks of the bare book."""
    max_future_skew_s: float | None = Field(default=60.0, gt=0)
    """A tick or signal dated more than this ahead of the wall clock goes to dead_letters
    and is never a mark or a decision (None: no check)."""
    await_progress: tuple[str, ...] = ("feed",)
    """Event-time mode (``TRADEFLOW_EVENT_TIME``): the producers whose progress rows bound
    what Job C applies: ``feed``, ``strategy:<id>`` of every Job B and ``execution:<venue>``
    of every Job D of the deployment (``operators.eventtime``; ``tradeflow.pipeline`` sets it)."""


class ExecutionSettings(_Section):
    """Job D (env ``TRADEFLOW_EXECUTION__*``)."""

    venue: str = "paper"
    """Which venue adapter: ``paper`` (in process), ``fix`` (settings in ``fix``) or ``rest``
    (settings in ``rest``)."""
    venue_name: str | None = None
    """The venue this Job D serves: the orders the routes table sends there, and the
    venue named in its fills (default: the adapter's name, ``paper`` or ``fix``).
    One Job D per venue name."""
    default_venue: bool = True
    """Also serve the orders no route names. In a deployment with several Job D, exactly
    one may say so (or every order no route names would go to each of them)."""
    max_future_skew_s: float | None = Field(default=60.0, gt=0)
    """A tick dated more than this ahead of the wall clock goes to dead_letters and
    never reaches the venue (the paper venue would fill at it); None: no check."""
    paper_latency_ms: int = 0
    paper_fill_fraction: float | None = None
    paper_fee_bps: float = 0.0
    paper_history_ticks: int = 256
    """Ticks the paper venue keeps per symbol: an order that reaches it late is matched
    against those at or after its time, so it fills in event time as long as it comes
    within this many ticks of its symbol (larger: more memory, fills that do not depend
    on how far Job D's market data ran ahead of its orders)."""
    poll_ms: float = Field(default=2.0, gt=0)
    """How often the adapter is polled for execution reports (``TRADEFLOW_EXECUTION__POLL_MS``):
    what a venue's ack waits at most, beyond the venue, before Job D writes it. A poll
    takes what the adapter's I/O thread already queued: a few microseconds when there is
    nothing."""
    metrics_interval_s: float = 5.0
    """Window of each execution_metrics record."""
    drain_timeout_s: float = 10.0
    """At the end of a bounded run, how long to wait for the venue to answer."""
    reconcile_s: float = 30.0
    """How often Job D asks the venue about every order it believes open (0: never);
    a venue fill we never saw then raises VENUE_RECONCILIATION."""

    @property
    def served_venue(self) -> str:
        """Return the name of the venue this Job D serves."""
        return self.venue_name or self.venue


class ConsoleSettings(_Section):
    """The operator console, ``tradeflow console`` (env ``TRADEFLOW_CONSOLE__*``)."""

    host: str = "127.0.0.1"
    """Address the console binds; any other than loopback needs ``token`` set."""
    port: int = 8765
    token: SecretStr | None = None
    """Token that control changes must carry (header ``X-Console-Token``). Unset: a new
    one is made and printed at each start-up (loopback only)."""
    refresh_ms: int = 100
    """How often the console reads the streams for changes."""
    push_ms: int = 100
    """A page gets at most one update this often (what changed meanwhile is merged into it)."""
    metrics: tuple[str, ...] = ()
    """Metrics endpoints (``HOST:PORT``) of the jobs, for the health panel and to tell
    when a job has read a control change (``TRADEFLOW_CONSOLE__METRICS='["127.0.0.1:9101"]'``)."""


class Settings(BaseSettings):
    """All tradeflow settings. Unknown ``TRADEFLOW_*`` keys in a .env file are rejected."""

    model_config = SettingsConfigDict(
        env_prefix="TRADEFLOW_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="forbid",
        frozen=True,
    )

    profile: Profile = Profile.LOCAL
    """Data plane for every stream (``TRADEFLOW_PROFILE``): local, kafka or fluss."""
    stream_profiles: dict[str, Profile] = Field(default_factory=dict)
    """Per-stream override of the profile (``TRADEFLOW_STREAM_PROFILES='{"market_data":"kafka"}'``)."""
    stream_names: dict[str, str] = Field(default_factory=dict)
    """Physical name per logical stream, where it differs (topic or table name)."""
    data_dir: Path = Path("data")
    """Embedded store directory for the local profile (``TRADEFLOW_DATA_DIR``)."""
    partitions: int = 2
    """Partitions of each log stream in the embedded store."""
    follow: bool = False
    """Sources keep waiting for new records at the end of a stream (a live job), instead
    of stopping there once the stream is closed by its writer."""
    source_partitions: tuple[int, ...] | None = None
    """Read only these partitions of every log stream (``TRADEFLOW_SOURCE_PARTITIONS='[0]'``):
    run one independent process per subset to scale a job keyed like its input (Job A by
    symbol) without a Bytewax cluster. Tables are always read whole. None: all."""
    shard: str | None = None
    """Run as shard ``I/N`` of the job (``TRADEFLOW_SHARD=1/4``, ``tradeflow run JOB --shard 1/4``):
    read only the partitions ``p % N == I`` of the job's keyed inputs (``connectors.sharding``),
    with a recovery store of its own. None: unsharded (``0/1``)."""
    until_end: bool = False
    """Sources stop at the end each partition has when the flow starts, closed or not
    (``TRADEFLOW_UNTIL_END``): the offline catch-up run of ``tradeflow reshard``."""
    batch_size: int = 500
    """Records a source partition hands to Bytewax at most per poll."""
    event_time: bool = False
    """Event-time mode (``TRADEFLOW_EVENT_TIME``): the feed and Jobs B and D write ``progress``
    rows, and Job C applies each account's inputs in event-time order up to what every
    producer of ``portfolio.await_progress`` has passed, so a bounded run decides the same
    whatever the timing (``operators.eventtime``). For backtests and bounded runs."""
    replay_window: int = Field(default=10_000, ge=0)
    """Per partition, how many of the newest records of a stream with ids a sink reads back
    when its job starts, so that a restarted job does not write what it had written before
    the crash again (``connectors.replays``; Kafka and Fluss, the embedded store keeps ids
    by itself; ``TRADEFLOW_REPLAY_WINDOW``). 0: off (consumers still drop copies by id)."""
    poll_interval_ms: int = 50
    """How long a source at the end of a quiet stream waits before polling again
    (``TRADEFLOW_POLL_INTERVAL_MS``; see ``connectors.base.Polling``)."""
    poll_busy_ms: float = Field(default=1.0, gt=0)
    """How long a source at the end of a live stream waits (``TRADEFLOW_POLL_BUSY_MS``): the
    pick-up latency of a hop while records keep coming."""
    poll_busy_for_ms: int = Field(default=1000, ge=0)
    """How long after its last record a source keeps polling every ``poll_busy_ms``
    (``TRADEFLOW_POLL_BUSY_FOR_MS``; 0: always ``poll_interval_ms``)."""
    gc_thresholds: tuple[int, int, int] | None = JOB_GC_THRESHOLDS
    """The garbage collector's thresholds in a job process (``TRADEFLOW_GC_THRESHOLDS='[700,10,10]'``
    for Python's defaults; see ``connectors.runtime``); None leaves them as they are."""
    kafka: KafkaSettings = KafkaSettings()
    fluss: FlussSettings = FlussSettings()
    indicators: IndicatorSettings = IndicatorSettings()
    portfolio: PortfolioSettings = PortfolioSettings()
    metrics_port: int | None = None
    """Serve Prometheus metrics on 127.0.0.1:<port> (``TRADEFLOW_METRICS_PORT``); off if unset."""
    metrics_host: str = "127.0.0.1"
    """Address the metrics endpoint binds (``TRADEFLOW_METRICS_HOST``; ``0.0.0.0`` in a pod, for
    the readiness probe and Prometheus)."""
    execution: ExecutionSettings = ExecutionSettings()
    fix: FixSettings = FixSettings()
    """FIX session of Job D's ``fix`` venue (``TRADEFLOW_FIX__HOST``, ``__PORT``...)."""
    rest: RestSettings = RestSettings()
    """REST/WebSocket API of Job D's ``rest`` venue (``TRADEFLOW_REST__BASE_URL``, ``__SECRET_FILE``...)."""
    console: ConsoleSettings = ConsoleSettings()

    @field_validator("shard")
    @classmethod
    def _shard_is_i_of_n(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        try:
            return str(Shard.parse(v))
        except ShardError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _one_way_to_split(self) -> Settings:
        if self.shard is not None and self.source_partitions is not None:
            raise ValueError(
                "TRADEFLOW_SHARD and TRADEFLOW_SOURCE_PARTITIONS exclude each other: a shard "
                "picks its partitions itself"
            )
        return self

    @property
    def shard_of_job(self) -> Shard:
        """Return this process's shard (``0/1`` when unsharded)."""
        return UNSHARDED if self.shard is None else Shard.parse(self.shard)

    def profile_for(self, stream: str) -> Profile:
        """Return the profile a stream lives on (its override, else the global one)."""
        return self.stream_profiles.get(stream, self.profile)

    def physical_name(self, stream: str) -> str:
        """Return the topic/table name of a logical stream."""
        return self.stream_names.get(stream, stream)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (and .env), with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]


__all__ = [
    "ConsoleSettings",
    "ExecutionSettings",
    "FixSettings",
    "FlussSettings",
    "IndicatorSettings",
    "KafkaSettings",
    "PortfolioSettings",
    "Profile",
    "RestSettings",
    "Settings",
    "load_settings",
]
