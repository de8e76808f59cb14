"""SAC: zoo's losses against TorchRL's SACLoss / DiscreteSACLoss forward (the oracles), tanh log-prob, entropy
target, PER, policy delay, polyak averaging."""

import copy
import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.modules import TanhNormal
from torchrl.objectives import DiscreteSACLoss, SACLoss

from tests.conftest import SPECS
from zoo.algos.off_policy import soft_update
from zoo.components import build
from zoo.memory import FrameStackReplay
from zoo.spec import SpecError, load_spec

GAMMA = 0.9


def make_agent(*overrides: str):
    spec = load_spec(SPECS / "sac_pendulum.yaml", overrides=[f"agent.algorithm.gamma={GAMMA}", "env.num_envs=2",
                                                             "agent.net.hid_layers=[32, 32]", *overrides])
    agent = build(spec, seed=0).agent
    with torch.no_grad():  # make targets differ from the online critics, and alpha differ from 1
        for p in agent.loss.target_qvalue_network_params.values(True, True):
            p.add_(0.1 * torch.randn_like(p))
        agent.loss.log_alpha.data.fill_(-0.7) if not agent.loss.fixed_alpha else None
    return agent


def make_batch(n: int, obs_dim: int, action: torch.Tensor) -> TensorDict:
    g = torch.Generator().manual_seed(1)
    terminated = torch.tensor([[i % 3 == 0] for i in range(n)])
    return TensorDict({
        "observation": torch.randn(n, obs_dim, generator=g), "action": action,
        "next": {"observation": torch.randn(n, obs_dim, generator=g), "reward": torch.randn(n, 1, generator=g),
                 "terminated": terminated, "truncated": ~terminated, "done": torch.ones(n, 1, dtype=torch.bool)},
    }, batch_size=[n])


def grads(loss, out, terms=("loss_qvalue", "loss_actor", "loss_alpha")) -> list[torch.Tensor]:
    """Gradients of the sum of `out`'s `terms` w.r.t. every trainable parameter of `loss` (zeros where unused)."""
    params = [p for p in loss.parameters() if p.requires_grad]
    found = torch.autograd.grad(sum(out[k] for k in terms), params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, found, strict=True)]


def assert_matches_oracle(ours, reference, scale: float = 1.0, keys=("loss_qvalue", "loss_actor", "loss_alpha")):
    for key in keys:
        assert ours[key].item() == pytest.approx(scale * reference[key].item(), rel=1e-4), key
    for key in ("alpha", "entropy"):
        assert ours[key].item() == pytest.approx(reference[key].item(), rel=1e-4), key


@pytest.mark.parametrize("weighted", [False, True])
def test_continuous_loss_matches_torchrl_sacloss_forward(weighted):
    agent = make_agent()
    batch = make_batch(8, 3, torch.rand(8, 1) * 4 - 2)
    if weighted:
        batch["priority_weight"] = torch.rand(8)
    reference_batch = batch.clone()
    torch.manual_seed(5)  # both draw the next action first, then the actor's action
    ours = agent.loss(batch)
    torch.manual_seed(5)
    reference = SACLoss.forward(agent.loss, reference_batch)
    assert set(ours.keys()) == set(reference.keys()) == {"loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy"}
    # importance weights: we take mean(w * loss) as Schaul et al. 2016 (and zoo's DQN); TorchRL divides by sum(w)
    scale = batch["priority_weight"].mean().item() if weighted else 1.0
    assert_matches_oracle(ours, reference, scale)
    torch.testing.assert_close(batch["td_error"], reference_batch["td_error"], rtol=1e-4, atol=1e-5)
    for g, ref in zip(grads(agent.loss, ours), grads(agent.loss, reference), strict=True):
        torch.testing.assert_close(g, scale * ref, rtol=1e-4, atol=1e-5)


def test_critic_loss_is_forwards_critic_term():
    agent = make_agent()
    batch = make_batch(8, 3, torch.rand(8, 1) * 4 - 2)
    torch.manual_seed(5)  # the target's next action is sampled
    critic_only = agent.loss.critic_loss(batch)
    assert set(critic_only.keys()) == {"loss_qvalue"} and batch["td_error"].shape == (8,)
    td_error = batch["td_error"].clone()
    torch.manual_seed(5)
    assert critic_only["loss_qvalue"].item() == agent.loss(batch)["loss_qvalue"].item()
    torch.testing.assert_close(batch["td_error"], td_error)


