"""Policy-gradient family: advantages by hand, Monte-Carlo returns, shared vs separate nets, Gaussian policies,
normalization statistics in checkpoints and frozen in evaluation."""

import math

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torchrl.envs import ExplorationType, set_exploration_type
from torchrl.modules import ValueOperator
from torchrl.objectives import ClipPPOLoss

from tests.conftest import SPECS
from zoo.algos.actor_critic import GaussianHead, make_advantage_module, next_values
from zoo.algos.reinforce import EpisodeCarry, best_episodes, monte_carlo_returns
from zoo.components import build
from zoo.envs import normalizers
from zoo.spec import SpecError, load_spec

GAMMA, LAM = 0.9, 0.8
# one env, 4 steps: step 1 terminates, step 3 is truncated (time limit) with a final observation to bootstrap from
REWARDS = [1.0, 2.0, 3.0, 4.0]
TERMINATED = [False, True, False, False]
TRUNCATED = [False, False, False, True]
VALUES = [10.0, 20.0, 30.0, 40.0]  # V(obs_t): the critic below reads the value off the observation
NEXT_VALUES = [20.0, 99.0, 40.0, 50.0]  # V(next_obs_t); 99 is the terminal obs, never bootstrapped


def batch() -> TensorDict:
    def col(values, dtype=torch.float32):
        return torch.tensor(values, dtype=dtype).reshape(1, 4, 1)

    terminated, truncated = col(TERMINATED, torch.bool), col(TRUNCATED, torch.bool)
    return TensorDict({
        "observation": col(VALUES),
        "next": {"observation": col(NEXT_VALUES), "reward": col(REWARDS), "terminated": terminated,
                 "truncated": truncated, "done": terminated | truncated},
    }, batch_size=[1, 4])


def value_reader() -> ValueOperator:
    return ValueOperator(nn.Identity(), in_keys=["observation"])


def test_gae_by_hand_with_terminated_and_truncated_steps():
    data = batch()
    make_advantage_module(GAMMA, LAM, value_reader())(data)
    # deltas: bootstrap through truncation (step 3: V(next)=50), not through termination (step 1)
    d = [1 + GAMMA * 20 - 10, 2 - 20, 3 + GAMMA * 40 - 30, 4 + GAMMA * 50 - 40]
    # GAE restarts after each done: steps 0-1 form one trajectory, steps 2-3 another
    expected = [d[0] + GAMMA * LAM * d[1], d[1], d[2] + GAMMA * LAM * d[3], d[3]]
    assert data["advantage"].flatten().tolist() == pytest.approx(expected, rel=1e-5)
    assert data["value_target"].flatten().tolist() == pytest.approx(
        [a + v for a, v in zip(expected, VALUES, strict=True)], rel=1e-5)


def test_nstep_returns_bootstrap_at_rollout_end_and_truncation_only():
    data = batch()
    data["next", "truncated"][0, 3] = False
    data["next", "done"][0, 3] = False  # step 3 now just ends the rollout: bootstrap from V(next) = 50
    make_advantage_module(GAMMA, None, value_reader())(data)
    targets = [1 + GAMMA * 2, 2, 3 + GAMMA * (4 + GAMMA * 50), 4 + GAMMA * 50]
    assert data["value_target"].flatten().tolist() == pytest.approx(targets, rel=1e-5)


def test_monte_carlo_returns_stop_at_done():
    returns = monte_carlo_returns(batch(), GAMMA)
    assert returns.flatten().tolist() == pytest.approx([1 + GAMMA * 2, 2, 3 + GAMMA * 4, 4], rel=1e-6)


def carry_batch(rewards: list[list[float]], dones: list[list[bool]]) -> TensorDict:
    """[envs, T] steps whose observation is the reward, so the test can tell which steps came back."""
    reward = torch.tensor(rewards, dtype=torch.float32).unsqueeze(-1)
    return TensorDict({"observation": reward.clone(), "action": torch.zeros(reward.shape[:2], dtype=torch.long),
                       "next": {"reward": reward, "done": torch.tensor(dones).unsqueeze(-1)}},
                      batch_size=reward.shape[:2])


