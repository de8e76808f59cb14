"""TD3 and CrossQ: zoo's TD3 loss against TorchRL's TD3Loss forward (the oracle), delayed updates, scheduled
exploration, CrossQ checks."""

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictSequential
from torchrl.envs import ExplorationType, set_exploration_type
from torchrl.objectives import CrossQLoss, TD3Loss

from tests.conftest import SPECS
from zoo.components import build
from zoo.spec import SpecError, load_spec


def make_components(spec_file: str, *overrides: str):
    spec = load_spec(SPECS / spec_file, overrides=["env.num_envs=4", "agent.net.hid_layers=[32, 32]", *overrides])
    return build(spec, seed=0)


def make_batch(n: int = 8) -> TensorDict:
    g = torch.Generator().manual_seed(1)
    terminated = torch.tensor([[i % 3 == 0] for i in range(n)])
    return TensorDict({
        "observation": torch.randn(n, 3, generator=g), "action": torch.rand(n, 1, generator=g) * 4 - 2,
        "next": {"observation": torch.randn(n, 3, generator=g), "reward": torch.randn(n, 1, generator=g),
                 "terminated": terminated, "truncated": ~terminated, "done": torch.ones(n, 1, dtype=torch.bool)},
    }, batch_size=[n])


def grads(loss, out) -> list[torch.Tensor]:
    params = [p for p in loss.parameters() if p.requires_grad]
    found = torch.autograd.grad(out["loss_qvalue"] + out["loss_actor"], params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, found, strict=True)]


@pytest.mark.parametrize("target_noise", [0.2, 100.0])  # 100: the smoothing noise is clipped at 0.5 half-ranges
def test_td3_loss_matches_torchrl_td3loss_forward(target_noise):
    agent = make_components("td3_pendulum.yaml", f"agent.algorithm.target_noise={target_noise}").agent
    with torch.no_grad():  # targets differ from the online nets
        for p in agent.loss.target_qvalue_network_params.values(True, True):
            p.add_(0.1 * torch.randn_like(p))
        for p in agent.loss.target_actor_network_params.values(True, True):
            p.add_(0.1 * torch.randn_like(p))
    batch = make_batch()
    reference_batch = batch.clone()
    torch.manual_seed(5)  # the same smoothing noise: both draw it first
    ours = agent.loss(batch)
    torch.manual_seed(5)
    reference = TD3Loss.forward(agent.loss, reference_batch)
    for key in ("loss_qvalue", "loss_actor"):
        assert ours[key].item() == pytest.approx(reference[key].item(), rel=1e-4), key
    # priorities: max_i |Q_i - target| where TorchRL takes the squared error
    torch.testing.assert_close(batch["td_error"].pow(2), reference_batch["td_error"], rtol=1e-4, atol=1e-6)
    for g, ref in zip(grads(agent.loss, ours), grads(agent.loss, reference), strict=True):
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-5)
    torch.manual_seed(5)
    critic_only = agent.loss.critic_loss(batch.clone())
    assert set(critic_only.keys()) == {"loss_qvalue"}
    assert critic_only["loss_qvalue"].item() == ours["loss_qvalue"].item()


def test_td3_delays_actor_and_targets():
    agent = make_components("td3_pendulum.yaml", "agent.algorithm.policy_delay=2").agent
    target = agent.loss.target_actor_network_params.flatten_keys(".")
    first_target = {k: v.clone() for k, v in target.items()}
    agent.gradient_step(make_batch())  # step 0: actor + targets
    after_actor_step = [p.clone() for p in agent.params["actor"]]
    moved = {k: v.clone() for k, v in agent.loss.target_actor_network_params.flatten_keys(".").items()}
    assert any(not torch.equal(first_target[k], moved[k]) for k in moved)
    metrics, _ = agent.gradient_step(make_batch())  # step 1: critics only
    assert "loss_actor" not in metrics
    assert all(torch.equal(a, b) for a, b in zip(after_actor_step, agent.params["actor"], strict=True))
    now = agent.loss.target_actor_network_params.flatten_keys(".")
    assert all(torch.equal(moved[k], now[k]) for k in moved)


