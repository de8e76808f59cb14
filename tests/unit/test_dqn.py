"""DQN family loss (a TorchRL LossModule) against TorchRL's DQNLoss, termination vs truncation, PER weights,
exploration that anneals through `step(frames)`."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictSequential
from torchrl.data import Categorical, OneHot
from torchrl.envs import ExplorationType, set_exploration_type
from torchrl.modules import QValueActor
from torchrl.objectives import DQNLoss, HardUpdate, ValueEstimators

from tests.conftest import SPECS
from zoo.algos.dqn import DQNFamilyLoss, QPolicy
from zoo.components import build
from zoo.exploration import BoltzmannExploration, ScheduledEGreedy
from zoo.schedules import constant
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


def perturb_target(loss: DQNFamilyLoss) -> None:
    """Make target and online nets differ."""
    if loss.delay_value:
        with torch.no_grad():
            for p in loss._modules["target_value_network_params"].values(True, True):
                p.add_(0.1 * torch.randn_like(p))


def torchrl_oracle(loss: DQNFamilyLoss, action_space: str = "categorical") -> DQNLoss:
    """TorchRL's DQNLoss over the same Q-network, holding a copy of our target parameters."""
    qactor = QValueActor(loss.value_network, in_keys=["observation"], action_space=action_space)
    ref = DQNLoss(qactor, delay_value=loss.delay_value, double_dqn=loss.double_dqn, loss_function="l2",
                  action_space=action_space)
    ref.make_value_estimator(ValueEstimators.TD0, gamma=loss.gamma)
    if loss.delay_value:
        HardUpdate(ref, value_network_update_interval=10**9)  # an updater (never firing) silences TorchRL's warning
    if loss.delay_value:
        ours = loss._modules["target_value_network_params"].values(True, True)
        theirs = ref._modules["target_value_network_params"].values(True, True)
        with torch.no_grad():
            for dst, src in zip(theirs, ours, strict=True):
                dst.copy_(src)
    return ref


@pytest.fixture(params=["DQN", "DoubleDQN", "VanillaDQN"])
def agent(request):
    spec = load_spec(SPECS / "dqn_cartpole.yaml", overrides=[f"agent.algorithm.name={request.param}",
                                                            f"agent.algorithm.gamma={GAMMA}", "env.num_envs=2"])
    agent = build(spec, seed=0).agent
    perturb_target(agent.loss)
    return agent


def test_loss_matches_torchrl_dqnloss(agent):
    batch = make_batch(terminated=torch.tensor([[True], [False], [False], [True], [False], [False]]),
                       truncated=torch.tensor([[False], [True], [False], [False], [False], [True]]))
    ours = agent.loss(batch.clone())["loss"]
    reference = torchrl_oracle(agent.loss)(batch.clone())["loss"]
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    assert ours.requires_grad


def test_one_hot_actions_give_the_same_loss(agent):
    batch = make_batch()
    one_hot = batch.clone()
    one_hot["action"] = torch.nn.functional.one_hot(batch["action"], 2)
    reference = torchrl_oracle(agent.loss, "one_hot")(one_hot.clone())["loss"]
    assert agent.loss(one_hot)["loss"].item() == pytest.approx(agent.loss(batch)["loss"].item(), rel=1e-6)
    assert agent.loss(one_hot)["loss"].item() == pytest.approx(reference.item(), rel=1e-5)


def test_terminated_stops_bootstrap_truncated_does_not(agent):
    loss, q_net = agent.loss, agent.q_net
    base = make_batch(n=1)
    terminated = make_batch(n=1, terminated=torch.tensor([[True]]))
    truncated = make_batch(n=1, truncated=torch.tensor([[True]]))
    q = q_net(base["observation"]).gather(-1, base["action"].unsqueeze(-1)).squeeze(-1)
    reward = base["next", "reward"].squeeze(-1)
    err_term, err_trunc, err_base = (loss(b)["loss"].sqrt() for b in (terminated, truncated, base))
    assert terminated["td_error"].item() == pytest.approx((q - reward).abs().item(), rel=1e-5)  # no bootstrap
    assert err_term.item() == pytest.approx(terminated["td_error"].item(), rel=1e-5)
    assert err_trunc.item() == pytest.approx(err_base.item(), rel=1e-6)  # bootstraps like a mid-episode step
    assert err_trunc.item() != pytest.approx(err_term.item(), rel=1e-3)