def test_episode_carry_learns_every_step_once_with_returns_across_batches():
    """Two envs, two batches of 3 steps: env 0's episode runs 1 2 | 3 (ends in batch 2), then 4 5 6 (batch 2,
    unfinished); env 1 ends at steps 1 and 3 of batch 1. Each step returns once, with its whole episode's
    reward-to-go; the unfinished tails wait, also through a state_dict round trip."""
    carry = EpisodeCarry()
    first = carry.complete(carry_batch([[1, 2, 3], [10, 20, 30]], [[False, False, False], [True, False, True]]))
    assert first["observation"].flatten().tolist() == [10, 20, 30]
    assert monte_carlo_returns(first, GAMMA).flatten().tolist() == pytest.approx([10, 20 + GAMMA * 30, 30])
    restored = EpisodeCarry()
    restored.load_state_dict(carry.state_dict())
    second = restored.complete(carry_batch([[4, 5, 6], [40, 50, 60]], [[True, False, False], [False, False, False]]))
    assert second["observation"].flatten().tolist() == [1, 2, 3, 4]
    expected = [1 + GAMMA * 2 + GAMMA**2 * 3 + GAMMA**3 * 4, 2 + GAMMA * 3 + GAMMA**2 * 4, 3 + GAMMA * 4, 4]
    assert monte_carlo_returns(second, GAMMA).flatten().tolist() == pytest.approx(expected, rel=1e-6)
    assert [row["observation"].flatten().tolist() for row in restored.waiting] == [[5, 6], [40, 50, 60]]
    assert restored.complete(carry_batch([[7], [70]], [[False], [False]])).shape == (0,)  # nothing ended


def test_reinforce_update_waits_for_episode_ends():
    spec = load_spec(SPECS / "reinforce_cartpole.yaml", overrides=["env.num_envs=2", "agent.algorithm.time_horizon=8",
                                                                   "agent.algorithm.episodic=true"])
    components = build(spec, seed=0)
    agent, data = components.agent, next(iter(components.collector))
    data["next", "done"].zero_()  # no episode ended in this batch: no update
    assert agent.update(data, data.numel()) == {} and agent.num_updates == 0
    data["next", "done"][1, 3] = True
    metrics = agent.update(data, 2 * data.numel())
    assert agent.num_updates == 1 and metrics["learned_steps"] == 8 + 4  # env 1's two batches up to its done
    assert [len(row) for row in agent.carry.waiting] == [16, 4]



def test_reinforce_batch_returns_cut_at_terminations_only():
    """SLM-Lab's OnPolicyBatchReplay returns (episodic: false): a truncation's return runs on into the next
    episode; the rollout's last step gets its own reward only."""
    data = batch()
    data["next", "truncated"][0, 1] = True  # step 1 terminates; make step 2 a truncation instead of step 3
    data["next", "terminated"][0, 1] = False
    returns = monte_carlo_returns(data, GAMMA, "terminated").flatten().tolist()
    expected_tail = [3 + GAMMA * 4, 4]
    assert returns == pytest.approx([1 + GAMMA * (2 + GAMMA * expected_tail[0]), 2 + GAMMA * expected_tail[0],
                                     *expected_tail], rel=1e-6)


def test_reinforce_without_episodes_learns_from_every_step_of_each_batch():
    spec = load_spec(SPECS / "reinforce_cartpole.yaml", overrides=["env.num_envs=2", "agent.algorithm.time_horizon=8",
                                                                   "agent.algorithm.episodic=false"])
    components = build(spec, seed=0)
    agent, data = components.agent, next(iter(components.collector))
    data["next", "done"].zero_()  # no episode ended: still an update, on all 16 steps
    metrics = agent.update(data, data.numel())
    assert agent.num_updates == 1 and metrics["learned_steps"] == 16
    assert [len(row) for row in agent.carry.waiting] == []  # nothing waits for a later batch