def test_discrete_loss_matches_torchrl_and_is_exact_expectations():
    agent = make_agent("env.name=CartPole-v1")
    batch = make_batch(8, 4, torch.randint(2, (8,)))
    reference_batch = batch.clone()
    ours, reference = agent.loss(batch), DiscreteSACLoss.forward(agent.loss, reference_batch)
    assert_matches_oracle(ours, reference)
    torch.testing.assert_close(batch["td_error"], reference_batch["td_error"], rtol=1e-4, atol=1e-5)
    for g, ref in zip(grads(agent.loss, ours), grads(agent.loss, reference), strict=True):
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-5)
    # actor loss = E_{a~pi}[alpha log pi(a|s) - min_i Q_i(s, a)], summed over both actions, not sampled
    obs, loss = batch["observation"], agent.loss
    log_pi = torch.log_softmax(loss.actor_net(obs), -1)
    min_q = loss.q_values(loss.q_layers, obs, None).min(0).values
    a_alpha = loss.log_alpha.exp()
    expected = sum(log_pi[:, a].exp() * (a_alpha * log_pi[:, a] - min_q[:, a]) for a in range(2)).mean()
    assert ours["loss_actor"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_tanh_log_prob_matches_numerical_density():
    loc, scale, low, high = torch.tensor([0.3]), torch.tensor([0.8]), -2.0, 2.0
    dist = TanhNormal(loc, scale, low=low, high=high)
    normal = torch.distributions.Normal(loc.double(), scale.double())

    def cdf(a):  # a = mid + half * tanh(u), u ~ Normal(loc, scale)
        return normal.cdf(torch.atanh((a - (high + low) / 2) / ((high - low) / 2)))

    h = 1e-5
    for a in (-1.9, -1.0, 0.0, 0.5, 1.5, 1.95):
        a64 = torch.tensor([a], dtype=torch.float64)
        numerical = torch.log((cdf(a64 + h) - cdf(a64 - h)) / (2 * h))
        assert dist.log_prob(torch.tensor([[a]])).item() == pytest.approx(numerical.item(), abs=2e-3)
    # a sampled action's log-prob includes the squashing correction: log N(u) - log(half * (1 - tanh(u)^2))
    action = dist.rsample()
    u = torch.atanh(action / 2)
    by_hand = normal.log_prob(u.double()) - torch.log(2 * (1 - torch.tanh(u.double()) ** 2))
    assert dist.log_prob(action).item() == pytest.approx(by_hand.sum().item(), abs=1e-3)


def test_target_entropy_auto_fixed_and_invalid():
    assert make_agent().loss.target_entropy.item() == pytest.approx(-1.0)  # -action_dim
    discrete = make_agent("env.name=CartPole-v1")
    assert discrete.loss.target_entropy.item() == pytest.approx(0.98 * math.log(2))
    assert make_agent("agent.algorithm.target_entropy=-3.5").loss.target_entropy.item() == pytest.approx(-3.5)
    with pytest.raises(SpecError, match="target_entropy"):
        make_agent("agent.algorithm.target_entropy=high")


def test_temperature_tunes_or_stays_fixed():
    batch = make_batch(16, 3, torch.rand(16, 1) * 4 - 2)
    tuned = make_agent()
    before = tuned.loss.log_alpha.item()
    tuned.gradient_step(batch)
    assert tuned.loss.log_alpha.item() != before
    fixed = make_agent("agent.algorithm.fixed_alpha=true", "agent.algorithm.alpha_init=0.2")
    assert "alpha" not in fixed.optimizers
    fixed.gradient_step(batch)
    assert fixed.loss.log_alpha.exp().item() == pytest.approx(0.2)


def test_policy_delay_skips_actor_steps():
    agent = make_agent("agent.algorithm.policy_delay=2")
    batch = make_batch(16, 3, torch.rand(16, 1) * 4 - 2)
    actor_before = [p.clone() for p in agent.params["actor"]]
    agent.gradient_step(batch)  # step 0 updates the actor
    after_first = [p.clone() for p in agent.params["actor"]]
    metrics, _ = agent.gradient_step(batch)  # step 1 does not
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, after_first, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(after_first, agent.params["actor"], strict=True))
    assert "loss_actor" not in metrics and agent.num_updates == 2


def test_discrete_sac_with_conv_trunk_matches_torchrl_on_uint8_frames():
    spec = load_spec(SPECS / "sac_pong.yaml", overrides=[
        f"agent.algorithm.gamma={GAMMA}", "env.num_envs=2", "agent.memory.max_size=64", "agent.memory.batch_size=8",
        "agent.net.conv_hid_layers=[[4, 8, 4], [8, 4, 2]]", "agent.net.hid_layers=[16]"])
    agent = build(spec, seed=0).agent
    assert isinstance(agent.buffer, FrameStackReplay)  # uint8 frames, each stored once
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (6, 4, 84, 84), dtype=torch.uint8, generator=g)
    terminated = torch.tensor([[True], [False], [False], [True], [False], [False]])
    batch = TensorDict({"observation": frames, "action": torch.randint(6, (6,), generator=g), "next": {
        "observation": frames.roll(1, 0), "reward": torch.randn(6, 1, generator=g), "terminated": terminated,
        "truncated": torch.zeros_like(terminated), "done": terminated}}, batch_size=[6])
    q = agent.loss.q_values(agent.loss.q_layers, frames, None)
    assert q.shape == (2, 6, 6)  # twin critics x batch x actions
    assert not torch.allclose(q[0], q[1])  # two differently initialised critics, not one shared
    assert_matches_oracle(agent.loss(batch.clone()), DiscreteSACLoss.forward(agent.loss, batch.clone()))
    before = [p.clone() for p in agent.params["critic"]]
    agent.gradient_step(batch)
    assert all(not torch.equal(a, b) for a, b in zip(before, agent.params["critic"], strict=True) if a.ndim > 1)


