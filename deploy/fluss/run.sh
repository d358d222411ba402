#!/bin/sh
# One server of an Apache Fluss cluster in a container, by role (the first argument):
#   zookeeper | coordinator | tablet-server
# with the settings tradeflow.infra.fluss.FlussCluster writes (single tablet server,
# replication 1, 10 s ZooKeeper sessions, 200 ms high-watermark checkpoints). Servers
# talk to each other on the FLUSS listener under their compose service names; with
# $FLUSS_CLIENT_PORT a second listener, CLIENT, is advertised as 127.0.0.1:<port> for
# clients on the host (the port published there). Data lives in /home/server/data (a
# volume per server); remote.data.dir is /home/server/remote, one volume the coordinator
# and the tablet server share.
set -eu
role="${1:?usage: run.sh zookeeper|coordinator|tablet-server}"
data=/home/server/data
cp="/opt/server/lib/*"
log="-Dlog4j.configurationFile=/opt/server/conf/log4j2.properties"
# what bin/fluss-daemon.sh passes on Java 17 (Arrow needs java.nio opened)
jvm="-XX:+IgnoreUnrecognizedVMOptions --add-opens=java.base/java.nio=org.apache.arrow.memory.core,ALL-UNNAMED
     -Dlog4j.shutdownHookEnabled=false -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true"

if [ "$role" = zookeeper ]; then
  mkdir -p "$data/zookeeper"
  cat > "$data/zookeeper.properties" <<PROPS
dataDir=$data/zookeeper
clientPort=2181
maxClientCnxns=0
admin.enableServer=false
tickTime=2000
autopurge.purgeInterval=1
PROPS
  exec java ${FLUSS_HEAP:--Xmx96m} -XX:+UseSerialGC $log $jvm -cp "$cp" \
    org.apache.fluss.shaded.zookeeper3.org.apache.zookeeper.server.quorum.QuorumPeerMain "$data/zookeeper.properties"
fi

case "$role" in
  coordinator) port=9123; host="${FLUSS_ADVERTISED_HOST:-coordinator}"; main=org.apache.fluss.server.coordinator.CoordinatorServer ;;
  tablet-server) port=9124; host="${FLUSS_ADVERTISED_HOST:-tablet-server}"; main=org.apache.fluss.server.tablet.TabletServer ;;
  *) echo "run.sh: unknown role $role (zookeeper, coordinator or tablet-server)" >&2; exit 2 ;;
esac
bind="FLUSS://0.0.0.0:$port"
advertised="FLUSS://$host:$port"
if [ -n "${FLUSS_CLIENT_PORT:-}" ]; then  # for clients on the host
  bind="$bind,CLIENT://0.0.0.0:$FLUSS_CLIENT_PORT"
  advertised="$advertised,CLIENT://127.0.0.1:$FLUSS_CLIENT_PORT"
fi
mkdir -p "$data/$role" "$data/store"
cat > "$data/$role/server.yaml" <<YAML
zookeeper.address: ${FLUSS_ZOOKEEPER:-zookeeper:2181}
bind.listeners: $bind
advertised.listeners: $advertised
internal.listener.name: FLUSS
tablet-server.id: 0
data.dir: $data/store
remote.data.dir: /home/server/remote
default.bucket.number: ${FLUSS_BUCKETS:-4}
default.replication.factor: 1
zookeeper.client.session-timeout: 10 s
log.replica.high-watermark.checkpoint-interval: 200 ms
tablet-server.controlled-shutdown.max-retries: 1
YAML
exec java ${FLUSS_HEAP:--Xmx384m} -XX:+UseG1GC $log $jvm -cp "$cp" "$main" --configDir "$data/$role"