def singular_values(module: nn.Module) -> list[torch.Tensor]:
    return [torch.linalg.svdvals(m.weight.detach()) for m in module.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("gains", [[], ["agent.net.init_gain=1.5", "agent.net.actor_init_gain=0.5",
                                        "agent.net.critic_init_gain=2.0"]])
def test_orthogonal_gains_of_hidden_layers_and_heads(gains):
    """An orthogonal init with gain g leaves every singular value at g: zoo's defaults (ReLU's sqrt(2), policy head
    0.01) or the spec's init_gain / actor_init_gain / critic_init_gain (SLM-Lab's activation gains)."""
    spec = load_spec(SPECS / "a2c_gae_cartpole.yaml", overrides=[
        "agent.net.init_fn=orthogonal", "agent.net.init_gain=null", "agent.net.actor_init_gain=null", *gains])
    agent = build(spec, seed=0).agent
    hidden, head, critic = (1.5, 0.5, 2.0) if gains else (math.sqrt(2), 0.01, math.sqrt(2))
    *actor_hidden, actor_head = singular_values(agent.actor)
    *_, critic_head = singular_values(agent.advantage_module.value_network)
    for values, gain in ((torch.cat(actor_hidden), hidden), (actor_head, head), (critic_head, critic)):
        assert values.tolist() == pytest.approx([gain] * len(values), rel=1e-4)


@pytest.mark.parametrize("spec_file, overrides, field", [
    ("a2c_gae_cartpole.yaml", ["agent.net.init_fn=default", "agent.net.actor_init_gain=null",
                               "agent.net.init_gain=1.5"], "agent.net.init_gain"),  # torch's default init
    ("dqn_cartpole.yaml", ["agent.net.init_fn=orthogonal", "agent.net.actor_init_gain=1.0"],
     "agent.net.actor_init_gain"),  # no policy head
])
def test_gains_are_refused_where_nothing_reads_them(spec_file, overrides, field):
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        load_spec(SPECS / spec_file, overrides=overrides)

@pytest.mark.parametrize("shared", [True, False])
def test_shared_and_separate_networks(shared):
    split = [] if not shared else ["agent.net.actor_optim_spec=null", "agent.net.critic_optim_spec=null"]
    spec = load_spec(SPECS / "a2c_gae_cartpole.yaml", overrides=[f"agent.net.shared={str(shared).lower()}",
                                                                 "env.num_envs=2", *split])
    agent = build(spec, seed=0).agent
    assert set(agent.optimizers) == ({"net"} if shared else {"actor", "critic"})
    actor_params = {id(p) for p in agent.actor.parameters()}
    critic_params = {id(p) for p in agent.advantage_module.value_network.parameters()}
    assert bool(actor_params & critic_params) == shared
    data = build(spec, seed=0).collector.__iter__().__next__()
    before = [p.detach().clone() for p in agent.params]
    agent.update(data, data.numel())
    assert all(not torch.equal(b, p) for b, p in zip(before, agent.params, strict=True))  # every net learns


def test_a2c_rejects_contradictory_return_settings():
    with pytest.raises(SpecError, match="num_step_returns"):
        spec = load_spec(SPECS / "a2c_gae_cartpole.yaml", overrides=["agent.algorithm.num_step_returns=5"])
        build(spec, seed=0)


@pytest.mark.parametrize("state_dependent", [True, False])
def test_gaussian_rescales_to_bounds_and_log_prob_matches_normal(state_dependent):
    low, high = torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 1.0])
    head = GaussianHead(3, 2, low, high, state_dependent_std=state_dependent, log_std_init=math.log(0.5),
                        tanh_squash=False)
    with torch.no_grad():
        head.mean.weight.zero_()
        head.mean.bias.copy_(torch.tensor([1.0, -1.0]))  # network units: +1 -> high, -1 -> low
    loc, scale = head(torch.randn(5, 3))
    assert torch.allclose(loc, torch.tensor([2.0, 0.0]).expand(5, 2))
    assert torch.allclose(scale, (0.5 * (high - low) / 2).expand(5, 2))
    spec = load_spec(SPECS / "ppo_pendulum.yaml", overrides=["env.num_envs=2"])
    actor = build(spec, seed=0).agent.actor
    with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
        out = actor(TensorDict({"observation": torch.randn(4, 3)}, batch_size=[4]))
    assert not torch.allclose(out["action"], out["loc"])  # a sample, not the mean
    dist = torch.distributions.Normal(out["loc"], out["scale"])
    assert torch.allclose(out["action_log_prob"], dist.log_prob(out["action"]).sum(-1), atol=1e-5)
    assert float(out["scale"][0, 0]) == pytest.approx(2.0 * math.exp(-0.5), rel=1e-5)  # half range 2 x std


def test_tanh_squash_stays_in_bounds():
    spec = load_spec(SPECS / "ppo_pendulum.yaml", overrides=["env.num_envs=2", "agent.algorithm.tanh_squash=true",
                                                             "agent.net.log_std_init=1.0"])
    actor = build(spec, seed=0).agent.actor
    with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
        action = actor(TensorDict({"observation": torch.randn(1000, 3)}, batch_size=[1000]))["action"]
    assert action.abs().max() <= 2.0 and action.abs().max() > 1.5


