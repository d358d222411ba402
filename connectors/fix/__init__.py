"""FIX 4.4 initiator on simplefix: session layer, file store, application layer, transport.

``session`` (the state machine, no sockets), ``store`` (what survives restarts),
``application`` (orders out, execution reports in), ``initiator`` (TCP thread with
reconnects), ``settings`` (``FixSettings``). The venue adapter built from them is
``connectors.venues.fix.FixVenue``.
"""

from connectors.fix.settings import FixSettings

__all__ = ["FixSettings"]
