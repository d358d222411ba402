#!/bin/sh
# The QuickFIX/J venue in a container: io.tradeflow.venue.Main with venue.cfg (as
# tradeflow.infra.fix_venue.FixVenue starts it), its store, logs and audit log under
# /home/server/venue (a volume).
set -eu
mkdir -p /home/server/venue/store /home/server/venue/log
exec java ${VENUE_HEAP:--Xmx256m} -cp "/opt/server/lib/*" io.tradeflow.venue.Main /opt/server/conf/venue.cfg