def test_normalization_is_checkpointed_and_frozen_in_eval():
    spec = load_spec(SPECS / "ppo_lunar_continuous.yaml", overrides=[
        "env.num_envs=2", "agent.algorithm.time_horizon=64", "agent.algorithm.minibatch_size=64"])
    c = build(spec, seed=0)
    next(iter(c.collector))
    state = c.agent.state_dict()["normalizers"]
    assert {"obs._extra_state", "reward.var"} <= set(state)
    assert float(state["reward.var"]) != 1.0
    c.sync_eval_env()
    train_obs, eval_obs = normalizers(c.env)["obs"], normalizers(c.eval_env)["obs"]
    assert torch.equal(train_obs.loc["observation"], eval_obs.loc["observation"])
    count = eval_obs._count["observation"].clone()
    c.eval_env.rollout(5)
    assert torch.equal(eval_obs._count["observation"], count)  # frozen: evaluation does not update the stats
    assert "reward" not in normalizers(c.eval_env)  # evaluation returns stay raw
    fresh = build(spec, seed=1)
    fresh.agent.load_state_dict(c.agent.state_dict())
    assert torch.equal(normalizers(fresh.env)["obs"].loc["observation"], train_obs.loc["observation"])



def test_obs_normalization_has_no_nan_on_constant_features():
    spec = load_spec(SPECS / "ppo_bipedalwalker.yaml", overrides=["env.num_envs=2"])
    env = build(spec, seed=0).env  # BipedalWalker's lidar is constant at reset: zero variance
    assert torch.isfinite(env.reset()["observation"]).all()


def ppo_batch(agent, n: int = 32, seed: int = 0) -> TensorDict:
    """A minibatch whose old log-probs and values are near the current ones (some ratios clipped, some not)."""
    g = torch.Generator().manual_seed(seed)
    td = TensorDict({"observation": torch.randn(n, agent.obs_dim, generator=g)}, batch_size=[n])
    with torch.no_grad():
        td = agent.policy(td)
        value = agent.loss.critic_network(td.clone())["state_value"]
    td["action_log_prob"] = td["action_log_prob"] + 0.3 * torch.randn(n, generator=g)
    td["advantage"] = torch.randn(n, 1, generator=g) + 0.5
    td["state_value"] = value + 0.3 * torch.randn(n, 1, generator=g)
    td["value_target"] = value + torch.randn(n, 1, generator=g)
    return td.select("observation", "action", "action_log_prob", "advantage", "state_value", "value_target")


def ppo_agent(spec_file: str, *overrides: str, name: str | None = None):
    spec = load_spec(SPECS / spec_file, name, overrides=["env.num_envs=2", "agent.algorithm.minibatch_size=8",
                                                   "agent.algorithm.entropy_coef_spec.start_val=0.01", *overrides])
    components = build(spec, seed=0)
    agent = components.agent
    agent.obs_dim = components.env.observation_spec["observation"].shape[-1]
    return agent


def assert_matches_clipppoloss(agent, batch, entropy_exact: bool = True):
    """zoo's PPOLoss against TorchRL's own ClipPPOLoss.forward on the same modules, values and gradients."""
    params = list(agent.loss.parameters())
    ours = agent.loss(batch.clone())
    (ours["loss_objective"] + ours["loss_critic"]).backward()
    our_grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]
    for p in params:
        p.grad = None
    reference = ClipPPOLoss.forward(agent.loss, batch.clone())
    (reference["loss_objective"] + reference["loss_critic"]).backward()
    keys = ["loss_objective", "loss_critic", "kl_approx", "clip_fraction"]
    keys += ["loss_entropy", "entropy"] if entropy_exact else []
    for key in keys:
        torch.testing.assert_close(ours[key].detach(), reference[key].detach(), rtol=1e-5, atol=1e-6, msg=key)
    for p, expected in zip(params, our_grads, strict=True):
        torch.testing.assert_close(p.grad if p.grad is not None else torch.zeros_like(p), expected, rtol=1e-4,
                                   atol=1e-6)
    assert 0 < ours["clip_fraction"] < 1  # some ratios clipped, some not: the clip branch is exercised


