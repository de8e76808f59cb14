"""agent.algorithm.off_policy_correction: vtrace, against the IMPALA paper's V-trace computed by hand."""

import math

import pytest
import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torch.distributions import Categorical
from torchrl.modules import ProbabilisticActor

from tests.conftest import SPECS
from tests.unit.test_policy_gradient import GAMMA, VALUES, batch, value_reader
from zoo.algos.actor_critic import TARGET_LOG_PROB, make_advantage_module, make_vtrace
from zoo.components import build
from zoo.spec import SpecError, load_spec

PI = [0.25, 0.75]  # the learner's policy, the same in every state
ACTIONS = [1, 0, 1, 1]
MU = [0.5, 0.5, 0.9, 0.25]  # the behaviour policy's probability of each taken action


class FixedLogits(nn.Module):
    def __init__(self):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(PI).log())

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*observation.shape[:-1], 2)


def fixed_actor() -> ProbabilisticActor:
    return ProbabilisticActor(TensorDictModule(FixedLogits(), ["observation"], ["logits"]), in_keys=["logits"],
                              distribution_class=Categorical, return_log_prob=True)


def lagged_batch(mu: list[float]):
    data = batch()  # step 1 terminates, step 3 is truncated; V(obs) = 10, 20, 30, 40; V(next obs) = 20, 99, 40, 50
    data["action"] = torch.tensor(ACTIONS).reshape(1, 4)
    data["action_log_prob"] = torch.tensor(mu).log().reshape(1, 4)
    return data


def test_vtrace_by_hand_with_terminated_and_truncated_steps():
    data = lagged_batch(MU)
    make_vtrace(GAMMA, fixed_actor(), value_reader())(data)
    rho = [min(PI[a] / m, 1.0) for a, m in zip(ACTIONS, MU, strict=True)]  # c clipped at 1 as well: c = rho here
    # deltas bootstrap through the truncation (step 3 from V(next) = 50), not through the termination (step 1)
    delta = [rho[0] * (1 + GAMMA * 20 - 10), rho[1] * (2 - 20), rho[2] * (3 + GAMMA * 40 - 30),
             rho[3] * (4 + GAMMA * 50 - 40)]
    # v_s - V(x_s) = delta_s + gamma c_s (v_{s+1} - V(x_{s+1})), cut at each done: steps 0-1 and 2-3 apart
    vs = [VALUES[0] + delta[0] + GAMMA * rho[0] * delta[1], VALUES[1] + delta[1],
          VALUES[2] + delta[2] + GAMMA * rho[2] * delta[3], VALUES[3] + delta[3]]
    advantage = [rho[0] * (1 + GAMMA * vs[1] - 10), rho[1] * (2 - 20), rho[2] * (3 + GAMMA * vs[3] - 30),
                 rho[3] * (4 + GAMMA * 50 - 40)]
    assert data["value_target"].flatten().tolist() == pytest.approx(vs, rel=1e-5)
    assert data["advantage"].flatten().tolist() == pytest.approx(advantage, rel=1e-5)
    assert data[TARGET_LOG_PROB].flatten().tolist() == pytest.approx([math.log(PI[a]) for a in ACTIONS], rel=1e-5)


def test_vtrace_on_policy_equals_the_nstep_returns():
    """With no policy lag (mu = pi) every ratio is 1: V-trace's targets are A2C's n-step returns."""
    data, reference = lagged_batch([PI[a] for a in ACTIONS]), batch()
    make_vtrace(GAMMA, fixed_actor(), value_reader())(data)
    make_advantage_module(GAMMA, None, value_reader())(reference)
    for key in ("value_target", "advantage"):
        assert data[key].flatten().tolist() == pytest.approx(reference[key].flatten().tolist(), rel=1e-5)


def test_ppo_vtrace_clips_the_ratio_against_the_learners_policy():
    """IMPALA-style PPO: after V-trace the batch's reference log-probs are the learner's, not the behaviour's."""
    spec = load_spec(SPECS / "ppo_cartpole.yaml", None, [
        "agent.algorithm.off_policy_correction=vtrace", "agent.algorithm.lam=0.95", "env.num_envs=2",
        "agent.algorithm.time_horizon=8", "agent.algorithm.minibatch_size=16", "agent.algorithm.training_epoch=1"])
    components = build(spec)
    try:
        data = next(iter(components.collector))
        behaviour = data["action_log_prob"].clone()
        with torch.no_grad():  # the learner moved on since the batch was collected
            for p in components.agent.actor.parameters():
                p.add_(0.5)
        components.agent.update(data, data.numel())
        assert torch.equal(data["action_log_prob"], data[TARGET_LOG_PROB])
        assert not torch.allclose(data["action_log_prob"], behaviour)
    finally:
        components.close()


@pytest.mark.parametrize(("spec_file", "overrides", "field"), [
    ("a2c_gae_cartpole.yaml", [], "agent.algorithm.lam"),  # GAE's lambda has no place in V-trace's traces
    ("ppo_cartpole.yaml", [], "agent.algorithm.lam"),  # its lam 0.8 is set but unused
    ("ppo_lstm_cartpole_novel.yaml", [], "agent.algorithm.off_policy_correction"),
])
def test_vtrace_refuses_settings_it_cannot_honour(spec_file, overrides, field):
    spec = load_spec(SPECS / spec_file, None, ["agent.algorithm.off_policy_correction=vtrace", *overrides])
    with pytest.raises(SpecError) as err:
        build(spec)
    assert err.value.where == field and "\n" not in str(err.value)
