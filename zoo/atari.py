"""Atari (`ALE/<Game>-v5`) through ale-py's native vector env, with DeepMind-style preprocessing.

`ale_py.vector_env.AtariVectorEnv` steps all copies in C++ and preprocesses there: frame skip 4 with
max-pooling, no-op reset (up to 30), grayscale, 84x84 resize, a stack of 4 frames, uint8. We keep the v5
defaults (frameskip 4, sticky actions with probability 0.25; `env.kwargs.repeat_action_probability`
overrides them) and let TorchRL do the rest with transforms, in this order:

1. `RewardSum`, `StepCounter`: episode score and length from the raw reward, over all lives.
2. `EndOfLife` (when `env.episode_life`): `("next", "life_terminated")` = terminated or a life lost,
   `("next", "life_done")` = done or a life lost. They are not done keys, so the env does not reset on a
   lost life; learners read them through `zoo.envs.learning_keys(env)` to stop bootstrapping there.
3. `FireOnStart` (with `EndOfLife`, in games with a FIRE action): the first action of a game and after each
   lost life is FIRE, which launches the ball, as SB3's `FireResetEnv` does on its (episodic-life) resets.
   ale-py's own `use_fire_reset` did not launch the ball here with sticky actions (Breakout, 1500 NOOP
   steps, no life lost), and a greedy, untrained policy that never fires waits for the 27k-step time limit.
4. `RewardClipping(-1, 1)` (when `env.clip_reward`): the learner's reward, after the score is recorded.

Measured (tools/atari_speed.py env, Pong, 8 envs, random actions, frames per CPU-second on the shared 2-core
box): raw native env ~1.3k; native under `GymWrapper` ~0.7k (this chain ~0.6-0.7k); gymnasium `ALE/Pong-v5`
(grayscale) + TorchRL `F.interpolate` resize + `CatFrames` ~0.86k, but without max-pooling, no-op resets
or the life signal, which would cost more transforms. TorchRL's wrapper, not the emulator, sets the pace
either way; the native env is kept for its exact DeepMind preprocessing in C++.
"""

import re

import torch
from ale_py import Action, roms
from ale_py.vector_env import AtariVectorEnv
from gymnasium.vector import AutoresetMode
from tensordict import TensorDictBase
from torchrl.data import Composite, Unbounded
from torchrl.envs import (
    Compose,
    EnvBase,
    ExcludeTransform,
    GymWrapper,
    InitTracker,
    RewardClipping,
    RewardSum,
    StepCounter,
    Transform,
    TransformedEnv,
)

from zoo.spec import EnvSpec, SpecError, is_atari  # noqa: F401 (is_atari lives in zoo.spec, for validation)

LIFE_TERMINATED_KEY = "life_terminated"  # terminated, or a life was lost: no bootstrapping past it
LIFE_DONE_KEY = "life_done"  # done, or a life was lost: end of a learning episode (GAE traces stop)
V5_DEFAULTS = {"frameskip": 4, "repeat_action_probability": 0.25, "noop_max": 30}
INFO_KEYS_DROPPED = ("env_id", "frame_number", "episode_frame_number")


def rom_name(env_name: str) -> str:
    """`ALE/MsPacman-v5` -> `ms_pacman`, the ROM id ale-py's vector env takes."""
    match = re.fullmatch(r"ALE/(\w+)-v5", env_name)
    if match is None:
        raise SpecError("env.name", f"'{env_name}': Atari ids look like ALE/<Game>-v5 (e.g. ALE/Pong-v5)")
    game = re.sub(r"(?<!^)(?=[A-Z])", "_", match.group(1)).lower()
    if roms.get_rom_path(game) is None:
        raise SpecError("env.name", f"'{env_name}': no ROM '{game}' in ale-py")
    return game


