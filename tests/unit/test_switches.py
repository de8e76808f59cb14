"""SLM-Lab's algorithm switches, by hand: value-target normalization, symlog, percentile advantages (PPO, A2C);
the temperature's learning rate, clamp and annealing, and the annealed target entropy (SAC)."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from tests.conftest import SPECS
from tests.unit.test_policy_gradient import ppo_agent, ppo_batch
from tests.unit.test_sac import make_agent as make_sac_agent
from tests.unit.test_sac import make_batch
from zoo.algos.actor_critic import PercentileNormalizer, ReturnNormalizer, symlog
from zoo.algos.off_policy import spectral_normalized, state_action_ensemble
from zoo.components import build
from zoo.spec import SpecError, load_spec


def test_return_normalizer_merges_batches_and_divides_by_a_std_of_at_least_one():
    normalizer = ReturnNormalizer()
    normalizer.update(torch.tensor([1.0, 2.0, 3.0]))
    normalizer.update(torch.tensor([[40.0], [50.0]]))
    values = torch.tensor([1.0, 2.0, 3.0, 40.0, 50.0])
    assert normalizer.count == 5 and normalizer.mean.item() == pytest.approx(values.mean().item())
    assert normalizer.var.item() == pytest.approx(values.var(correction=0).item(), rel=1e-6)
    std = math.sqrt(values.var(correction=0).item())
    torch.testing.assert_close(normalizer(torch.tensor([10.0, -1000.0])), torch.tensor([10.0 / std, -10.0]))
    small = ReturnNormalizer()
    small.update(torch.tensor([0.1, 0.2]))  # std 0.05: divided by 1, not blown up
    torch.testing.assert_close(small(torch.tensor([0.3])), torch.tensor([0.3]))


def test_percentile_normalizer_divides_by_the_ema_of_the_5_to_95_percent_range():
    normalizer = PercentileNormalizer(decay=0.99)
    advantage = torch.arange(10001.0) * 100  # P5 = 50,000, P95 = 950,000
    out = normalizer(advantage)
    assert normalizer.low.item() == pytest.approx(500.0) and normalizer.high.item() == pytest.approx(9500.0)
    torch.testing.assert_close(out, advantage / 9000.0)
    tiny = PercentileNormalizer()
    torch.testing.assert_close(tiny(torch.tensor([0.5, -0.5])), torch.tensor([0.5, -0.5]))  # range < 1: unscaled


def test_symlog_compresses_symmetrically():
    torch.testing.assert_close(symlog(torch.tensor([0.0, math.e - 1, -(math.e - 1)])), torch.tensor([0.0, 1.0, -1.0]))


@pytest.mark.parametrize("switch", ["symlog", "normalize_v_targets"])
def test_ppo_value_loss_in_symlog_or_normalized_space(switch):
    agent = ppo_agent("ppo_cartpole.yaml", f"agent.algorithm.{switch}=true")
    batch = ppo_batch(agent)
    batch["value_target"] = batch["value_target"] * 30  # returns far from the predictions' scale
    loss = agent.loss
    if switch == "normalize_v_targets":
        loss.return_normalizer.update(batch["value_target"])
        std = loss.return_normalizer.var.sqrt().clamp_min(1.0)
        space = lambda x: (x / std).clamp(-10, 10)  # noqa: E731
    else:
        space = symlog
    with torch.no_grad():
        value = loss.nets.value(batch["observation"]).squeeze(-1)
    expected = loss.critic_coeff * (space(value) - space(batch["value_target"].squeeze(-1))).pow(2).mean()
    torch.testing.assert_close(loss(batch)["loss_critic"].detach(), expected)


def test_ppo_update_feeds_the_return_normalizer_each_batch_and_checkpoints_it():
    spec = load_spec(SPECS / "ppo_cartpole.yaml", overrides=[
        "env.num_envs=2", "agent.algorithm.time_horizon=16", "agent.algorithm.minibatch_size=8",
        "agent.algorithm.normalize_v_targets=true", "agent.algorithm.advantage_normalizer=percentile"])
    components = build(spec, seed=0)
    agent, data = components.agent, next(iter(components.collector))
    agent.update(data, data.numel())
    assert agent.loss.return_normalizer.count == 32
    torch.testing.assert_close(agent.loss.return_normalizer.mean, data["value_target"].mean())
    state = agent.state_dict()["loss"]
    assert {"return_normalizer.var", "percentile.low", "percentile.high"} <= set(state)
    assert state["percentile.high"] != 0  # the EMA moved over the minibatches


def test_percentile_needs_normalized_advantages():
    spec = load_spec(SPECS / "ppo_cartpole.yaml", overrides=["agent.algorithm.advantage_normalizer=percentile",
                                                            "agent.algorithm.normalize_advantage=false"])
    with pytest.raises(SpecError, match="agent.algorithm.advantage_normalizer: percentile needs"):
        build(spec, seed=0)


def test_a2c_value_loss_with_normalized_targets():
    spec = load_spec(SPECS / "a2c_gae_cartpole.yaml", overrides=["env.num_envs=2",
                                                                "agent.algorithm.normalize_v_targets=true"])
    components = build(spec, seed=0)
    agent, data = components.agent, next(iter(components.collector))
    with torch.no_grad():
        agent.advantage_module(data)
    data["value_target"] = data["value_target"] * 50
    agent.loss.return_normalizer.update(data["value_target"])
    std = agent.loss.return_normalizer.var.sqrt()
    assert std > 1
    with torch.no_grad():
        value = agent.advantage_module.value_network(data.clone())["state_value"]
        out = agent.loss(data)
    expected = agent.loss.critic_coeff * ((value / std).clamp(-10, 10) - (data["value_target"] / std).clamp(-10, 10)
                                          ).pow(2).mean()
    torch.testing.assert_close(out["loss_critic"], expected)
    before = agent.loss.return_normalizer.count.clone()
    agent.update(data, data.numel())
    assert agent.loss.return_normalizer.count == before + data.numel()
    assert "return_normalizer.m2" in agent.state_dict()["loss"]


# --------------------------------------------------------------------------------------------------------- SAC
def test_sac_alpha_lr_sets_the_temperature_optimizer_only():
    agent = make_sac_agent("agent.algorithm.alpha_lr=0.0003")
    assert agent.optimizers["alpha"].param_groups[0]["lr"] == 0.0003
    assert agent.optimizers["actor"].param_groups[0]["lr"] == agent.optimizers["critic"].param_groups[0]["lr"] != 0.0003


def test_sac_log_alpha_is_clamped_after_each_temperature_step():
    agent = make_sac_agent("agent.algorithm.log_alpha_min=-0.5", "agent.algorithm.log_alpha_max=-0.2",
                           "agent.algorithm.alpha_lr=10.0")
    batch = make_batch(16, 3, torch.rand(16, 1) * 4 - 2)
    for _ in range(3):  # lr 10: unclamped, log alpha would leave [-0.5, -0.2] at once
        agent.gradient_step(batch)
        assert -0.5 <= agent.loss.log_alpha.item() <= -0.2
    assert agent.loss.log_alpha.item() in (pytest.approx(-0.5), pytest.approx(-0.2))


def test_sac_fixed_alpha_anneals_linearly_to_zero():
    agent = make_sac_agent("agent.algorithm.fixed_alpha=true", "agent.algorithm.alpha_init=0.4",
                           "agent.algorithm.alpha_anneal_frames=1000")
    for frame, alpha in ((0, 0.4), (250, 0.3), (1000, 0.0), (5000, 0.0)):
        agent.anneal(frame)
        assert agent.loss.log_alpha.exp().item() == pytest.approx(alpha, abs=1e-7)


def test_discrete_sac_target_entropy_anneals_as_a_share_of_log_actions():
    agent = make_sac_agent("env.name=CartPole-v1", "agent.algorithm.entropy_anneal={start_ratio: 0.6, end_ratio: 0.2, "
                           "frames: 1000}")
    assert agent.loss.target_entropy.item() == pytest.approx(0.6 * math.log(2))
    agent.anneal(500)
    assert agent.loss.target_entropy.item() == pytest.approx(0.4 * math.log(2))
    agent.anneal(2000)
    assert agent.loss.target_entropy.item() == pytest.approx(0.2 * math.log(2))


@pytest.mark.parametrize(("overrides", "field"), [
    (["agent.algorithm.alpha_anneal_frames=100"], "alpha_anneal_frames"),
    (["agent.algorithm.fixed_alpha=true", "agent.algorithm.alpha_lr=0.001"], "alpha_lr"),
    (["agent.algorithm.log_alpha_min=1", "agent.algorithm.log_alpha_max=0"], "log_alpha_min"),
    (["agent.algorithm.entropy_anneal={frames: 100}"], "entropy_anneal"),  # continuous actions
])
def test_sac_temperature_switches_without_effect_are_spec_errors(overrides, field):
    with pytest.raises(SpecError, match=f"agent.algorithm.{field}"):
        make_sac_agent(*overrides)


def test_spectral_normalized_matches_torch_spectral_norm_and_converges_to_unit_norm():
    torch.manual_seed(0)
    weights = torch.randn(2, 6, 5)
    u, v = F.normalize(torch.randn(2, 6), dim=-1), F.normalize(torch.randn(2, 5), dim=-1)
    layers = [(torch.randn(2, 5, 3), torch.zeros(2, 5)), (weights, torch.zeros(2, 6)),
              (torch.randn(2, 1, 6), torch.zeros(2, 1))]
    expected = []
    for k in range(2):  # one training-mode forward of torch's spectral norm, from the same singular vectors
        linear = spectral_norm(nn.Linear(5, 6))
        with torch.no_grad():
            linear.parametrizations.weight.original.copy_(weights[k])
            linear.parametrizations.weight[0]._u.copy_(u[k])
            linear.parametrizations.weight[0]._v.copy_(v[k])
        expected.append(linear.weight.detach())
    u_ours, v_ours = u.clone(), v.clone()
    torch.testing.assert_close(spectral_normalized(layers, u_ours, v_ours, update=True)[1][0], torch.stack(expected))
    assert not torch.equal(u_ours, u) and not torch.equal(v_ours, v)
    for _ in range(100):
        normalized = spectral_normalized(layers, u_ours, v_ours, update=True)[1][0]
    torch.testing.assert_close(torch.linalg.matrix_norm(normalized, ord=2), torch.ones(2), rtol=1e-4, atol=1e-4)
    frozen = u_ours.clone()
    spectral_normalized(layers, u_ours, v_ours, update=False)
    assert torch.equal(frozen, u_ours)


def test_sac_spectral_norm_normalizes_online_and_target_critics_and_checkpoints_its_vectors():
    agent = make_sac_agent("agent.algorithm.spectral_norm=true")
    loss = agent.loss
    state = loss.state_dict()
    assert {"sn_u", "sn_v", "target_sn_u", "target_sn_v"} <= set(state)
    u, target_u = loss.sn_u.clone(), loss.target_sn_u.clone()
    agent.gradient_step(make_batch(16, 3, torch.rand(16, 1) * 4 - 2))
    assert not torch.equal(u, loss.sn_u) and not torch.equal(target_u, loss.target_sn_u)  # both refreshed
    obs, action = torch.randn(4, 3), torch.rand(4, 1)
    normalized = spectral_normalized(loss.q_layers, loss.sn_u, loss.sn_v, update=False)
    expected = state_action_ensemble(normalized, obs, action, loss.activation)
    torch.testing.assert_close(loss.q_values(loss.q_layers, obs, action, detach=True), expected)


def test_sac_spectral_norm_needs_an_mlp_hidden_layer():
    with pytest.raises(SpecError, match="agent.algorithm.spectral_norm"):
        make_sac_agent("agent.algorithm.spectral_norm=true", "agent.net.hid_layers=[]")
