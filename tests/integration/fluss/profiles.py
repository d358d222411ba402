"""Run one job on the local and on the fluss profile with the same input; compare.

"Job X on fluss equals job X on local" is one small test::

    def test_job_x_on_fluss_matches_local(fluss_cluster, tmp_path):
        runs = run_on_both(flows.x.build_flow, fluss_cluster, tmp_path, inputs, outputs=[...])
        assert_same_by_id(runs, "validated_orders", lambda r: r.order_id)

Each fluss run gets its own database (fresh tables on the shared cluster) and each
local run its own data directory. Inputs are written with the profile's writer and
then closed, so bounded flows stop at the end. The profile-neutral helpers
(``assert_same_by_id``, ``feed``, ``read_stream``, ...) are in ``tests/integration/profiles.py``.
"""

from __future__ import annotations

from functools import partial

from connectors.registry import Connectors
from connectors.settings import Settings
from schemas import Record, decode, spec
from tests.integration import profiles

unique_database = partial(profiles.fresh_namespace, "fluss")
"""``unique_database(label="t")``: a fresh database name such as ``t3f9a1c``."""

fluss_settings = partial(profiles.server_settings, "fluss")
"""``fluss_settings(cluster, data_dir, *, namespace=None, **overrides)``: settings of the
fluss profile on ``cluster`` with a fresh database (or the database ``namespace``)."""

fluss_env = profiles.profile_env
"""Environment for a subprocess (``python -m bytewax.run ...``) with these settings."""


def latest_rows(settings: Settings, stream: str) -> dict[str, Record]:
    """Return the current row per key of a PK table, decoded (the reader's ``scan_latest``)."""
    model = spec(stream).model
    reader = Connectors(settings).reader(stream)
    try:
        return {key: decode(model, value) for key, value in reader.scan_latest()}
    finally:
        reader.close()


run_on_both = partial(profiles.run_on_both, "fluss", fluss_settings)
"""``run_on_both(build, cluster, tmp_path, inputs, outputs, *, workers=1, **overrides)``:
feed the same inputs to the job on both profiles, run it, read its outputs."""

run_phases_on_both = partial(profiles.run_phases_on_both, "fluss", fluss_settings)
"""``run_phases_on_both(build, cluster, tmp_path, phases, outputs, **overrides)``: run a
job once per phase on both profiles, resuming from Bytewax recovery each time."""
