"""Run one job on the local and on the kafka profile with the same input; compare.

Adding "job X on kafka equals job X on local" is one small test::

    def test_job_x_on_kafka_matches_local(kafka_broker, tmp_path):
        inputs = {"trade_signals": signals, "accounts": accounts}
        runs = run_on_both(flows.portfolio.build_flow, kafka_broker, tmp_path, inputs,
                           outputs=["validated_orders", "dead_letters"])
        assert_same_by_id(runs, "validated_orders", lambda r: r.order_id)

Each kafka run gets its own topic prefix (fresh topics on the shared broker) and each
local run its own data directory. Inputs are written with the profile's writer and
then closed, so bounded flows stop at the end. The profile-neutral helpers
(``assert_same_by_id``, ``feed``, ``read_stream``, ...) are in ``tests/integration/profiles.py``.
"""

from __future__ import annotations

from functools import partial

from tests.integration import profiles

unique_prefix = partial(profiles.fresh_namespace, "kafka")
"""``unique_prefix(label="t")``: a fresh topic prefix such as ``t3f9a1c.``."""

kafka_settings = partial(profiles.server_settings, "kafka")
"""``kafka_settings(broker, data_dir, *, namespace=None, **overrides)``: settings of the
kafka profile on ``broker`` with fresh topics (or those under the prefix ``namespace``)."""

kafka_env = profiles.profile_env
"""Environment for a subprocess (``python -m bytewax.run ...``) with these settings."""


run_on_both = partial(profiles.run_on_both, "kafka", kafka_settings)
"""``run_on_both(build, broker, tmp_path, inputs, outputs, *, workers=1, **overrides)``:
feed the same inputs to the job on both profiles, run it, read its outputs."""