def test_td3_exploration_follows_frame_clock_and_draws_per_env():
    explore = "agent.algorithm.explore_var_spec"
    c = make_components("td3_pendulum.yaml", f"{explore}.name=linear_decay", f"{explore}.start_val=0.5",
                        f"{explore}.end_val=0.1", f"{explore}.end_step=1000")
    agent = c.agent
    assert c.exploration.sigma.item() == pytest.approx(0.5)
    c.exploration.step(500)  # as a TorchRL loop anneals it: the frames collected
    assert c.exploration.sigma.item() == pytest.approx(0.3)
    assert agent.policy.state_dict()["module.1.frames"].item() == 500  # in checkpoints, with the policy
    data = c.env.rollout(25, break_when_any_done=False)  # 4 envs x 25 steps: the update steps it by 100 frames
    assert agent.update(data, 600)["explore_var"].item() == pytest.approx(0.26)
    td = c.env.reset()
    noisy = agent.policy(td.clone())["action"]
    greedy = agent.actor(td.clone())["action"]
    differences = (noisy - greedy).flatten()
    assert differences.abs().min() > 0 and differences.std() > 0  # independent draws per env
    assert ((noisy >= -2) & (noisy <= 2)).all()


def test_td3_policy_draws_as_the_torchrl_sequence():
    c = make_components("td3_pendulum.yaml")
    sequence = TensorDictSequential(*c.agent.policy.module)  # TorchRL's actor + AdditiveGaussianModule
    assert c.agent.policy.state_dict().keys() == sequence.state_dict().keys()
    td = c.env.reset()
    td["observation"] = td["observation"] * 10  # large actions: the bounds clamp some
    for explore in (ExplorationType.RANDOM, ExplorationType.DETERMINISTIC):
        with set_exploration_type(explore):
            torch.manual_seed(3)
            expected = sequence(td.clone())["action"]
            torch.manual_seed(3)
            got = c.agent.policy(td.clone())["action"]
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("warmup", [0, 1000])
def test_crossq_loss_matches_torchrl_crossqloss_forward(warmup):
    loss = make_components("crossq_pendulum.yaml", f"agent.algorithm.brn_warmup_steps={warmup}").agent.loss
    params = loss.qvalue_network_params
    with torch.no_grad():  # running statistics away from their initial values, differing per critic
        for key, value in params.items(True, True):
            if key[-1] in ("running_mean", "running_var"):
                value.copy_(torch.rand_like(value) + (0.5 if key[-1] == "running_var" else -0.5))
            elif key[-1] == "num_batches_tracked":  # past warm-up: the renorm corrections r, d act
                value.fill_(warmup)
    start = params.clone()
    batch = make_batch(16)
    reference_batch = batch.clone()
    torch.manual_seed(5)  # the same draws: the next actions first, then the actor's
    ours = loss(batch)
    ours_stats = params.clone()
    params.update_(start)
    torch.manual_seed(5)
    reference = CrossQLoss.forward(loss, reference_batch)
    for key in ("loss_qvalue", "loss_actor", "loss_alpha", "entropy"):
        assert ours[key].item() == pytest.approx(reference[key].item(), rel=1e-4, abs=1e-6), key
    torch.testing.assert_close(batch["td_error"], reference_batch["td_error"], rtol=1e-4, atol=1e-6)
    for key, value in params.items(True, True):  # batch renorm statistics updated alike
        torch.testing.assert_close(ours_stats[key], value, rtol=1e-5, atol=1e-6, msg=str(key))
    for g, ref in zip(grads(loss, ours), grads(loss, reference), strict=True):
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-5)


def test_crossq_step_has_no_targets_and_rejects_prioritized_replay():
    c = make_components("crossq_pendulum.yaml")
    assert c.agent.target_updater is None
    assert not any("target" in name for name, _ in c.agent.loss.named_parameters())
    critic_before = [p.clone() for p in c.agent.params["critic"]]
    metrics, td_error = c.agent.gradient_step(make_batch(16))
    assert {"loss", "loss_actor", "alpha"} <= set(metrics) and td_error.shape == (16,)
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, c.agent.params["critic"], strict=True))
    metrics, td_error = c.agent.gradient_step(make_batch(16))  # a critic-only step (policy delay)
    assert set(metrics) == {"loss"} and td_error.shape == (16,)
    with pytest.raises(SpecError, match="agent.memory.name"):
        make_components("crossq_pendulum.yaml", "agent.memory.name=PrioritizedReplay")


def test_crossq_batch_renorm_warmup_counter_stops_at_warmup_steps():
    agent = make_components("crossq_pendulum.yaml", "agent.algorithm.brn_warmup_steps=2").agent
    for _ in range(5):  # TorchRL's own counter would reach 5, doubling the renorm corrections after 4 steps
        agent.gradient_step(make_batch(16))
    counters = [v for k, v in agent.loss.qvalue_network_params.flatten_keys(".").items() if "num_batches" in k]
    assert counters and all((c == 2).all() for c in counters)
