"""`PlainPolicy` (the collector's policy for PPO) against the `ProbabilisticActor` it stands for."""

import pytest
import torch
from torchrl.envs import ExplorationType, set_exploration_type

from zoo.algos.actor_critic import PlainPolicy, build_actor_critic
from zoo.envs import make_env
from zoo.spec import NetSpec

CASES = [("CartPole-v1", False, {}), ("CartPole-v1", True, {}), ("Pendulum-v1", False, {}),
         ("Pendulum-v1", True, {"tanh_squash": True}), ("CartPole-v1", False, {"one_hot": True}),
         # the rarer action_pdtypes draw through their torch distribution
         ("CartPole-v1", False, {"pdtype": "GumbelSoftmax"}), ("Pendulum-v1", True, {"pdtype": "Beta"}),
         ("LunarLanderContinuous-v3", False, {"pdtype": "MultivariateNormal"}),
         ("zoo.toy_envs:match", True, {"env": {"space": "MultiDiscrete", "n": [3, 4]}}),
         ("zoo.toy_envs:match", False, {"env": {"space": "MultiBinary", "n": 4}})]


@pytest.mark.parametrize("env_id, shared, options", CASES)
def test_plain_policy_draws_and_log_probs_as_the_probabilistic_actor(env_id, shared, options):
    one_hot = options.get("one_hot", False)
    env = make_env(env_id, num_envs=6, categorical_action_encoding=not one_hot, **options.get("env", {}))
    net_spec = NetSpec(hid_layers=[16], shared=shared)
    actor, _, _, nets = build_actor_critic(env, net_spec, pdtype=options.get("pdtype", "default"),
                                           tanh_squash=options.get("tanh_squash", False))
    policy = PlainPolicy(actor, nets, one_hot=one_hot, record_value=shared)
    td = env.reset()
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        torch.manual_seed(0)
        ours = policy(td.clone())
        torch.manual_seed(0)
        theirs = actor(td.clone())
        log_prob = actor.get_dist(ours.clone()).log_prob(ours["action"])
    assert ours["action"].shape == theirs["action"].shape and ours["action"].dtype == theirs["action"].dtype
    torch.testing.assert_close(ours["action_log_prob"], log_prob, rtol=1e-4, atol=1e-4)
    if not options.get("tanh_squash"):  # TanhNormal draws through its transforms: same law, other arithmetic
        torch.testing.assert_close(ours["action"], theirs["action"])
    assert ("state_value" in ours) == shared


def test_plain_policy_defers_to_the_actor_when_deterministic():
    env = make_env("CartPole-v1", num_envs=4)
    actor, _, _, nets = build_actor_critic(env, NetSpec(hid_layers=[16]))
    policy = PlainPolicy(actor, nets)
    td = env.reset()
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        torch.testing.assert_close(policy(td.clone())["action"], actor(td.clone())["action"])
        assert torch.equal(policy(td.clone())["action"], actor(td.clone())["logits"].argmax(-1))
