"""Environments: gymnasium ids or `module:factory`, vectorized in one process and wrapped for TorchRL.

TorchRL's per-step cost is its TensorDict plumbing, not the env, so we amortize it by stepping `num_envs`
copies at once: one gymnasium `SyncVectorEnv` (autoreset DISABLED: TorchRL resets finished copies itself,
and the terminal observation stays in `("next", "observation")`) under one `GymWrapper`. `GymEnv(num_envs=)`
is avoided: with gymnasium 1.x it builds a next-step-autoreset env that corrupts terminal transitions.

Episode statistics come from `RewardSum` / `StepCounter` placed first, so returns are raw env rewards,
whatever reward transforms follow.
"""

import importlib
from collections.abc import Callable
from functools import partial

import gymnasium as gym
import torch
from torchrl.envs import Compose, EnvBase, GymWrapper, RewardSum, StepCounter, TransformedEnv

from zoo.atari import LIFE_DONE_KEY, LIFE_TERMINATED_KEY, is_atari, make_atari_env
from zoo.spec import EnvSpec, SpecError

try:  # ALE ids (ALE/Pong-v5) need ale-py's registration; its ROMs ship with the package
    import ale_py

    gym.register_envs(ale_py)
except ImportError:  # pragma: no cover - ale-py is a dependency, but keep classic control usable without it
    ale_py = None


def _env_factory(env_spec: EnvSpec) -> Callable[[], gym.Env]:
    """A zero-argument constructor of one gymnasium env, checked once so errors name the spec field."""
    kwargs = dict(env_spec.kwargs)
    if ":" in env_spec.name and "/" not in env_spec.name.split(":")[0]:
        module_name, _, attr = env_spec.name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise SpecError("env.name", f"cannot load custom env factory '{env_spec.name}' ({err})") from None
        make = partial(factory, **kwargs)
        if env_spec.max_t is not None:
            return lambda: gym.wrappers.TimeLimit(make(), env_spec.max_t)
        return make
    if env_spec.name not in gym.registry:
        close = gym.envs.registration.find_highest_version(None, env_spec.name.split("-v")[0])
        hint = f"; did you mean '{env_spec.name.split('-v')[0]}-v{close}'?" if close is not None else ""
        raise SpecError("env.name", f"unknown gymnasium id '{env_spec.name}'{hint}")
    if env_spec.max_t is not None:
        kwargs["max_episode_steps"] = env_spec.max_t
    return partial(gym.make, env_spec.name, **kwargs)


def make_vector_env(env_spec: EnvSpec, num_envs: int) -> gym.vector.VectorEnv:
    """A gymnasium sync vector env of `num_envs` copies with autoreset disabled."""
    factory = _env_factory(env_spec)
    try:
        return gym.vector.SyncVectorEnv([factory] * num_envs, autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    except TypeError as err:
        raise SpecError("env.kwargs", f"rejected by the env constructor ({err})") from None


def make_env(env_spec: EnvSpec, seed: int, num_envs: int | None = None, device: torch.device | str = "cpu") -> EnvBase:
    """TorchRL env for `env_spec`: `num_envs` (default `env_spec.num_envs`) copies, raw episode stats, seeded."""
    num_envs = env_spec.num_envs if num_envs is None else num_envs
    if is_atari(env_spec.name):  # ale-py's native vector env with DeepMind preprocessing (zoo/atari.py)
        return make_atari_env(env_spec, seed, num_envs, device)
    base = GymWrapper(make_vector_env(env_spec, num_envs), categorical_action_encoding=True, device=device)
    env = TransformedEnv(base, Compose(RewardSum(), StepCounter()))
    env.set_seed(seed)
    return env


def learning_keys(env: EnvBase) -> tuple[str, str]:
    """(done, terminated) keys under "next" that learners should cut traces / stop bootstrapping on.

    Atari with `env.episode_life` ends a learning episode with each lost life while the game (and the
    recorded score) goes on; everywhere else these are the env's own `done` / `terminated`.
    """
    if LIFE_TERMINATED_KEY in env.observation_spec:
        return LIFE_DONE_KEY, LIFE_TERMINATED_KEY
    return "done", "terminated"


def env_info(env: EnvBase) -> dict[str, object]:
    """Shapes and kinds of the env's observation and action spaces, for builders and --dry-run."""
    obs_spec = env.observation_spec["observation"]
    action_spec = env.action_spec_unbatched if hasattr(env, "action_spec_unbatched") else env.action_spec
    discrete = hasattr(action_spec.space, "n")
    return {
        "obs_shape": tuple(obs_spec.shape[len(env.batch_size):]),
        "obs_dtype": obs_spec.dtype,
        "discrete": discrete,
        "num_actions": int(action_spec.space.n) if discrete else None,
        "action_dim": None if discrete else int(action_spec.shape[-1]),
        "action_spec": action_spec,
    }