def test_priority_weights_scale_the_loss(agent):
    batch = make_batch()
    plain = agent.loss(batch)["loss"]
    batch["priority_weight"] = torch.full((6,), 0.5)
    weighted = agent.loss(batch)["loss"]
    assert weighted.item() == pytest.approx(0.5 * plain.item(), rel=1e-6)
    batch["priority_weight"] = torch.tensor([1.0, 0, 0, 0, 0, 0])
    first_only = agent.loss(batch)["loss"]
    assert first_only.item() == pytest.approx(batch["td_error"][0].item() ** 2 / 6, rel=1e-5)


def test_hard_update_moves_the_target_net_the_loss_evaluates():
    spec = load_spec(SPECS / "dqn_cartpole.yaml", overrides=["env.num_envs=2"])
    agent = build(spec, seed=0).agent
    loss, batch = agent.loss, make_batch()
    with torch.no_grad():
        for p in agent.q_net.parameters():
            p.add_(1.0)
    before = loss(batch.clone())["loss"].item()
    for _ in range(agent.target_updater.value_network_update_interval + 1):
        agent.target_updater.step()
    target = loss.target_value_network_params.flatten_keys(".")
    for name, p in agent.q_net.named_parameters():
        assert torch.equal(target[name], p)
    assert loss(batch.clone())["loss"].item() != pytest.approx(before)  # the target copy follows the update
    assert loss(batch.clone())["loss"].item() == pytest.approx(torchrl_oracle(loss)(batch.clone())["loss"].item(),
                                                              rel=1e-5)


def test_exploration_draws_are_per_env():
    spec = load_spec(SPECS / "dqn_cartpole.yaml", overrides=["env.num_envs=64"])
    components = build(spec, seed=0)
    agent = components.agent
    agent.exploration.eps.fill_(0.5)
    td = components.env.reset()
    actions = torch.stack([agent.policy(td.clone())["action"] for _ in range(20)])
    greedy = agent.actor(td.clone())["action"]
    random_share = (actions != greedy).float().mean(0)  # per env, over 20 draws
    assert 0.05 < random_share.mean().item() < 0.45  # eps 0.5 with 2 actions: ~25% differ
    assert random_share.std().item() > 0  # envs do not all explore together
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        assert torch.equal(agent.policy(td.clone())["action"], greedy)


def test_epsilon_anneals_through_step_as_in_a_torchrl_loop():
    spec = load_spec(SPECS / "dqn_cartpole.yaml", overrides=[
        "agent.algorithm.explore_var_spec={name: linear_decay, start_val: 1.0, end_val: 0.1, end_step: 1000}"])
    exploration = build(spec, seed=0).exploration
    assert exploration.eps.item() == pytest.approx(1.0)
    exploration.step(500)
    assert exploration.eps.item() == pytest.approx(0.55)
    exploration.step(600)
    assert exploration.eps.item() == pytest.approx(0.1)
    assert exploration.state_dict()["frames"].item() == 1100  # where the schedule stands is in the state dict


def per_agent(*overrides: str):
    spec = load_spec(SPECS / "ddqn_per_cartpole.yaml", overrides=[
        "env.num_envs=4", "agent.algorithm.training_start_step=0", "agent.algorithm.training_frequency=64",
        "agent.algorithm.training_iter=1", "agent.algorithm.n_step=1", *overrides])
    components = build(spec, seed=0)
    return components, components.agent


