"""Action distributions (`action_pdtype`): log-probs, entropies and samples against torch.distributions; every
one through PPO's plain-torch loss against TorchRL's ClipPPOLoss; REINFORCE and A2C learning steps on each space."""

import pytest
import torch
from tensordict import TensorDict
from torch import distributions as D
from torchrl.envs import ExplorationType, GymEnv, set_exploration_type

from tests.conftest import SPECS
from tests.unit.test_policy_gradient import assert_matches_clipppoloss, ppo_agent, ppo_batch
from zoo.components import build
from zoo.distributions import Argmax, Bernoulli, Beta, GumbelSoftmax, MultiCategorical
from zoo.spec import SpecError, load_spec

GEN = torch.Generator().manual_seed(0)
MATCH = {"MultiDiscrete": "{space: MultiDiscrete, n: [3, 4]}", "MultiBinary": "{space: MultiBinary, n: 4}",
         "Discrete": "{space: Discrete, n: 5}"}


def test_argmax_puts_all_mass_on_the_largest_logit():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 1.0]])
    dist = Argmax(logits)
    assert torch.equal(dist.sample(), torch.tensor([1, 0])) and torch.equal(dist.deterministic_sample, dist.sample())
    torch.testing.assert_close(dist.log_prob(torch.tensor([1, 0])), torch.zeros(2))
    assert (dist.log_prob(torch.tensor([0, 2])) < -1e7).all()
    torch.testing.assert_close(dist.entropy(), torch.zeros(2))


def test_gumbel_softmax_draws_and_scores_as_the_categorical_of_its_logits():
    logits = torch.tensor([0.5, -1.0, 1.5, 0.0])
    dist, oracle = GumbelSoftmax(logits=logits), D.Categorical(logits=logits)
    torch.manual_seed(0)
    frequencies = torch.bincount(dist.sample((40000,)), minlength=4) / 40000
    torch.testing.assert_close(frequencies, oracle.probs, atol=0.01, rtol=0)
    actions = torch.arange(4)
    torch.testing.assert_close(dist.log_prob(actions), oracle.log_prob(actions))
    torch.testing.assert_close(dist.entropy(), oracle.entropy())


def test_multi_categorical_sums_independent_categoricals_and_offsets_by_start():
    logits = torch.randn(5, 3 + 4, generator=GEN)
    start = torch.tensor([1, -2])
    dist = MultiCategorical(logits, nvec=[3, 4], start=start)
    parts = [D.Categorical(logits=logits[:, :3]), D.Categorical(logits=logits[:, 3:])]
    action = dist.sample()
    assert action.shape == (5, 2) and (action >= start).all() and (action < start + torch.tensor([3, 4])).all()
    expected = parts[0].log_prob(action[:, 0] - 1) + parts[1].log_prob(action[:, 1] + 2)
    torch.testing.assert_close(dist.log_prob(action), expected)
    torch.testing.assert_close(dist.entropy(), parts[0].entropy() + parts[1].entropy())
    greedy = torch.stack([logits[:, :3].argmax(-1) + 1, logits[:, 3:].argmax(-1) - 2], -1)
    assert torch.equal(dist.deterministic_sample, greedy)


def test_bernoulli_sums_independent_bits_and_samples_the_spec_dtype():
    logits = torch.randn(6, 4, generator=GEN)
    dist, oracle = Bernoulli(logits, dtype=torch.int8), D.Bernoulli(logits=logits)
    action = dist.sample()
    assert action.dtype == torch.int8 and action.shape == (6, 4)
    torch.testing.assert_close(dist.log_prob(action), oracle.log_prob(action.float()).sum(-1))
    torch.testing.assert_close(dist.entropy(), oracle.entropy().sum(-1))
    assert torch.equal(dist.deterministic_sample, (logits > 0).to(torch.int8))


def test_beta_on_the_action_box_matches_an_affine_transformed_beta():
    alpha, beta = 1 + torch.rand(5, 2, generator=GEN) * 3, 1 + torch.rand(5, 2, generator=GEN) * 3
    low, high = torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 0.5])
    dist = Beta(alpha, beta, low, high)
    oracle = D.TransformedDistribution(D.Beta(alpha, beta), D.AffineTransform(low, high - low))
    action = dist.sample()
    assert ((action > low) & (action < high)).all()
    torch.testing.assert_close(dist.log_prob(action), oracle.log_prob(action).sum(-1))
    torch.testing.assert_close(dist.entropy(), (D.Beta(alpha, beta).entropy() + (high - low).log()).sum(-1))
    torch.testing.assert_close(dist.deterministic_sample, low + (high - low) * alpha / (alpha + beta))
    assert torch.isfinite(dist.log_prob(torch.stack([low, high, low, high, low]))).all()  # the box edges too


def test_multivariate_normal_head_learns_correlations_and_starts_diagonal():
    agent = ppo_agent("ppo_lunar_continuous.yaml", "agent.algorithm.action_pdtype=MultivariateNormal",
                      "agent.algorithm.time_horizon=32")
    nets, features = agent.loss.nets, torch.randn(7, 8, generator=GEN)
    loc, scale_tril = nets.policy(features)
    assert torch.equal(scale_tril, torch.diag_embed(scale_tril.diagonal(dim1=-2, dim2=-1)))  # zero correlations
    head = nets.policy[-1][-1]
    with torch.no_grad():
        head.lower.fill_(0.3)
    loc, scale_tril = nets.policy(features)
    assert torch.equal(scale_tril, scale_tril.tril()) and (scale_tril[:, 1, 0] != 0).all()
    action = torch.randn(7, 2, generator=GEN)
    oracle = D.MultivariateNormal(loc, scale_tril=scale_tril)
    torch.testing.assert_close(nets.dist(features).log_prob(action), oracle.log_prob(action))
    torch.testing.assert_close(nets.dist(features).entropy(), oracle.entropy())


