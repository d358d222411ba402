#!/bin/sh
# Kafka in a container: one combined KRaft broker+controller, the properties
# tradeflow.infra.kafka.KafkaBroker writes (single node, replication 1, no topic
# auto-creation), listening on 0.0.0.0:9092 inside the container and advertised as
# $KAFKA_ADVERTISED_HOST:9092 (and, with $KAFKA_EXTERNAL_PORT, on that port advertised as
# 127.0.0.1 for clients on the host). The log directory ($KAFKA_DATA, a volume) is formatted once.
set -eu
data="${KAFKA_DATA:-/home/server/data}"
props=/home/server/server.properties
mkdir -p "$data"
listeners="PLAINTEXT://0.0.0.0:9092,CONTROLLER://127.0.0.1:9093"
advertised="PLAINTEXT://${KAFKA_ADVERTISED_HOST:-kafka}:9092"
protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
if [ -n "${KAFKA_EXTERNAL_PORT:-}" ]; then  # for clients on the host (the port published there)
  listeners="$listeners,EXTERNAL://0.0.0.0:$KAFKA_EXTERNAL_PORT"
  advertised="$advertised,EXTERNAL://127.0.0.1:$KAFKA_EXTERNAL_PORT"
  protocols="$protocols,EXTERNAL:PLAINTEXT"
fi
cat > "$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:9093
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
num.network.threads=2
num.io.threads=2
log.cleaner.threads=1
PROPS
cp="/opt/server/lib/*"
log="-Dlog4j2.configurationFile=/opt/server/conf/log4j2.xml"
if [ ! -f "$data/meta.properties" ]; then
  java $log -cp "$cp" kafka.tools.StorageTool format -t "${KAFKA_CLUSTER_ID:-tradeflowcomposeAAAAAA}" \
    -c "$props" --standalone
fi
exec java ${KAFKA_HEAP:--Xmx512m} $log -cp "$cp" kafka.Kafka "$props"
