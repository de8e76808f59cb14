"""SIL / PPO-SIL: the self-imitation loss against a hand-computed oracle, the replay of finished episodes with
their returns, prioritized by the clipped advantage, and the spec fields."""

import math

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torchrl.envs import ExplorationType, set_exploration_type
from torchrl.objectives import LossModule

from tests.conftest import SPECS
from zoo.algos.sil import SILLoss
from zoo.components import build
from zoo.spec import SpecError, field_docs, load_spec

TINY = ["env.num_envs=4", "agent.net.hid_layers=[8]", "agent.memory.batch_size=16", "meta.seed=2"]


class FixedActor(nn.Module):
    """A policy whose log-probabilities are a parameter per row (so the oracle is readable)."""

    def __init__(self, log_probs: torch.Tensor):
        super().__init__()
        self.log_probs = nn.Parameter(log_probs)

    def get_dist(self, tensordict):
        log_probs = self.log_probs

        class Dist:
            def log_prob(self, action):
                return log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)

        return Dist()


class FixedCritic(nn.Module):
    in_keys = ["observation"]

    def __init__(self, values: torch.Tensor):
        super().__init__()
        self.values = nn.Parameter(values)

    def forward(self, tensordict):
        tensordict.set("state_value", self.values.unsqueeze(-1))
        return tensordict


def test_sil_loss_equals_the_hand_computed_oracle():
    log_probs = torch.log(torch.tensor([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]]))
    actor, critic = FixedActor(log_probs.clone()), FixedCritic(torch.tensor([1.0, 3.0, 0.5]))
    batch = TensorDict({"observation": torch.zeros(3, 1), "action": torch.tensor([0, 1, 1]),
                        "return": torch.tensor([[2.0], [1.0], [4.0]])}, batch_size=[3])
    loss = SILLoss(actor, critic, policy_coef=1.0, value_coef=0.5)
    assert isinstance(loss, LossModule)
    out = loss(batch)
    # clipped advantages max(R - V, 0): [1, 0, 3.5]; -log pi(a|s): [log 2, -log 0.8, -log 0.1]
    policy = (math.log(2) * 1 + 0 + -math.log(0.1) * 3.5) / 3
    value = 0.5 * (0.5 * 1 + 0 + 0.5 * 3.5 ** 2) / 3
    torch.testing.assert_close(out["loss_sil_policy"], torch.tensor(policy))
    torch.testing.assert_close(out["loss_sil_value"], torch.tensor(value))
    torch.testing.assert_close(out["sil_advantage"], torch.tensor([1.0, 0.0, 3.5]))
    (out["loss_sil_policy"] + out["loss_sil_value"]).backward()
    # the policy term does not push the value (advantage held constant); rows with R < V teach nothing
    torch.testing.assert_close(critic.values.grad, -0.5 * torch.tensor([1.0, 0.0, 3.5]) / 3)
    assert actor.log_probs.grad[1].abs().sum() == 0
    weighted = loss(batch.set("priority_weight", torch.tensor([1.0, 1.0, 0.0])))
    torch.testing.assert_close(weighted["loss_sil_policy"], torch.tensor(math.log(2) / 3))


@pytest.mark.parametrize("spec_file", ["sil_cartpole.yaml", "ppo_sil_lunar.yaml"])
def test_finished_episodes_enter_the_replay_with_their_returns_and_priorities(spec_file):
    overrides = [*TINY, "agent.algorithm.time_horizon=64"] + (
        ["agent.algorithm.minibatch_size=64"] if spec_file.startswith("ppo") else [])
    components = build(load_spec(SPECS / spec_file, None, overrides))
    agent, collector = components.agent, iter(components.collector)
    with set_exploration_type(ExplorationType.RANDOM):
        data = next(collector)
    metrics = agent.update(data, data.numel())
    stored = agent.buffer[:]
    ends = data["next", "done"].squeeze(-1)
    assert len(agent.buffer) == sum(int(row.nonzero().max()) + 1 for row in ends if row.any())
    assert {"observation", "action", "return"} <= set(stored.keys()) and "loss_sil_policy" in metrics
    # the last step of each stored episode has its own reward as return
    first = int(ends.any(-1).nonzero()[0])  # the first env with an episode end; its steps are stored first
    before = sum(int(row.nonzero().max()) + 1 for row in ends[:first] if row.any())
    episode = data[first, : int(ends[first].nonzero()[0]) + 1]
    torch.testing.assert_close(stored["return"][before + len(episode) - 1], episode["next", "reward"][-1])
    discounts = components.spec.agent.algorithm.gamma ** torch.arange(len(episode))
    expected = (discounts * episode["next", "reward"].squeeze(-1)).sum()
    torch.testing.assert_close(stored["return"][before], expected[None])
    sampler = agent.buffer.sampler
    priorities = torch.tensor([sampler._sum_tree[i] for i in range(len(agent.buffer))])
    assert (priorities > 0).all() and priorities.unique().numel() > 1  # updated from the clipped advantages


def test_state_round_trips_with_the_waiting_steps():
    components = build(load_spec(SPECS / "sil_cartpole.yaml", None, TINY))
    with set_exploration_type(ExplorationType.RANDOM):
        data = next(iter(components.collector))
    components.agent.update(data, data.numel())
    state = components.agent.state_dict()
    other = build(load_spec(SPECS / "sil_cartpole.yaml", None, TINY)).agent
    other.load_state_dict(state)
    assert other.on_policy.num_updates == components.agent.on_policy.num_updates
    assert [len(w) for w in other.carry.waiting] == [len(w) for w in components.agent.carry.waiting]


@pytest.mark.parametrize(("spec_file", "overrides", "field", "fragment"), [
    ("a2c_gae_cartpole.yaml", ["agent.memory.sil_replay_name=Replay"], "agent.memory.sil_replay_name",
     "not used by OnPolicyBatchReplay"),
    ("sil_cartpole.yaml", ["agent.memory.sil_replay_name=Replay"], "agent.memory.beta", "or Replay"),
    ("sil_cartpole.yaml", ["agent.memory.sil_replay_name=OnPolicyReplay"], "agent.memory.sil_replay_name",
     "allowed: Replay, PrioritizedReplay"),
    ("sil_cartpole.yaml", ["agent.algorithm.training_iter=0"], "agent.algorithm.training_iter", "out of range"),
    ("ppo_sil_lunar.yaml", ["agent.algorithm.sil_val_loss_coef=-1"], "agent.algorithm.sil_val_loss_coef",
     "out of range"),
    ("sil_cartpole.yaml", ["agent.net.type=RecurrentNet"], "agent.net.type", "SIL does not build 'RecurrentNet'"),
])
def test_bad_sil_fields_are_one_line_spec_errors(spec_file, overrides, field, fragment):
    with pytest.raises(SpecError) as info:
        load_spec(SPECS / spec_file, None, overrides)
    assert info.value.where == field and fragment in str(info.value), str(info.value)


def test_sil_fields_are_documented():
    docs = {row[0]: row[2] for row in field_docs()}
    for name in ("SIL", "PPOSIL"):
        for key in ("sil_policy_loss_coef", "sil_val_loss_coef", "training_iter", "training_batch_iter"):
            assert docs[f"agent.algorithm[{name}].{key}"]
    assert "self-imitation" in docs["agent.memory.sil_replay_name"]