@pytest.mark.parametrize("clip_value", [False, True])
def test_ppo_loss_matches_torchrl_clipppoloss(clip_value):
    agent = ppo_agent("ppo_cartpole.yaml", f"agent.algorithm.clip_value={str(clip_value).lower()}")
    agent.loss.clip_epsilon.fill_(0.2)
    if clip_value:
        agent.loss.clip_value.fill_(0.2)
    assert_matches_clipppoloss(agent, ppo_batch(agent))


@pytest.mark.parametrize("tanh_squash", [False, True])
def test_ppo_loss_matches_clipppoloss_for_gaussian_policies(tanh_squash):
    agent = ppo_agent("ppo_pendulum.yaml", f"agent.algorithm.tanh_squash={str(tanh_squash).lower()}",
                      "env.normalize_obs=false", "env.normalize_reward=false")
    assert agent.loss.nets.distribution == ("TanhNormal" if tanh_squash else "Normal")
    agent.loss.clip_epsilon.fill_(0.2)
    # TanhNormal's entropy has no closed form: both estimate it from a sample, so only its scale is compared
    assert_matches_clipppoloss(agent, ppo_batch(agent), entropy_exact=not tanh_squash)
    if tanh_squash:
        ours, reference = agent.loss(ppo_batch(agent))["entropy"], ClipPPOLoss.forward(agent.loss, ppo_batch(agent))
        assert abs(ours.item() - reference["entropy"].item()) < 1.0


def test_ppo_loss_computes_advantages_with_its_value_estimator_when_missing():
    agent = ppo_agent("ppo_cartpole.yaml")
    batch = ppo_batch(agent).exclude("advantage", "value_target", "state_value")  # as collected
    batch["next"] = TensorDict({"observation": torch.randn(32, 4), "reward": torch.ones(32, 1),
                                "done": torch.zeros(32, 1, dtype=torch.bool),
                                "terminated": torch.zeros(32, 1, dtype=torch.bool)}, batch_size=[32])
    batch = batch.unsqueeze(0)  # [envs, T]: time last, as GAE expects
    ours = agent.loss(batch.clone())
    with torch.no_grad():
        explicit = agent.loss.value_estimator(batch.clone())  # what a TorchRL loop does before the loss
    assert "advantage" not in batch
    torch.testing.assert_close(ours["loss_objective"], agent.loss(explicit)["loss_objective"])


def test_ppo_greedy_eval_actor_matches_probabilistic_actor_mode():
    spec = load_spec(SPECS / "ppo_cartpole.yaml", overrides=["env.num_envs=2", "agent.algorithm.minibatch_size=8"])
    agent = build(spec, seed=0).agent
    td = TensorDict({"observation": torch.randn(64, 4, generator=torch.Generator().manual_seed(0))}, batch_size=[64])
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        expected = agent.policy(td.clone())["action"]
        got = agent.actor(td.clone())["action"]
    assert agent.actor is not agent.policy
    assert torch.equal(got, expected) and expected.unique().numel() == 2


def test_ppo_loss_through_a_shared_trunk_matches_clipppoloss_and_its_gradients():
    agent = ppo_agent("ppo_cartpole.yaml", "agent.net.shared=true")
    assert not isinstance(agent.loss.nets.trunk, nn.Identity)
    agent.loss.clip_epsilon.fill_(0.2)
    batch = ppo_batch(agent)
    assert_matches_clipppoloss(agent, batch)  # trunk gets both heads' gradients


def test_shared_trunk_gae_from_collected_values_matches_gae_with_the_critic():
    spec = load_spec(SPECS / "ppo_cartpole.yaml", overrides=[
        "env.num_envs=2", "agent.algorithm.time_horizon=64", "agent.algorithm.minibatch_size=32",
        "agent.net.shared=true", "env.max_t=20"])
    components = build(spec, seed=0)
    agent = components.agent
    data = next(iter(components.collector))
    assert data["next", "truncated"].any() and data["next", "terminated"].any()  # both kinds of reset inside
    reference = data.exclude("state_value")  # the critic recomputes what the collector recorded
    critic = agent.loss.critic_network
    with torch.no_grad():
        make_advantage_module(spec.agent.algorithm.gamma, spec.agent.algorithm.lam, critic)(reference)
        data["next", "state_value"] = next_values(data, agent.loss.nets)
        agent.advantage_module(data)
    for key in ("advantage", "value_target", "state_value", ("next", "state_value")):
        torch.testing.assert_close(data[key], reference[key], rtol=1e-5, atol=1e-5)