def collect(components, frames: int = 64):
    collector_iter = iter(components.collector)
    return [next(collector_iter) for _ in range(frames // components.agent.frames_per_batch)]


def spy_on_loss(agent, record):
    """Wrap the agent's loss so each call's batch (and its outputs) can be inspected."""
    loss = agent.loss

    def spy(batch):
        record(batch)
        return loss(batch)

    agent.loss = spy


def test_priorities_come_from_td_errors():
    components, agent = per_agent()
    batches = []
    spy_on_loss(agent, batches.append)
    (data,) = collect(components)
    agent.update(data, frame=64)
    batch = batches[-1]
    sampler, index = agent.buffer.sampler, batch["index"]
    alpha, eps = agent.buffer.sampler._alpha, agent.buffer.sampler._eps
    expected = (batch["td_error"] + eps) ** alpha  # (|td| + eps) ^ alpha, td_error written by the loss
    stored = torch.tensor([sampler._sum_tree[int(i)] for i in index])
    assert torch.allclose(stored, expected, rtol=1e-5)
    assert not torch.allclose(stored, stored[0].expand_as(stored))  # not the default max priority


def test_importance_weights_reach_the_loss():
    components, agent = per_agent("agent.algorithm.training_iter=8")
    sampler, seen = agent.buffer.sampler, []

    def record(batch):  # each batch and its sampling probabilities, before priorities move
        size = len(agent.buffer)
        priority = torch.tensor([sampler._sum_tree[int(i)] for i in batch["index"]])
        seen.append((batch, size * priority / sampler._sum_tree.query(0, size)))

    spy_on_loss(agent, record)
    (data,) = collect(components)
    agent.update(data, frame=64)
    batch, size_times_p = seen[-1]  # sampled after the first steps set unequal priorities
    weight = batch["priority_weight"]
    assert weight.shape == (agent.replay.batch_size,) and weight.max().item() <= 1.0 + 1e-6
    assert weight.min().item() < 0.999  # importance weights are not all one
    ratio = weight / size_times_p ** -sampler.beta  # w_i = (N P(i))^-beta / max_j w_j
    assert torch.allclose(ratio, ratio.mean().expand_as(ratio), rtol=1e-4)


def test_beta_anneals_to_one_on_the_frame_clock():
    components, agent = per_agent("env.max_frame=10000", "agent.memory.beta=0.4")
    (data,) = collect(components)
    assert agent.replay.beta(0) == pytest.approx(0.4) and agent.replay.beta(10000) == pytest.approx(1.0)
    agent.update(data, frame=5000)
    assert agent.buffer.sampler.beta == pytest.approx(0.7)


def test_boltzmann_draws_are_per_env_and_follow_the_frame_clock():
    spec = load_spec(SPECS / "dqn_cartpole.yaml", overrides=[
        "env.num_envs=64", "agent.algorithm.action_policy=boltzmann", "agent.algorithm.training_start_step=100000",
        "agent.algorithm.explore_var_spec={name: linear_decay, start_val: 100.0, end_val: 0.001, end_step: 1000}"])
    components = build(spec, seed=0)
    agent = components.agent
    td = components.env.reset()
    greedy = agent.actor(td.clone())["action"]
    assert agent.exploration.temperature.item() == pytest.approx(100.0)  # close to uniform, independently per env
    actions = torch.stack([agent.policy(td.clone())["action"] for _ in range(20)])
    share = (actions != greedy).float().mean(0)
    assert 0.3 < share.mean().item() < 0.7 and share.std().item() > 0
    (data,) = collect(components, agent.frames_per_batch)
    agent.update(data, frame=data.numel())  # the update steps the module by the frames collected
    assert agent.exploration.temperature.item() == pytest.approx(100.0 - 99.999 * data.numel() / 1000)
    agent.exploration.step(1000)  # temperature 0.001: greedy
    assert agent.exploration.temperature.item() == pytest.approx(0.001)
    actions = torch.stack([agent.policy(td.clone())["action"] for _ in range(5)])
    assert (actions == greedy).all()
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        agent.exploration.temperature.fill_(100.0)
        assert torch.equal(agent.policy(td.clone())["action"], greedy)


def test_actions_follow_a_one_hot_action_spec():
    """Boltzmann draws keep the greedy action's encoding (EGreedyModule does so through the spec)."""
    module = BoltzmannExploration(constant(1.0))
    td = TensorDict({"action_value": torch.randn(5, 3), "action": OneHot(3).rand((5,))}, batch_size=[5])
    action = module(td)["action"]
    assert action.shape == (5, 3) and torch.equal(action.sum(-1), torch.ones(5, dtype=action.dtype))


@pytest.mark.parametrize("one_hot", [False, True])
def test_q_policy_acts_as_the_greedy_sequence_with_epsilon_draws_per_env(one_hot):
    q_net = torch.nn.Linear(4, 3)
    spec = OneHot(3) if one_hot else Categorical(3)
    qactor = QValueActor(q_net, in_keys=["observation"], spec=spec,
                         action_space="one_hot" if one_hot else "categorical")
    exploration = ScheduledEGreedy(spec, constant(0.0))
    policy = QPolicy(qactor, exploration, q_net, one_hot=one_hot)
    sequence = TensorDictSequential(qactor, exploration)
    assert list(policy.state_dict()) == list(sequence.state_dict())  # checkpoints keep the sequence's names
    td = TensorDict({"observation": torch.randn(64, 4)}, [64])
    greedy = q_net(td["observation"]).argmax(-1)
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        action = policy(td.clone())["action"]
        exploration.eps.fill_(1.0)
        torch.manual_seed(0)
        random_action = policy(td.clone())["action"]
    index = lambda a: a.argmax(-1) if one_hot else a  # noqa: E731
    assert torch.equal(index(action), greedy)  # epsilon 0: greedy
    assert set(index(random_action).tolist()) == {0, 1, 2}  # epsilon 1: uniform, drawn per env
    assert (index(random_action) != greedy).any()
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):  # greedy whatever epsilon
        assert torch.equal(index(policy(td.clone())["action"]), greedy)