class EndOfLife(Transform):
    """Writes `life_terminated` / `life_done` from the env's `lives` info: a learning episode ends with a life."""

    def __init__(self):
        super().__init__(in_keys=["lives"], out_keys=[LIFE_TERMINATED_KEY, LIFE_DONE_KEY])

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        lost = (next_tensordict["lives"] < tensordict["lives"]).unsqueeze(-1)
        next_tensordict[LIFE_TERMINATED_KEY] = next_tensordict["terminated"] | lost
        next_tensordict[LIFE_DONE_KEY] = next_tensordict["done"] | lost
        return next_tensordict

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        flag = torch.zeros((*tensordict_reset.batch_size, 1), dtype=torch.bool, device=tensordict_reset.device)
        tensordict_reset[LIFE_TERMINATED_KEY] = flag
        tensordict_reset[LIFE_DONE_KEY] = flag.clone()
        return tensordict_reset

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        shape = (*observation_spec.shape, 1)
        for key in (LIFE_TERMINATED_KEY, LIFE_DONE_KEY):
            observation_spec[key] = Unbounded(shape, dtype=torch.bool, device=observation_spec.device)
        return observation_spec


class FireOnStart(Transform):
    """Sends FIRE instead of the policy's action at a game's first step and after a lost life.

    The policy's action stays in the collected data (that step's action has no effect on the env).
    """

    def __init__(self, fire_index: int):
        super().__init__()
        self.fire_index = fire_index

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict["action"]
        fire = tensordict[LIFE_TERMINATED_KEY] | (tensordict["step_count"] == 0)  # root: from the previous step
        tensordict["action"] = torch.where(fire.reshape(action.shape), self.fire_index, action)
        return tensordict


def make_atari_vector_env(env_spec: EnvSpec, num_envs: int) -> AtariVectorEnv:
    """ale-py's vector env with v5 defaults; raw rewards (clipping is a transform, after the score)."""
    kwargs = {**V5_DEFAULTS, **env_spec.kwargs}
    if env_spec.max_t is not None:  # max_t counts agent steps, ALE counts emulator frames
        kwargs["max_num_frames_per_episode"] = env_spec.max_t * kwargs["frameskip"]
    for reserved in ("reward_clipping", "episodic_life", "autoreset_mode", "stack_num", "img_height", "img_width"):
        if reserved in kwargs:
            raise SpecError(f"env.kwargs.{reserved}", "is fixed by zoo's Atari preprocessing (use env.clip_reward, "
                            "env.episode_life)")
    try:
        return AtariVectorEnv(rom_name(env_spec.name), num_envs, autoreset_mode=AutoresetMode.SAME_STEP,
                              reward_clipping=False, episodic_life=False, **kwargs)
    except TypeError as err:
        raise SpecError("env.kwargs", f"rejected by ale_py AtariVectorEnv ({err})") from None


def make_atari_env(env_spec: EnvSpec, seed: int, num_envs: int, device: torch.device | str = "cpu") -> EnvBase:
    """TorchRL env over `num_envs` Atari games: uint8 [4, 84, 84] observations, raw scores, learning signals."""
    base = GymWrapper(make_atari_vector_env(env_spec, num_envs), categorical_action_encoding=True, device=device)
    transforms: list[Transform] = [RewardSum(), StepCounter(), InitTracker()]
    if env_spec.episode_life:
        transforms.append(EndOfLife())
        action_set = list(base.base_env._env.ale.get_action_set()) if isinstance(base, TransformedEnv) else []
        if Action.FIRE in action_set and env_spec.kwargs.get("use_fire_reset", True):
            transforms.append(FireOnStart(action_set.index(Action.FIRE)))
    if env_spec.clip_reward:
        transforms.append(RewardClipping(-1.0, 1.0))
    transforms.append(ExcludeTransform(*INFO_KEYS_DROPPED))
    # with same-step autoreset GymWrapper already returns a TransformedEnv (it swaps in terminal observations)
    env = base if isinstance(base, TransformedEnv) else TransformedEnv(base)
    env.append_transform(Compose(*transforms))
    env.set_seed(seed % (2**31 - num_envs))  # ale-py seeds sub-env i with seed + i, as a C int
    return env