def test_shared_trunk_collector_policy_draws_as_the_actor_value_operator():
    spec = load_spec(SPECS / "ppo_cartpole.yaml", overrides=[
        "env.num_envs=2", "agent.algorithm.minibatch_size=8", "agent.net.shared=true"])
    agent = build(spec, seed=0).agent
    td = TensorDict({"observation": torch.randn(64, 4, generator=torch.Generator().manual_seed(0))}, batch_size=[64])
    actor, critic = agent.loss.actor_network, agent.loss.critic_network  # TorchRL's modules, same parameters
    with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
        torch.manual_seed(3)
        expected = critic(actor(td.clone()))
        torch.manual_seed(3)
        got = agent.policy(td.clone())
    assert torch.equal(got["action"], expected["action"]) and expected["action"].unique().numel() == 2
    torch.testing.assert_close(got["action_log_prob"], expected["action_log_prob"])
    torch.testing.assert_close(got["state_value"], expected["state_value"])


def test_a2c_refuses_to_standardize_a_one_transition_batch():
    spec = load_spec(SPECS / "a2c_gae_cartpole.yaml", overrides=[
        "env.num_envs=1", "agent.algorithm.time_horizon=1", "agent.algorithm.normalize_advantage=true"])
    with pytest.raises(SpecError, match="normalize_advantage.*>= 2 transitions"):
        build(spec, seed=0)


def test_reinforce_loss_is_slm_lab_policy_loss_by_hand():
    """SLM-Lab's REINFORCE with OnPolicyBatchReplay (episodic: false): calc_returns over the [T, num_envs] batch cut
    at terminations, center_mean, standardize, then -mean(log_prob * adv) - entropy_coef * mean(entropy)."""
    spec = load_spec(SPECS / "reinforce_cartpole.yaml", overrides=[
        "env.num_envs=4", "agent.algorithm.time_horizon=16", "agent.algorithm.episodic=false",
        "agent.algorithm.entropy_coef_spec={name: no_decay, start_val: 0.001}", "agent.net.lr_scheduler_spec=null"])
    components = build(spec, seed=0)
    agent, data = components.agent, next(iter(components.collector))
    rewards = data["next", "reward"].squeeze(-1).T  # [T, num_envs], as SLM-Lab's memory stacks them
    not_terminated = 1 - data["next", "terminated"].squeeze(-1).T.float()
    returns, future = torch.zeros_like(rewards), torch.zeros(rewards.shape[1])
    for t in reversed(range(len(rewards))):
        returns[t] = future = rewards[t] + spec.agent.algorithm.gamma * future * not_terminated[t]
    advantages = (returns - returns.mean()).reshape(-1)
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    logits = agent.actor(data.clone())["logits"].transpose(0, 1).reshape(-1, 2)
    dist = torch.distributions.Categorical(logits=logits)
    actions = data["action"].transpose(0, 1).reshape(-1)
    expected = -(dist.log_prob(actions) * advantages).mean() - 0.001 * dist.entropy().mean()
    assert agent.update(data, data.numel())["loss"].item() == pytest.approx(expected.item(), abs=1e-7)


def test_cross_entropy_keeps_the_best_episodes_by_return():
    """Episodes of returns 3, 1, 5 (steps 3 + 1 + 2): the median 3 keeps the first and the last, as
    np.percentile's linear interpolation does; quantile 1 keeps only the best."""
    reward = torch.tensor([1.0, 1.0, 1.0, 1.0, 2.0, 3.0]).unsqueeze(-1)
    done = torch.tensor([False, False, True, True, False, True]).unsqueeze(-1)
    episodes = TensorDict({"next": {"reward": reward, "done": done}}, batch_size=[6])
    assert best_episodes(episodes, "done", 0.5).tolist() == [True, True, True, False, True, True]
    assert best_episodes(episodes, "done", 1.0).tolist() == [False, False, False, False, True, True]
    assert best_episodes(episodes, "done", 0.0).all()


def test_cross_entropy_needs_whole_episodes():
    spec = load_spec(SPECS / "reinforce_cartpole.yaml",
                     overrides={"agent.algorithm.cross_entropy": 0.5, "agent.algorithm.episodic": False})
    with pytest.raises(SpecError, match="cross_entropy: keeps a batch's best whole episodes"):
        build(spec, seed=0)
