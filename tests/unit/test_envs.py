"""zoo's `VectorGymEnv`: its fused `step_and_maybe_reset` must equal TorchRL's generic path on the same env."""

import pytest
import torch
from torchrl.envs import EnvBase, InitTracker, RewardSum, StepCounter, TransformedEnv
from torchrl.envs.libs.gym import GymWrapper
from torchrl.envs.utils import check_env_specs

from zoo.envs import VectorGymEnv, env_spec_from_id, make_env, make_vector_env


def _rollouts(env_id: str, fused: bool, steps: int = 120, **options) -> list:
    env = make_env(env_id, seed=3, num_envs=4, **options)
    assert isinstance(env, VectorGymEnv)
    torch.manual_seed(0)
    td, out = env.reset(), []
    for _ in range(steps):
        td["action"] = env.full_action_spec["action"].rand()
        step, td = env.step_and_maybe_reset(td) if fused else EnvBase._step_and_maybe_reset(env, td)
        out.append((step.clone(), td.clone()))
    return out


@pytest.mark.parametrize("env_id, options", [("CartPole-v1", {}), ("Pendulum-v1", {"max_t": 30}),
                                             ("CartPole-v1", {"categorical_action_encoding": False})])
def test_fused_step_and_maybe_reset_equals_torchrl_generic_path(env_id, options):
    fused, generic = _rollouts(env_id, True, **options), _rollouts(env_id, False, **options)
    resets = 0
    for (step_f, carry_f), (step_g, carry_g) in zip(fused, generic, strict=True):
        assert set(step_f.keys(True, True)) == set(step_g.keys(True, True))
        assert set(carry_f.keys(True, True)) == set(carry_g.keys(True, True))
        for key in step_g.keys(True, True):
            assert step_f[key].shape == step_g[key].shape and step_f[key].dtype == step_g[key].dtype, key
            torch.testing.assert_close(step_f[key], step_g[key], msg=str(key))
        # the carry's "action" is the last input, overwritten by the next policy call: TorchRL's reset zeroes it
        # for the copies it resets, the fused path leaves it
        for key in carry_g.exclude("action").keys(True, True):
            torch.testing.assert_close(carry_f[key], carry_g[key], msg=str(key))
        resets += int(step_g["next", "done"].sum())
    assert resets > 0  # the masked reset was exercised


def test_episode_statistics_match_torchrl_transforms():
    """Returns, lengths and init flags as `RewardSum` / `StepCounter` / `InitTracker` on `GymWrapper` give them."""
    ours = make_env("CartPole-v1", seed=5, num_envs=3)
    theirs = TransformedEnv(GymWrapper(make_vector_env(env_spec_from_id("CartPole-v1"), 3),
                                       categorical_action_encoding=True),
                            RewardSum()).append_transform(StepCounter()).append_transform(InitTracker())
    theirs.set_seed(5)
    torch.manual_seed(1)
    actions = [ours.full_action_spec["action"].rand() for _ in range(80)]
    a = ours.rollout(80, policy=lambda td: td.set("action", actions[int(td["step_count"].max()) % 80]),
                     break_when_any_done=False)
    b = theirs.rollout(80, policy=lambda td: td.set("action", actions[int(td["step_count"].max()) % 80]),
                       break_when_any_done=False)
    for key in ("episode_reward", "step_count", "is_init", ("next", "episode_reward"), ("next", "step_count"),
                ("next", "done"), ("next", "observation")):
        torch.testing.assert_close(a[key], b[key], msg=str(key))


def test_vector_gym_env_passes_check_env_specs():
    check_env_specs(make_env("CartPole-v1", num_envs=2))
    check_env_specs(make_env("Pendulum-v1", num_envs=2, normalize_obs=True))


def test_box_actions_are_clipped_before_the_env_charges_for_them():
    """Hopper charges `1e-3 * sum(action ** 2)`: an action 5 times the box must cost what the box's edge costs."""
    rewards = []
    for value in (5.0, 1.0):
        env = make_env("Hopper-v5", seed=0, num_envs=2)
        td = env.reset()
        td["action"] = torch.tensor([[value, -value, 0.0], [0.0, 0.0, 0.0]])
        rewards.append(env.step(td)["next", "reward"])
    assert env.full_action_spec["action"].space.high[0].tolist() == [1.0, 1.0, 1.0]  # the space keeps its bounds
    torch.testing.assert_close(rewards[0], rewards[1])
