"""VizDoom (`Vizdoom<Scenario>-v1`) through ViZDoom's own gymnasium wrapper, preprocessed for pixel learners.

Each copy is `gym.make(id)` from `vizdoom.gymnasium_wrapper` (the optional extra `zoo[vizdoom]`), then:

1. The game renders grayscale itself (`screen_format: GRAY8`) and repeats each action for `env.frame_skip`
   tics (`make_action(action, tics)`, rewards summed over them): both are cheaper in the engine than after it.
2. `DoomScreen`: the Dict observation (`screen` + `gamevariables`) becomes the screen alone, resized to
   `env.screen_size` ([height, width]) as uint8 [1, height, width]; ConvNets scale pixels to [0, 1] themselves.
   Game variables (health, ammo) are dropped: zoo's nets take one observation tensor.
3. `FrameStackObservation` (when `env.frame_stack` > 1): the newest frames as channels, zeros before an
   episode's first frame, the layout `FrameStackReplay` rebuilds stacks from (as Atari's).
4. A scenario's timeout (`episode_timeout` in its .cfg) ends the episode as a truncation only: ViZDoom reports
   it as terminated too, which would stop value bootstrapping at a time limit the agent cannot observe.

The vector env, the raw episode returns (`episode_reward`) and `env.reward_scale` (the learner's rewards only)
come from `zoo.envs`, as for any gymnasium id.
"""

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from zoo.spec import EnvSpec, SpecError

RESERVED_KWARGS = {"frame_skip": "env.frame_skip", "screen_format": "zoo's grayscale frames"}


def import_vizdoom_envs() -> None:
    """Register ViZDoom's gymnasium ids, or a one-line error naming the extra to install."""
    try:
        import vizdoom.gymnasium_wrapper  # noqa: F401 (registers the Vizdoom* ids)
    except ImportError:
        raise SpecError("env.name", "VizDoom envs need the vizdoom package: pip install -e \".[vizdoom]\"") from None


class DoomScreen(gym.ObservationWrapper):
    """ViZDoom's Dict observation -> its grayscale screen resized to [1, height, width], uint8."""

    def __init__(self, env: gym.Env, height: int, width: int):
        super().__init__(env)
        self.size = (height, width)
        self.observation_space = gym.spaces.Box(0, 255, (1, height, width), dtype=np.uint8)

    def observation(self, observation: dict) -> np.ndarray:
        screen = torch.from_numpy(observation["screen"]).permute(2, 0, 1)[None].float()  # [1, 1, H, W]
        if screen.shape[-2:] != self.size:  # antialiased bilinear, as PIL / cv2 INTER_AREA shrink
            screen = F.interpolate(screen, size=self.size, mode="bilinear", antialias=True, align_corners=False)
        return screen[0].round_().clamp_(0, 255).to(torch.uint8).numpy()

    def step(self, action):
        observation, reward, terminated, truncated, info = super().step(action)
        return observation, reward, terminated and not truncated, truncated, info


def vizdoom_factory(env_spec: EnvSpec) -> Callable[[], gym.Env]:
    """A zero-argument constructor of one preprocessed VizDoom env, checked once so errors name the spec field."""
    import_vizdoom_envs()
    if env_spec.name not in gym.registry:
        known = sorted(name for name in gym.registry if name.startswith("Vizdoom") and "-S" not in name)
        raise SpecError("env.name", f"unknown VizDoom id '{env_spec.name}'; allowed: {', '.join(known)}")
    for key, field in RESERVED_KWARGS.items():
        if key in env_spec.kwargs:
            raise SpecError(f"env.kwargs.{key}", f"is set by {field}; remove it")
    kwargs = {**env_spec.kwargs, "frame_skip": env_spec.frame_skip, "screen_format": "GRAY8"}
    if env_spec.max_t is not None:
        kwargs["max_episode_steps"] = env_spec.max_t
    height, width = env_spec.screen_size

    def make() -> gym.Env:
        env = DoomScreen(gym.make(env_spec.name, **kwargs), height, width)
        if env_spec.frame_stack > 1:
            env = gym.wrappers.FrameStackObservation(env, env_spec.frame_stack, padding_type="zero")
            env = gym.wrappers.ReshapeObservation(env, (env_spec.frame_stack, height, width))
        return env

    try:
        make().close()
    except (TypeError, ValueError, RuntimeError) as err:  # ViZDoom's set_config rejects unknown options
        raise SpecError("env.kwargs", f"rejected by ViZDoom ({err})") from None
    return make
