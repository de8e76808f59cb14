"""SARSA targets: the next action actually taken, carried across batches; no bootstrap at termination; a
policy draw at a truncation's final observation."""

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from zoo.algos.sarsa import SARSALoss, sarsa_pairs

DRAWN = 7  # the stub policy's action, to tell draws from taken actions


def steps(actions, terminated_at=(), truncated_at=()) -> TensorDict:
    """One env; observation at step t is [t]; rewards 1."""
    t = len(actions)
    terminated, truncated = torch.zeros(1, t, 1, dtype=torch.bool), torch.zeros(1, t, 1, dtype=torch.bool)
    terminated[0, list(terminated_at)], truncated[0, list(truncated_at)] = True, True
    return TensorDict({"observation": torch.arange(t, dtype=torch.float32).view(1, t, 1),
                       "action": torch.tensor([actions]),
                       "next": {"observation": torch.arange(1, t + 1, dtype=torch.float32).view(1, t, 1),
                                "reward": torch.ones(1, t, 1), "terminated": terminated, "truncated": truncated}},
                      batch_size=[1, t])


def stub_policy(td):
    return td.set("action", torch.full(td.shape, DRAWN))


def test_next_action_is_the_one_taken_and_carries_over():
    first = steps([0, 1, 2, 3], truncated_at=[2])
    transitions, carry = sarsa_pairs(first, None, stub_policy)
    assert transitions["observation"].flatten().tolist() == [0, 1, 2]  # the last step waits for its a'
    # truncated at step 2: a' drawn at the final obs
    assert transitions["next", "action"].flatten().tolist() == [1, 2, DRAWN]
    second = steps([4, 5])
    transitions, carry = sarsa_pairs(second, carry, stub_policy)
    assert transitions["action"].flatten().tolist() == [3, 4]  # step 3 of the first batch, then step 0
    assert transitions["next", "action"].flatten().tolist() == [4, 5]
    assert carry["action"].flatten().tolist() == [5]


def test_sarsa_target_by_hand():
    q_net = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        q_net.weight.copy_(torch.tensor([[1.0], [2.0]]))  # Q(s, a) = (a + 1) * s
    batch = steps([0, 1, 1, 0], terminated_at=[1])
    transitions, _ = sarsa_pairs(batch, None, stub_policy)
    gamma = 0.5
    loss = SARSALoss(q_net, gamma=gamma)(transitions.reshape(-1))["loss"]
    q = [1 * 0, 2 * 1, 2 * 2]  # Q(s_t, a_t) for t = 0, 1, 2
    target = [1 + gamma * 2 * 1,  # a' = 1 at s' = 1
              1.0,  # terminated: no bootstrap
              1 + gamma * 1 * 3]  # a' = 0 at s' = 3
    assert loss.item() == pytest.approx(sum((a - b) ** 2 for a, b in zip(q, target, strict=True)) / 3)
