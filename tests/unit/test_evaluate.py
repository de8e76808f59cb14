"""Evaluation: the direct gymnasium path gives the same episodes as TorchRL's stepping."""

import torch
from tensordict.nn import TensorDictModule
from torch import nn

from zoo.envs import make_env, plain_vector_env
from zoo.session import episode_returns, torchrl_episode_returns
from zoo.spec import EnvSpec


class LeanLeft(nn.Module):
    """A fixed, state-dependent CartPole policy: push late toward the pole's lean (episodes of varied length)."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs[..., 2] > 0.02).long()


def test_vector_path_matches_torchrl_stepping():
    env_spec = EnvSpec(name="CartPole-v1", num_envs=6, max_frame=1000, max_t=60)
    actor = TensorDictModule(LeanLeft(), ["observation"], ["action"])
    fast_env, slow_env = make_env(env_spec, seed=3), make_env(env_spec, seed=3)
    assert plain_vector_env(fast_env) is not None
    for _ in range(2):  # the second evaluation continues each env's RNG the same way
        fast, slow = episode_returns(fast_env, actor), torchrl_episode_returns(slow_env, actor, 1_000_000)
        torch.testing.assert_close(fast[0].float(), slow[0].float())
        torch.testing.assert_close(fast[1].float(), slow[1].float())
    assert len(set(fast[1].tolist())) > 1  # episodes of different lengths: some truncated at max_t=60, some not


def test_normalized_env_keeps_torchrl_stepping():
    env = make_env(EnvSpec(name="CartPole-v1", num_envs=2, max_frame=1000, normalize_obs=True), seed=0,
                   evaluation=True)
    assert plain_vector_env(env) is None