@pytest.mark.parametrize(("spec_file", "pdtype", "overrides"), [
    ("ppo_cartpole.yaml", "Argmax", []),
    ("ppo_cartpole.yaml", "GumbelSoftmax", []),
    ("ppo_beta_pendulum.yaml", "Beta", []),
    ("ppo_lunar_continuous.yaml", "MultivariateNormal", ["agent.algorithm.time_horizon=32"]),
    ("ppo_match.yaml", "MultiCategorical", [f"env.kwargs={MATCH['MultiDiscrete']}"]),
    ("ppo_match.yaml", "Bernoulli", [f"env.kwargs={MATCH['MultiBinary']}"]),
])
def test_ppo_loss_matches_clipppoloss_for_every_action_pdtype(spec_file, pdtype, overrides):
    name = "ppo_multidiscrete" if spec_file == "ppo_match.yaml" else None
    agent = ppo_agent(spec_file, f"agent.algorithm.action_pdtype={pdtype}", *overrides, name=name)
    assert agent.loss.nets.distribution == pdtype
    agent.loss.clip_epsilon.fill_(0.2)
    assert_matches_clipppoloss(agent, ppo_batch(agent))


@pytest.mark.parametrize("algorithm", ["Reinforce", "A2C"])
@pytest.mark.parametrize(("env", "kwargs", "pdtype"), [
    ("zoo.toy_envs:match", MATCH["MultiDiscrete"], "default"), ("zoo.toy_envs:match", MATCH["MultiBinary"], "default"),
    ("zoo.toy_envs:match", MATCH["Discrete"], "GumbelSoftmax"), ("Pendulum-v1", "{}", "Beta"),
    ("LunarLanderContinuous-v3", "{}", "MultivariateNormal")])
def test_reinforce_and_a2c_learn_with_every_kind_of_distribution(algorithm, env, kwargs, pdtype):
    spec_file = "reinforce_cartpole.yaml" if algorithm == "Reinforce" else "a2c_gae_cartpole.yaml"
    spec = load_spec(SPECS / spec_file, overrides=[
        f"env.name={env}", f"env.kwargs={kwargs}", "env.num_envs=2", "env.max_t=16",
        "agent.algorithm.time_horizon=16", f"agent.algorithm.action_pdtype={pdtype}"])
    components = build(spec, seed=0)
    agent, data = components.agent, next(iter(components.collector))
    assert data["next", "done"][:, -1].all()  # episodes end in the batch: REINFORCE learns from it
    before = [p.detach().clone() for p in agent.params]
    metrics = agent.update(data, data.numel())
    assert torch.isfinite(metrics["loss"]) and torch.isfinite(metrics["entropy"])
    assert any(not torch.equal(b, p) for b, p in zip(before, agent.params, strict=True))
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        greedy = agent.actor(TensorDict({"observation": data["observation"][0]}, batch_size=[16]))["action"]
    assert greedy.dtype == data["action"].dtype and greedy.shape == data["action"][0].shape


@pytest.mark.parametrize(("spec_file", "pdtype", "field"), [
    ("ppo_cartpole.yaml", "Beta", "action_pdtype"), ("ppo_pendulum.yaml", "MultiCategorical", "action_pdtype"),
    ("ppo_pendulum.yaml", "MultivariateNormal", "action_pdtype"), ("ppo_pendulum.yaml", "Beta", "tanh_squash")])
def test_action_pdtype_that_does_not_fit_the_action_space_is_a_spec_error(spec_file, pdtype, field):
    overrides = [f"agent.algorithm.action_pdtype={pdtype}", "env.num_envs=2", "agent.algorithm.minibatch_size=8"]
    if field == "tanh_squash":
        overrides.append("agent.algorithm.tanh_squash=true")
    with pytest.raises(SpecError, match=f"agent.algorithm.{field}") as err:
        build(load_spec(SPECS / spec_file, overrides=overrides), seed=0)
    assert "\n" not in str(err.value)


def test_integer_drawing_distributions_refuse_a_one_hot_env():
    spec = load_spec(SPECS / "ppo_cartpole.yaml", overrides=["agent.algorithm.action_pdtype=GumbelSoftmax"])
    with pytest.raises(SpecError, match="GumbelSoftmax draws integer actions; this env's are one-hot"):
        build(spec, seed=0, env=GymEnv("CartPole-v1"))  # TorchRL's GymEnv codes actions one-hot


def test_gaussian_std_settings_are_refused_for_other_distributions():
    spec = load_spec(SPECS / "ppo_pendulum.yaml", overrides=["agent.algorithm.action_pdtype=Beta", "env.num_envs=2"])
    with pytest.raises(SpecError, match="agent.net.log_std_init: is not used by a Beta policy"):
        build(spec, seed=0)  # ppo_pendulum sets log_std_init: -0.5


def test_off_policy_algorithms_refuse_multi_discrete_actions():
    spec = load_spec(SPECS / "dqn_cartpole.yaml", overrides=["env.name=zoo.toy_envs:match", "env.max_t=null",
                                                             f"env.kwargs={MATCH['MultiDiscrete']}"])
    with pytest.raises(SpecError, match="DQN does not act in MultiDiscrete action spaces"):
        build(spec, seed=0)
