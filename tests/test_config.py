"""Global settings: working_memory is bounded so block sizes stay finite."""

import math

import pytest

import imgcls
from imgcls.config import MAX_WORKING_MEMORY


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), 1e308, MAX_WORKING_MEMORY * 2])
def test_set_config_refuses_working_memory_out_of_range(bad):
    before = imgcls.get_config()
    with pytest.raises(ValueError, match="working_memory must be a number of MiB"):
        imgcls.set_config(working_memory=bad)
    assert imgcls.get_config() == before


def test_largest_working_memory_gives_finite_block_sizes():
    from imgcls.neighbors.search import _budget_bytes

    assert math.isfinite(_budget_bytes(MAX_WORKING_MEMORY))
    with imgcls.config_context(working_memory=MAX_WORKING_MEMORY):
        assert imgcls.get_config()["working_memory"] == MAX_WORKING_MEMORY
