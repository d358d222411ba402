"""The settings, re-exported for the CLI layer and the docs (``tradeflow.settings``).

The composed model lives in ``connectors.settings`` (the lowest layer that every
user of it can import; DESIGN §1 "layers point one way"); each backend owns its own
model (``connectors.kafka.settings``, ``connectors.fluss.settings``,
``connectors.fix.settings``). Code below the ``tradeflow`` layer imports
``connectors.settings``, never this module.
"""

from connectors.settings import *  # noqa: F403 - this module is the re-export
from connectors.settings import __all__ as __all__
