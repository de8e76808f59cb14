"""Small shipped envs for the action and observation spaces gymnasium's registry lacks (`env.name: zoo.toy_envs:match`).

`MatchEnv` shows a random target drawn from its action space each step and pays the share of the action's
components that equal it: a one-step-credit task any learner solves quickly (optimal return = episode length),
so the specs and tests that use it check that a space's whole path (flattened or one-hot observations, the
action distribution, its log-probs) learns, in seconds.
"""

import gymnasium as gym
import numpy as np

SPACES = ("Discrete", "MultiDiscrete", "MultiBinary")


class MatchEnv(gym.Env):
    """Observation: the target, in the action space's own kind (Discrete, MultiDiscrete or MultiBinary); reward: the
    share of action components equal to it; `episode_length` steps, then truncation."""

    metadata = {"render_modes": []}

    def __init__(self, space: str = "MultiDiscrete", n: int | list[int] = 3, episode_length: int = 16):
        if space not in SPACES:
            raise ValueError(f"space '{space}' is not one of {', '.join(SPACES)}")
        if space == "Discrete":
            self.action_space = gym.spaces.Discrete(int(n))
        elif space == "MultiDiscrete":
            self.action_space = gym.spaces.MultiDiscrete(list(n) if isinstance(n, list | tuple) else [n, n])
        else:
            self.action_space = gym.spaces.MultiBinary(int(n) if not isinstance(n, list | tuple) else len(n))
        self.observation_space = self.action_space
        self.episode_length, self.t, self.target = episode_length, 0, None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.action_space.seed(int(self.np_random.integers(2**31)))
        self.t, self.target = 0, self.action_space.sample()
        return self.target, {}

    def step(self, action):
        reward = float(np.mean(np.asarray(action) == np.asarray(self.target)))
        self.t += 1
        self.target = self.action_space.sample()
        return self.target, reward, False, self.t >= self.episode_length, {}


def match(space: str = "MultiDiscrete", n: int | list[int] = 3, episode_length: int = 16) -> gym.Env:
    """A `MatchEnv` (see there), as the `module:factory` custom env `zoo.toy_envs:match`."""
    return MatchEnv(space, n, episode_length)
