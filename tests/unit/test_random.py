"""The Random agent: uniform actions in every action space, nothing learned, no networks accepted."""

import pytest
import torch
from tensordict import TensorDict

from tests.conftest import SPECS
from zoo.components import build
from zoo.spec import SpecError, load_spec


def test_random_agent_draws_uniform_actions_and_learns_nothing():
    components = build(load_spec(SPECS / "random.yaml", "random_cartpole"), seed=0)
    agent = components.agent
    data = next(iter(components.collector))
    assert data.shape == (8, 32) and agent.update(data, data.numel()) == {}
    torch.manual_seed(0)
    actions = agent.actor(TensorDict({"observation": torch.zeros(20000, 4)}, batch_size=[20000]))["action"]
    torch.testing.assert_close(torch.bincount(actions, minlength=2) / 20000., torch.tensor([0.5, 0.5]), atol=0.015,
                               rtol=0)
    assert agent.state_dict()["loss"] == {} and agent.optimizers == {}


def test_random_agent_stays_in_the_box():
    components = build(load_spec(SPECS / "random.yaml", "random_pendulum"), seed=0)
    action = next(iter(components.collector))["action"]
    assert action.min() >= -2.0 and action.max() <= 2.0 and action.std() > 0.9  # uniform on [-2, 2]: std 1.15


def test_random_agent_takes_no_network_settings():
    with pytest.raises(SpecError, match=r"agent.net.hid_layers: is not used by Random \(it has no networks\)"):
        load_spec(SPECS / "random.yaml", "random_cartpole", overrides=["agent.net.hid_layers=[32]"])
