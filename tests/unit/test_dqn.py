"""DQN targets: our fast TD loss against TorchRL's DQNLoss, termination vs truncation, PER weights."""

import pytest
import torch
from tensordict import TensorDict

from tests.conftest import SPECS
from zoo.algos import dqn
from zoo.algos.dqn import td_loss
from zoo.components import build
from zoo.spec import load_spec

GAMMA = 0.9


def make_batch(n: int = 6, obs_dim: int = 4, terminated=None, truncated=None) -> TensorDict:
    g = torch.Generator().manual_seed(0)
    terminated = torch.zeros(n, 1, dtype=torch.bool) if terminated is None else terminated
    truncated = torch.zeros(n, 1, dtype=torch.bool) if truncated is None else truncated
    return TensorDict({
        "observation": torch.randn(n, obs_dim, generator=g),
        "action": torch.randint(2, (n,), generator=g),
        "next": {"observation": torch.randn(n, obs_dim, generator=g), "reward": torch.randn(n, 1, generator=g),
                 "terminated": terminated, "truncated": truncated, "done": terminated | truncated},
    }, batch_size=[n])


@pytest.fixture(params=["DQN", "DoubleDQN", "VanillaDQN"])
def agent(request):
    spec = load_spec(SPECS / "dqn_cartpole.yaml", overrides=[f"agent.algorithm.name={request.param}",
                                                            f"agent.algorithm.gamma={GAMMA}", "env.num_envs=2"])
    agent = build(spec, seed=0).agent
    if agent.target_params is not None:  # make target and online nets differ
        with torch.no_grad():
            for p in agent.target_params.values():
                p.add_(0.1 * torch.randn_like(p))
    return agent


def test_td_loss_matches_torchrl_dqnloss(agent):
    batch = make_batch(terminated=torch.tensor([[True], [False], [False], [True], [False], [False]]),
                       truncated=torch.tensor([[False], [True], [False], [False], [False], [True]]))
    ours, _ = td_loss(agent.q_net, agent.target_net, batch, GAMMA, agent.algo_spec.name == "DoubleDQN", False)
    reference = agent.loss(batch.clone())["loss"]
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


def test_terminated_stops_bootstrap_truncated_does_not(agent):
    q_net, target = agent.q_net, agent.target_net
    base = make_batch(n=1)
    terminated = make_batch(n=1, terminated=torch.tensor([[True]]))
    truncated = make_batch(n=1, truncated=torch.tensor([[True]]))
    q = q_net(base["observation"]).gather(-1, base["action"].unsqueeze(-1)).squeeze(-1)
    reward = base["next", "reward"].squeeze(-1)
    _, err_term = td_loss(q_net, target, terminated, GAMMA, False, False)
    _, err_trunc = td_loss(q_net, target, truncated, GAMMA, False, False)
    _, err_base = td_loss(q_net, target, base, GAMMA, False, False)
    assert err_term.item() == pytest.approx((q - reward).abs().item(), rel=1e-5)  # no bootstrap
    assert err_trunc.item() == pytest.approx(err_base.item(), rel=1e-6)  # bootstraps like a mid-episode step
    assert err_trunc.item() != pytest.approx(err_term.item(), rel=1e-3)


def test_priority_weights_scale_the_loss(agent):
    batch = make_batch()
    plain, _ = td_loss(agent.q_net, agent.target_net, batch, GAMMA, False, False)
    batch["priority_weight"] = torch.full((6,), 0.5)
    weighted, _ = td_loss(agent.q_net, agent.target_net, batch, GAMMA, False, False)
    assert weighted.item() == pytest.approx(0.5 * plain.item(), rel=1e-6)
    batch["priority_weight"] = torch.tensor([1.0, 0, 0, 0, 0, 0])
    first_only, errors = td_loss(agent.q_net, agent.target_net, batch, GAMMA, False, False)
    assert first_only.item() == pytest.approx(errors[0].item() ** 2 / 6, rel=1e-5)


def test_hard_update_reaches_the_fast_path():
    spec = load_spec(SPECS / "dqn_cartpole.yaml", overrides=["env.num_envs=2"])
    agent = build(spec, seed=0).agent
    with torch.no_grad():
        for p in agent.q_net.parameters():
            p.add_(1.0)
    before = [t.clone() for t in agent.target_params.values()]
    for _ in range(agent.target_updater.value_network_update_interval + 1):
        agent.target_updater.step()
    after = list(agent.target_params.values())
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    target_net = dict(agent.target_net.named_parameters())
    for (name, p) in agent.q_net.named_parameters():
        assert torch.equal(agent.target_params[name], p)
        assert torch.equal(target_net[name], p)  # the module view td_loss evaluates follows the update


