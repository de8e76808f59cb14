"""Discrete CrossQ (zoo/algos/crossq.py `DiscreteCrossQLoss`): SLM-Lab's target and losses, and a short build."""

import math

import torch
from tensordict import TensorDict
from torch import nn

from zoo.algos.crossq import CrossQAlgorithmSpec, DiscreteCrossQLoss
from zoo.components import build
from zoo.envs import env_spec_from_id
from zoo.memory import FrameStackReplay
from zoo.nets import ConvTorso
from zoo.spec import AgentSpec, MemorySpec, NetSpec, Spec


def test_target_is_the_mean_of_the_twin_next_values_and_the_actor_uses_their_min():
    torch.manual_seed(0)
    actor = nn.Linear(3, 2)
    critics = nn.ModuleList(nn.Linear(3, 2) for _ in range(2))
    loss = DiscreteCrossQLoss(actor, critics, gamma=0.9, alpha_init=0.5, fixed_alpha=False, target_entropy=0.1)
    obs, next_obs = torch.randn(4, 3), torch.randn(4, 3)
    batch = TensorDict({"observation": obs, "action": torch.tensor([0, 1, 1, 0]),
                        "next": {"observation": next_obs, "reward": torch.ones(4, 1),
                                 "terminated": torch.tensor([[False], [False], [True], [False]])}}, batch_size=[4])
    out = loss(batch)
    with torch.no_grad():
        log_p = torch.log_softmax(actor(next_obs), -1)
        q_next = (critics[0](next_obs) + critics[1](next_obs)) / 2
        v = (log_p.exp() * (q_next - 0.5 * log_p)).sum(-1)
        target = 1 + 0.9 * torch.tensor([1.0, 1.0, 0.0, 1.0]) * v
        preds = [c(obs).gather(-1, batch["action"].unsqueeze(-1)).squeeze(-1) for c in critics]
        expected_q = sum(((p - target) ** 2).mean() for p in preds)
        log_pi = torch.log_softmax(actor(obs), -1)
        min_q = torch.min(critics[0](obs), critics[1](obs))
        expected_actor = (log_pi.exp() * (0.5 * log_pi - min_q)).sum(-1).mean()
    assert torch.allclose(out["loss_qvalue"], expected_q, atol=1e-6)
    assert torch.allclose(out["loss_actor"], expected_actor, atol=1e-6)
    assert torch.allclose(batch["td_error"], (torch.min(*preds) - target).abs(), atol=1e-6)
    assert math.isclose(float(out["alpha"]), 0.5, rel_tol=1e-6)


def test_discrete_crossq_builds_and_steps_on_cartpole():
    spec = Spec(agent=AgentSpec(algorithm=CrossQAlgorithmSpec(name="CrossQ", training_start_step=0),
                                net=NetSpec(hid_layers=[16])),
                env=env_spec_from_id("CartPole-v1", max_frame=64))
    components = build(spec, seed=0)
    data = next(iter(components.collector))
    before = [p.clone() for p in components.agent.optimizers["critic"].param_groups[0]["params"]]
    metrics = components.agent.update(data, int(data.numel()))
    assert torch.isfinite(metrics["loss"])
    after = components.agent.optimizers["critic"].param_groups[0]["params"]
    assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))


def test_discrete_crossq_on_pixels_stores_frames_once_and_tunes_alpha_at_its_own_rate():
    net = NetSpec(type="ConvNet", conv_hid_layers=[[8, 8, 4], [8, 4, 2]], hid_layers=[16], critic_hid_layers=[32])
    algo = CrossQAlgorithmSpec(name="CrossQ", training_start_step=0, alpha_lr=1e-5)
    spec = Spec(agent=AgentSpec(algorithm=algo, net=net, memory=MemorySpec(batch_size=8)),
                env=env_spec_from_id("ALE/Pong-v5", max_frame=64))
    agent = build(spec, seed=0).agent
    assert isinstance(agent.buffer, FrameStackReplay)
    assert agent.optimizers["alpha"].param_groups[0]["lr"] == 1e-5
    assert any(isinstance(m, ConvTorso) for m in agent.loss.qvalue_network.modules())
