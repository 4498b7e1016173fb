"""weir.testing gives a user's test an isolated home and a real stack."""

from __future__ import annotations

import os

from weir import flow, task
from weir.client import WeirClient
from weir.client.types import FlowRunFilter
from weir.testing import weir_test_harness


@task
def double(x: int) -> int:
    return 2 * x


@flow
def harnessed(x: int) -> int:
    return double(x)


def test_harness_runs_flows_against_a_private_stack() -> None:
    before = os.environ.get("WEIR_API_ADDRESS")
    with weir_test_harness() as settings:
        assert harnessed(21) == 42
        with WeirClient(settings.api_address) as client:
            runs = client.list_flow_runs(FlowRunFilter(flow_names=("harnessed",))).items
        assert [r.state.type.value for r in runs] == ["COMPLETED"]
        home = settings.home
    assert os.environ.get("WEIR_API_ADDRESS") == before
    assert not home.exists()  # the temporary home is gone
