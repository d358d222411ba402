"""Least privilege on Kafka: which streams each job may read and write, as broker ACLs.

Each job runs as its own principal (a SCRAM user) that may read its inputs and
write its outputs, nothing else: Job B cannot write validated_orders (only Job C
can), only Job D writes venue_fills. Topics are created by the operator (an admin
principal), never by a job, so no job holds CREATE. ``job_acls`` turns the policy
into ``AclBinding``s for a topic prefix; ``grant`` and ``create_scram_user`` apply
them with an admin client (``tradeflow.infra.kafka`` does it for the secured test
broker; docs/security.md shows the ``kafka-acls`` equivalent).

Consumers are assign-only and never commit, but librdkafka still names a group
(``tradeflow-unused-<topic>``, ``connectors.kafka.config.consumer_config``), so each
reader may also READ the group of each topic it reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

from connectors.base import ConnectorError
from connectors.kafka.config import METADATA_TIMEOUT_S, admin_config, topic_name
from connectors.kafka.settings import KafkaSettings


@dataclass(frozen=True)
class StreamAccess:
    """The logical streams a job reads and writes."""

    reads: frozenset[str]
    writes: frozenset[str]


def _access(reads: Iterable[str], writes: Iterable[str]) -> StreamAccess:
    return StreamAccess(frozenset(reads), frozenset(writes))


JOB_ACCESS: Mapping[str, StreamAccess] = {
    "indicators": _access(["market_data", "instruments"], ["sma_wide", "dead_letters"]),
    "strategy": _access(["sma_wide", "strategy_config", "control"],
                        ["trade_signals", "dead_letters", "progress"]),
    "portfolio_risk": _access(
        ["trade_signals", "venue_fills", "accounts", "symbol_limits", "control", "market_data",
         "instruments", "routes", "venues", "progress"],
        ["risk_decisions", "validated_orders", "risk_events", "orders", "positions_state",
         "portfolio_state", "dead_letters", "risk_journal", "shadow_decisions"],
    ),
    "execution": _access(
        ["validated_orders", "control", "market_data", "accounts"],
        ["venue_fills", "execution_metrics", "risk_events", "control", "venues", "dead_letters",
         "progress"],
    ),
}
"""Per job (the flow module's name), what it reads and writes. A job also reads what it
writes (sinks and the journal look at what they already wrote). ``progress``: event-time
mode (Jobs B and D promise, Job C reads; ``operators.eventtime``)."""

GROUP_PREFIX = "tradeflow-unused-"


def job_acls(
    job: str, user: str, kafka: KafkaSettings, physical: Mapping[str, str] | None = None
) -> list[AclBinding]:
    """Return the ALLOW bindings of ``User:<user>`` running ``job`` on ``kafka``'s topics."""
    access = JOB_ACCESS[job]
    names = physical or {}
    principal = f"User:{user}"

    def binding(rtype: ResourceType, name: str, op: AclOperation) -> AclBinding:
        return AclBinding(rtype, name, ResourcePatternType.LITERAL, principal, "*", op,
                          AclPermissionType.ALLOW)

    out: list[AclBinding] = []
    for stream in sorted(access.reads | access.writes):
        topic = topic_name(kafka, names.get(stream, stream))
        out.append(binding(ResourceType.TOPIC, topic, AclOperation.READ))
        out.append(binding(ResourceType.GROUP, f"{GROUP_PREFIX}{topic}", AclOperation.READ))
        if stream in access.writes:
            out.append(binding(ResourceType.TOPIC, topic, AclOperation.WRITE))
    return out


def _admin(admin: KafkaSettings) -> AdminClient:
    return AdminClient(admin_config(admin))


def grant(admin: KafkaSettings, bindings: list[AclBinding]) -> None:
    """Create ACL bindings with the admin principal's client."""
    client = _admin(admin)  # kept referenced until the futures are done
    futures = client.create_acls(bindings, request_timeout=METADATA_TIMEOUT_S)
    for acl, fut in futures.items():
        try:
            fut.result(timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            raise ConnectorError(f"cannot create ACL {acl}: {exc}") from None


def create_scram_user(admin: KafkaSettings, user: str, password: SecretStr, iterations: int = 8192) -> None:
    """Create (or reset) a SCRAM-SHA-512 user through the broker's admin API."""
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, iterations),
        password.get_secret_value().encode(),
    )
    client = _admin(admin)  # kept referenced until the futures are done
    futures = client.alter_user_scram_credentials([upsert], request_timeout=METADATA_TIMEOUT_S)
    for name, fut in futures.items():
        try:
            fut.result(timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            raise ConnectorError(f"cannot create SCRAM user {name!r}: {exc}") from None