def test_exploration_draws_are_per_env():
    spec = load_spec(SPECS / "dqn_cartpole.yaml", overrides=["env.num_envs=64"])
    components = build(spec, seed=0)
    agent = components.agent
    agent.explore_var.fill_(0.5)
    td = components.env.reset()
    actions = torch.stack([agent.policy(td.clone())["action"] for _ in range(20)])
    greedy = agent.actor(td.clone())["action"]
    random_share = (actions != greedy).float().mean(0)  # per env, over 20 draws
    assert 0.05 < random_share.mean().item() < 0.45  # eps 0.5 with 2 actions: ~25% differ
    assert random_share.std().item() > 0  # envs do not all explore together


def per_agent(*overrides: str):
    spec = load_spec(SPECS / "ddqn_per_cartpole.yaml", overrides=[
        "env.num_envs=4", "agent.algorithm.training_start_step=0", "agent.algorithm.training_frequency=64",
        "agent.algorithm.training_iter=1", "agent.algorithm.n_step=1", *overrides])
    components = build(spec, seed=0)
    return components, components.agent


def collect(components, frames: int = 64):
    collector_iter = iter(components.collector)
    return [next(collector_iter) for _ in range(frames // components.agent.frames_per_batch)]


def test_priorities_come_from_td_errors(monkeypatch):
    components, agent = per_agent()
    calls = {}
    original_td_loss = dqn.td_loss

    def spy_td_loss(*args):
        calls["batch"] = args[2]
        calls["loss"], calls["td_error"] = original_td_loss(*args)
        return calls["loss"], calls["td_error"]

    monkeypatch.setattr(dqn, "td_loss", spy_td_loss)
    (data,) = collect(components)
    agent.update(data, frame=64)
    sampler, index = agent.buffer.sampler, calls["batch"]["index"]
    alpha, eps = agent.buffer.sampler._alpha, agent.buffer.sampler._eps
    expected = (calls["td_error"] + eps) ** alpha  # (|td| + eps) ^ alpha
    stored = torch.tensor([sampler._sum_tree[int(i)] for i in index])
    assert torch.allclose(stored, expected, rtol=1e-5)
    assert not torch.allclose(stored, stored[0].expand_as(stored))  # not the default max priority


def test_importance_weights_reach_the_loss(monkeypatch):
    components, agent = per_agent("agent.algorithm.training_iter=8")
    sampler, seen = agent.buffer.sampler, []
    original_td_loss = dqn.td_loss

    def spy_td_loss(*args):  # records each batch and its sampling probabilities, before priorities move
        size = len(agent.buffer)
        priority = torch.tensor([sampler._sum_tree[int(i)] for i in args[2]["index"]])
        seen.append((args[2], size * priority / sampler._sum_tree.query(0, size)))
        return original_td_loss(*args)

    monkeypatch.setattr(dqn, "td_loss", spy_td_loss)
    (data,) = collect(components)
    agent.update(data, frame=64)
    batch, size_times_p = seen[-1]  # sampled after the first steps set unequal priorities
    weight = batch["priority_weight"]
    assert weight.shape == (agent.batch_size,) and weight.max().item() <= 1.0 + 1e-6
    assert weight.min().item() < 0.999  # importance weights are not all one
    ratio = weight / size_times_p ** -sampler.beta  # w_i = (N P(i))^-beta / max_j w_j
    assert torch.allclose(ratio, ratio.mean().expand_as(ratio), rtol=1e-4)


def test_beta_anneals_to_one_on_the_frame_clock():
    components, agent = per_agent("env.max_frame=10000", "agent.memory.beta=0.4")
    (data,) = collect(components)
    assert agent.beta(0) == pytest.approx(0.4) and agent.beta(10000) == pytest.approx(1.0)
    agent.update(data, frame=5000)
    assert agent.buffer.sampler.beta == pytest.approx(0.7)


def test_boltzmann_draws_are_per_env_and_follow_the_frame_clock():
    spec = load_spec(SPECS / "dqn_cartpole.yaml", overrides=[
        "env.num_envs=64", "agent.algorithm.action_policy=boltzmann", "agent.algorithm.training_start_step=100000",
        "agent.algorithm.explore_var_spec={name: linear_decay, start_val: 100.0, end_val: 0.001, end_step: 1000}"])
    components = build(spec, seed=0)
    agent = components.agent
    (data,) = collect(components, agent.frames_per_batch)
    td = components.env.reset()
    greedy = agent.actor(td.clone())["action"]
    agent.update(data, frame=0)  # temperature 100: close to uniform, independently per env
    assert agent.explore_var.item() == pytest.approx(100.0)
    actions = torch.stack([agent.policy(td.clone())["action"] for _ in range(20)])
    share = (actions != greedy).float().mean(0)
    assert 0.3 < share.mean().item() < 0.7 and share.std().item() > 0
    agent.update(data, frame=500)
    assert agent.explore_var.item() == pytest.approx(50.0005)
    agent.update(data, frame=1000)  # temperature 0.001: greedy
    assert agent.explore_var.item() == pytest.approx(0.001)
    actions = torch.stack([agent.policy(td.clone())["action"] for _ in range(5)])
    assert (actions == greedy).all()
