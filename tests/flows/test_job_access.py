"""Every stream a job touches is one its Kafka principal is granted.

The secured broker (``connectors.kafka.acl``) refuses a job any topic outside
``JOB_ACCESS``; a flow that starts reading a new stream without a grant there works on
the open profiles and fails only on the secured one. This builds every flow on the
embedded store and records each stream the registry is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from bytewax.dataflow import Dataflow

from connectors.kafka.acl import JOB_ACCESS
from connectors.registry import Connectors
from connectors.settings import Settings
from flows import execution, indicators, portfolio_risk, strategy

BUILDERS: dict[str, Callable[[Settings], Dataflow]] = {
    "indicators": lambda s: indicators.build_flow(s),
    "strategy": lambda s: strategy.build_flow("sma_cross", s),
    "portfolio_risk": lambda s: portfolio_risk.build_flow(s),
    "execution": lambda s: execution.build_flow(s),
}


@pytest.mark.parametrize("event_time", [False, True], ids=["live", "event-time"])
@pytest.mark.parametrize("job", sorted(BUILDERS))
def test_a_job_touches_only_the_streams_its_principal_is_granted(
    job: str, event_time: bool, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(update={"event_time": event_time})
    touched: set[str] = set()
    resolve = Connectors._resolve

    def recording(self: Connectors, stream: str) -> Any:
        touched.add(stream)
        return resolve(self, stream)

    monkeypatch.setattr(Connectors, "_resolve", recording)
    BUILDERS[job](settings)
    access = JOB_ACCESS[job]
    assert touched, "the flow asked the registry for no stream at all"
    assert touched <= access.reads | access.writes, (
        f"{job} touches {sorted(touched - access.reads - access.writes)} without a grant in JOB_ACCESS"
    )
    assert set(JOB_ACCESS) == set(BUILDERS), "a job without this check"
