"""The test broker's random KRaft cluster id is always one kafka-storage accepts."""

from __future__ import annotations

import base64

from tradeflow.infra.kafka import _random_cluster_id


def test_cluster_ids_never_start_with_a_dash_and_are_16_bytes() -> None:
    ids = [_random_cluster_id() for _ in range(5000)]  # about 80 would start with '-' unchecked
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
