"""VizDoom: preprocessing shapes and dtypes, raw returns vs scaled learning rewards, truncation, bad settings
(spec-level checks of the VizDoom fields: tests/unit/test_validation.py)."""

import importlib.util
import sys

import pytest
import torch

from zoo.envs import make_env
from zoo.spec import EnvSpec, SpecError
from zoo.vizdoom import import_vizdoom_envs

needs_vizdoom = pytest.mark.skipif(importlib.util.find_spec("vizdoom") is None, reason="needs the vizdoom extra")

BASIC = {"frame_skip": 4, "kwargs": {"screen_resolution": "RES_160X120"}}


def doom(num_envs: int = 2, **fields) -> EnvSpec:
    return EnvSpec(**{"name": "VizdoomBasic-v1", "num_envs": num_envs, "max_frame": 1000, **BASIC, **fields})


def constant_action_rollout(env, steps: int, action: int):
    """Steps with one fixed action (through step_and_maybe_reset, as the collector does); returns `[N, T]`."""
    td, steps_taken = env.reset(), []
    for _ in range(steps):
        td["action"] = torch.full(env.batch_size, action, dtype=torch.int64)
        td, next_td = env.step_and_maybe_reset(td)
        steps_taken.append(td)
        td = next_td
    return torch.stack(steps_taken, dim=1)


@needs_vizdoom
def test_screen_is_a_uint8_stack_of_resized_gray_frames():
    env = make_env(doom(frame_stack=4, screen_size=[48, 64]), seed=0)
    assert env.observation_spec["observation"].shape == (2, 4, 48, 64)
    data = env.rollout(20, break_when_any_done=False)
    obs = data["observation"]
    assert obs.shape == (2, 20, 4, 48, 64) and obs.dtype == torch.uint8
    assert data["next", "observation"].dtype == torch.uint8
    assert torch.equal(obs[:, 0, :3], torch.zeros_like(obs[:, 0, :3]))  # zeros before the first frame
    assert obs[:, 0, 3].float().std() > 0  # a rendered screen, not a blank one
    # the stack shifts by one frame per step (no episode ends in 20 steps of random play: it needs a kill)
    alive = ~data["next", "done"].squeeze(-1).any(0)
    assert torch.equal(data["next", "observation"][:, alive, :3], obs[:, alive, 1:])


@needs_vizdoom
def test_episode_returns_are_raw_and_the_learner_sees_scaled_rewards():
    spec = doom(num_envs=1, reward_scale=0.01)
    train = constant_action_rollout(make_env(spec, seed=0), 10, action=1)[0]  # always shoot: -5 per shot
    raw = torch.diff(train["next", "episode_reward"].squeeze(-1), prepend=torch.zeros(1))
    assert raw.min() < -1  # living reward -1 per tic x 4 tics, plus -5 per shot
    torch.testing.assert_close(train["next", "reward"].squeeze(-1), raw * 0.01)
    evaluation = constant_action_rollout(make_env(spec, seed=0, evaluation=True), 10, action=1)[0]
    torch.testing.assert_close(evaluation["next", "reward"].squeeze(-1), raw)


@needs_vizdoom
def test_scenario_timeout_is_a_truncation():
    # basic.cfg ends an episode after 300 tics: 75 steps of 4 tics without a kill (action 0 presses nothing)
    data = constant_action_rollout(make_env(doom(num_envs=1), seed=0), 76, action=0)[0]
    done = data["next", "done"].squeeze(-1)
    assert done.nonzero().squeeze(-1).tolist() == [74]
    assert data["next", "truncated"][74].item() and not data["next", "terminated"][74].item()
    assert data["next", "episode_reward"][74].item() == -300


@needs_vizdoom
def test_frame_skip_sums_rewards_over_tics():
    one = constant_action_rollout(make_env(doom(num_envs=1, frame_skip=1), seed=0), 3, action=0)[0]
    four = constant_action_rollout(make_env(doom(num_envs=1), seed=0), 3, action=0)[0]
    assert one["next", "reward"].flatten().tolist() == [-1.0] * 3
    assert four["next", "reward"].flatten().tolist() == [-4.0] * 3


@needs_vizdoom
@pytest.mark.parametrize(("fields", "message"), [
    ({"name": "VizdoomNoSuchScenario-v1"}, "env.name: unknown VizDoom id 'VizdoomNoSuchScenario-v1'; allowed: "),
    ({"kwargs": {"frame_skip": 2}}, "env.kwargs.frame_skip: is set by env.frame_skip"),
    ({"kwargs": {"screen_format": "RGB24"}}, "env.kwargs.screen_format: is set by zoo's grayscale frames"),
])
def test_bad_vizdoom_settings_name_the_field(fields, message):
    spec = doom(**fields)
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_env(spec, seed=0)


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vizdoom.gymnasium_wrapper", None)  # import fails as when not installed
    with pytest.raises(SpecError, match=r'pip install -e "\.\[vizdoom\]"'):
        import_vizdoom_envs()
