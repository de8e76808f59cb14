"""zoo's parts in a plain TorchRL loop (tools/torchrl_loop.py), and the exported actor loaded the TorchRL way."""

import sys

import pytest
import torch
from torch import nn
from torchrl.collectors import Collector
from torchrl.envs import ExplorationType, GymEnv, RewardSum, TransformedEnv, set_exploration_type
from torchrl.modules import MLP, QValueActor

from tests.conftest import ROOT, SPECS, only_run_dir, run_cli
from zoo.components import build
from zoo.spec import SpecError, load_spec

sys.path.insert(0, str(ROOT / "tools"))
import torchrl_loop  # noqa: E402  (a script under tools/, imported for its training functions)


@pytest.mark.learning
def test_plain_torchrl_loop_trains_zoo_dqn_parts():
    frames, score = torchrl_loop.train_dqn(max_frames=50_000, seed=0)
    assert score >= 475, (frames, score)


@pytest.mark.learning
def test_plain_torchrl_loop_trains_zoo_ppo_parts():
    frames, score = torchrl_loop.train_ppo(max_frames=30_000, seed=0)
    assert score >= 475, (frames, score)


def test_plain_collector_takes_zoo_parts_without_warnings(recwarn):
    parts = build(load_spec(SPECS / "dqn_cartpole.yaml"), seed=0)
    collector = Collector(parts.env, parts.policy, frames_per_batch=32, total_frames=32)
    data = next(iter(collector))
    collector.shutdown()
    assert data.numel() == 32
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)], [str(w.message) for w in recwarn]


def test_exported_actor_loads_strict_into_the_built_actor_and_a_torchrl_qvalue_actor(tmp_path):
    spec = SPECS / "dqn_cartpole.yaml"
    sets = ["-s", "env.max_frame=512", "-s", "meta.eval_frequency=256", "-s", "meta.eval_episodes=1",
            "-s", "agent.algorithm.training_start_step=256"]
    result = run_cli(str(spec), *sets, data_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    ckpt = only_run_dir(tmp_path) / "ckpt"
    state = torch.load(ckpt / "actor.pt", weights_only=True)
    assert (ckpt / "actor_best.pt").is_file()
    assert not any("eps" in key for key in state)  # no exploration buffers
    parts = build(load_spec(spec), seed=1)
    parts.actor.load_state_dict(state, strict=True)
    plain = QValueActor(MLP(in_features=4, out_features=2, num_cells=[128, 128], activation_class=nn.ReLU),
                        in_keys=["observation"], spec=parts.env.action_spec_unbatched, action_space="categorical")
    plain.load_state_dict(state, strict=True)  # a TorchRL user's own QValueActor of the spec's layout
    td = parts.env.reset()
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        assert torch.equal(plain(td.clone())["action"], parts.actor(td.clone())["action"])


@pytest.mark.parametrize("spec_file", ["dqn_cartpole.yaml", "ppo_cartpole.yaml", "a2c_gae_cartpole.yaml"])
def test_parts_built_for_a_one_hot_env_act_and_learn_in_it(spec_file):
    """TorchRL's default GymEnv codes discrete actions one-hot: parts built for it write one-hot actions."""
    env = TransformedEnv(GymEnv("CartPole-v1"), RewardSum())
    parts = build(load_spec(SPECS / spec_file), seed=0, env=env)
    collector = Collector(env, parts.policy, frames_per_batch=parts.agent.frames_per_batch, total_frames=-1,
                          auto_register_policy_transforms=False)
    data = next(iter(collector))
    collector.shutdown()
    assert data["action"].shape[-1] == 2 and torch.equal(data["action"].sum(-1), torch.ones(data.shape).long())
    metrics = parts.agent.update(data, frame=10_000)
    assert torch.isfinite(torch.stack([v.float() for v in metrics.values()])).all()
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        greedy = env.rollout(20, parts.actor)["action"]
    assert greedy.shape[-1] == 2 and torch.equal(greedy.sum(-1), torch.ones(greedy.shape[:-1]).long())
    assert parts.eval_env.action_spec_unbatched.shape == (2,)  # zoo's eval env follows the same encoding


def test_parts_that_need_integer_actions_refuse_a_one_hot_env():
    env = GymEnv("CartPole-v1")
    with pytest.raises(SpecError, match="integer-coded"):
        build(load_spec(SPECS / "sarsa_cartpole.yaml"), seed=0, env=env)