@pytest.mark.parametrize("spec_file", ["sac_pendulum.yaml", "td3_pendulum.yaml"])
def test_soft_update_matches_torchrl_softupdate(spec_file):
    agent = build(load_spec(SPECS / spec_file), seed=0).agent
    with torch.no_grad():  # online and target nets apart
        for p in agent.loss.parameters():
            p.add_(torch.randn_like(p))
    start = copy.deepcopy(agent.loss.state_dict())
    agent.target_updater.step()
    reference = copy.deepcopy(agent.loss.state_dict())
    agent.loss.load_state_dict(start)
    soft_update(agent.polyak, 1 - agent.target_updater.eps)
    ours = agent.loss.state_dict()
    assert any(not torch.equal(reference[k], start[k]) for k in start)
    assert all(torch.allclose(ours[k], reference[k], atol=1e-6) for k in reference)


@pytest.mark.parametrize("env_name", ["Pendulum-v1", "CartPole-v1"])
def test_layer_norm_nets_match_torchrl(env_name):
    """agent.net.layer_norm: the critics run through their modules (not stacked matmuls), still TorchRL's maths."""
    agent = make_agent("agent.net.layer_norm=true", f"env.name={env_name}")
    assert any(isinstance(m, torch.nn.LayerNorm) for m in agent.loss.qvalue_network.modules())
    continuous = env_name == "Pendulum-v1"
    batch = make_batch(8, 3 if continuous else 4, torch.rand(8, 1) * 4 - 2 if continuous else torch.randint(2, (8,)))
    reference_batch = batch.clone()
    oracle = SACLoss.forward if continuous else DiscreteSACLoss.forward
    torch.manual_seed(5)
    ours = agent.loss(batch)
    torch.manual_seed(5)
    assert_matches_oracle(ours, oracle(agent.loss, reference_batch))
    torch.testing.assert_close(batch["td_error"], reference_batch["td_error"], rtol=1e-4, atol=1e-5)


def test_twin_q_mean_averages_the_critics_in_target_and_actor_loss():
    """twin_q: mean (SLM-Lab's discrete SAC) on a hand-made batch: V(s') = sum_a pi(a|s') (mean_k Q'_k(s', a) -
    alpha log pi(a|s')), bootstrapped through truncation, and the actor against the twins' mean; min stays TorchRL's."""
    agent = make_agent("env.name=CartPole-v1", "agent.algorithm.twin_q=mean")
    min_agent = make_agent("env.name=CartPole-v1")
    min_agent.loss.load_state_dict(agent.loss.state_dict())
    batch = make_batch(8, 4, torch.randint(2, (8,)))
    loss, alpha = agent.loss, agent.loss.log_alpha.exp().detach()
    with torch.no_grad():
        next_log_pi = torch.log_softmax(loss.actor_net(batch["next", "observation"]), -1)
        next_q = loss.q_values(loss.target_q_layers, batch["next", "observation"], None)
        next_value = (next_log_pi.exp() * ((next_q[0] + next_q[1]) / 2 - alpha * next_log_pi)).sum(-1)
        not_terminal = (~batch["next", "terminated"]).squeeze(-1).float()
        target = batch["next", "reward"].squeeze(-1) + GAMMA * not_terminal * next_value
    q = loss.q_values(loss.q_layers, batch["observation"], None)
    q_taken = q.gather(-1, batch["action"].view(1, -1, 1).expand(2, -1, 1)).squeeze(-1)
    log_pi = torch.log_softmax(loss.actor_net(batch["observation"]), -1)
    actor = (log_pi.exp() * (alpha * log_pi - q.mean(0).detach())).sum(-1).mean()
    ours = loss(batch.clone())
    assert ours["loss_qvalue"].item() == pytest.approx((q_taken - target).pow(2).sum(0).mean().item(), rel=1e-5)
    assert ours["loss_actor"].item() == pytest.approx(actor.item(), rel=1e-5)
    with_min = min_agent.loss(batch.clone())
    assert with_min["loss_qvalue"].item() != pytest.approx(ours["loss_qvalue"].item(), rel=1e-3)
    assert_matches_oracle(with_min, DiscreteSACLoss.forward(min_agent.loss, batch.clone()))
