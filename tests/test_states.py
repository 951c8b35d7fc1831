"""Run states: one type, its moves in one table, and the worker's real runs keep to it."""

import pytest

from vmonf.studio import states
from vmonf.studio.states import RunState as S


def test_every_state_has_its_moves_and_ended_runs_stay_ended():
    assert set(states.TRANSITIONS) == set(S)
    for end in states.ENDED:
        assert states.TRANSITIONS[end] == {end}
    assert states.allowed("running", "paused") and not states.allowed("stopped", "running")
    assert not states.allowed("created", "running")  # a run always starts through "starting"
    with pytest.raises(ValueError):
        S("sleeping")


def test_the_groups_the_ui_asks_about_partition_sensibly():
    assert states.TRAINING <= states.ACTIVE and not (states.ACTIVE & states.ENDED)
    assert states.RESUMABLE <= states.HALTED and not (states.HALTED & states.ACTIVE)
