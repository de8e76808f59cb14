"""Environments: gymnasium ids or `module:factory`, vectorized in one process and wrapped for TorchRL.

TorchRL's per-step cost is its TensorDict plumbing, not the env, so we amortize it by stepping `num_envs`
copies at once: one gymnasium `SyncVectorEnv` (autoreset DISABLED: TorchRL resets finished copies itself,
and the terminal observation stays in `("next", "observation")`) under one `GymWrapper`. `GymEnv(num_envs=)`
is avoided: with gymnasium 1.x it builds a next-step-autoreset env that corrupts terminal transitions.

Episode statistics come from `RewardSum` / `StepCounter` placed first, so returns are raw env rewards,
whatever reward transforms follow. `InitTracker` marks each episode's first step (`is_init`): TorchRL's
collectors look for it and, from torchrl 0.15, append one themselves to an env that lacks it.

Normalization (`env.normalize_obs`, `env.clip_obs`, `env.normalize_reward`) is a chain of transforms after
them: TorchRL's `VecNormV2` for observations (decay 1: an exact running mean / variance, as SB3's
VecNormalize), `ClipTransform` for the clip, and `ReturnScaling` for rewards. The eval env gets a frozen
copy of the observation statistics (synced from the train env before each evaluation) and no reward scaling.
"""

import copy
import dataclasses
import importlib
import warnings
from collections.abc import Callable
from functools import partial

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDictBase
from torch import nn
from torchrl.data import OneHot
from torchrl.envs import (
    ClipTransform,
    Compose,
    EnvBase,
    GymWrapper,
    InitTracker,
    RewardSum,
    StepCounter,
    Transform,
    TransformedEnv,
    VecNormV2,
)

from zoo.atari import LIFE_DONE_KEY, LIFE_TERMINATED_KEY, make_atari_env
from zoo.spec import EnvSpec, SpecError, is_atari

try:  # ALE ids (ALE/Pong-v5) need ale-py's registration; its ROMs ship with the package
    import ale_py

    gym.register_envs(ale_py)
except ImportError:  # pragma: no cover - ale-py is a dependency, but keep classic control usable without it
    ale_py = None


class OneHotObservation(gym.ObservationWrapper):
    """Discrete observations (FrozenLake, Taxi, ...) as float32 one-hot vectors, so MLPs can read them."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        self.start, self.n = int(space.start), int(space.n)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.n,), dtype=np.float32)

    def observation(self, observation) -> np.ndarray:
        one_hot = np.zeros(self.n, dtype=np.float32)
        one_hot[int(observation) - self.start] = 1.0
        return one_hot


def supported_spaces(env: gym.Env, env_name: str) -> gym.Env:
    """`env` with Box observations (Discrete ones one-hot encoded) and Discrete or Box actions, else SpecError."""
    if isinstance(env.observation_space, gym.spaces.Discrete):
        env = OneHotObservation(env)
    obs, action = env.observation_space, env.action_space
    if not isinstance(obs, gym.spaces.Box):
        raise SpecError("env.name", f"{env_name} has {type(obs).__name__} observations; supported: Box, and Discrete "
                        "(one-hot encoded)")
    if not isinstance(action, gym.spaces.Discrete | gym.spaces.Box):
        raise SpecError("env.name", f"{env_name} has {type(action).__name__} actions; supported: Discrete, Box")
    if obs.dtype == np.float64:  # MuJoCo envs observe float64; zoo's nets and buffers are float32
        env = gym.wrappers.DtypeObservation(env, np.float32)
    return env


def _env_factory(env_spec: EnvSpec) -> Callable[[], gym.Env]:
    """A zero-argument constructor of one gymnasium env with supported spaces (`supported_spaces`)."""
    make = _raw_env_factory(env_spec)
    return lambda: supported_spaces(make(), env_spec.name)


def _raw_env_factory(env_spec: EnvSpec) -> Callable[[], gym.Env]:
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


class ObsNorm(VecNormV2):
    """`VecNormV2` whose variance cannot go negative.

    TorchRL 0.14.1 normalizes with `sqrt(E[x^2] - E[x]^2)`; float32 rounding makes that slightly negative for
    constant features (BipedalWalker's lidar: -1.5e-8 at the first reset), and the NaN it gives crashes Box2D.
    """

    def _stateful_update(self, data: TensorDictBase) -> None:
        super()._stateful_update(data)
        for key in self._var.keys(True, True):
            second_moment = self._var[key]
            torch.maximum(second_moment, self._loc[key].pow(2), out=second_moment)


class ReturnScaling(Transform):
    """Divides rewards by the running std of each env's discounted return, then clips (SB3 VecNormalize).

    Hand-written: TorchRL has no return-based reward scaler. `VecNormV2(in_keys=["reward"])` standardizes the
    reward itself, and subtracting a mean reward changes the task wherever episodes terminate.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8):
        super().__init__(in_keys=["reward"], out_keys=["reward"])
        self.gamma, self.clip, self.eps = gamma, clip, eps
        self.register_buffer("returns", torch.zeros(num_envs, 1))
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("var", torch.ones(()))
        self.register_buffer("count", torch.tensor(1e-4))

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        reward = next_tensordict["reward"]
        self.returns.mul_(self.gamma).add_(reward)
        # parallel-variance merge of this step's returns into the running moments
        batch_mean, batch_var, n = self.returns.mean(), self.returns.var(unbiased=False), self.returns.numel()
        delta, total = batch_mean - self.mean, self.count + n
        self.var.copy_((self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total) / total)
        self.mean.add_(delta * n / total)
        self.count.copy_(total)
        self.returns.masked_fill_(next_tensordict["done"], 0.0)
        next_tensordict["reward"] = (reward / (self.var + self.eps).sqrt()).clamp(-self.clip, self.clip)
        return next_tensordict

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return tensordict_reset


def make_env(env_spec: EnvSpec | str, seed: int = 0, num_envs: int | None = None, device: torch.device | str = "cpu",
             *, gamma: float = 0.99, evaluation: bool = False, categorical_action_encoding: bool = True,
             **options) -> EnvBase:
    """TorchRL env for `env_spec`: `num_envs` (default `env_spec.num_envs`) copies, raw episode stats, seeded.

    `env_spec` is a spec's `env` section or a gymnasium id; with an id, `options` that name `EnvSpec` fields
    (`num_envs`, `max_t`, `normalize_obs`, ...) set them and the rest go to `gym.make`, e.g.
    `make_env("CartPole-v1", seed=0, num_envs=8)`. Discrete actions are integer-coded (`Categorical`) unless
    `categorical_action_encoding=False` (one-hot, TorchRL's `GymEnv` default; not for Atari).
    `evaluation=True` freezes observation statistics (see `sync_eval_env`) and leaves rewards unscaled.
    """
    if isinstance(env_spec, str):
        env_spec = env_spec_from_id(env_spec, **options)
    elif options:
        raise TypeError(f"make_env: keyword options {sorted(options)} are only taken with a gymnasium id")
    num_envs = env_spec.num_envs if num_envs is None else num_envs
    if is_atari(env_spec.name):  # ale-py's native vector env with DeepMind preprocessing (zoo/atari.py)
        return make_atari_env(env_spec, seed, num_envs, device)
    base = GymWrapper(make_vector_env(env_spec, num_envs), categorical_action_encoding=categorical_action_encoding,
                      device=device)
    transforms: list[Transform] = [RewardSum(), StepCounter(), InitTracker()]
    if env_spec.normalize_obs:
        obs_norm = ObsNorm(in_keys=["observation"], decay=1.0, eps=1e-4, reduce_batch_dims=True)
        transforms.append(obs_norm.freeze() if evaluation else obs_norm)
        if env_spec.clip_obs is not None:
            transforms.append(ClipTransform(in_keys=["observation"], low=-env_spec.clip_obs, high=env_spec.clip_obs))
    if env_spec.normalize_reward and not evaluation:
        transforms.append(ReturnScaling(num_envs, gamma))
    with warnings.catch_warnings():  # VecNormV2 calls batched envs "experimental"; tested in tests/unit
        warnings.filterwarnings("ignore", message="Support of ObsNorm", category=UserWarning)
        env = TransformedEnv(base, Compose(*transforms))
        _ = env.output_spec  # built (and cached) here: ClipTransform's spec rebuilds its parent, which warns again
    env.set_seed(seed)
    return env


def env_spec_from_id(name: str, **options) -> EnvSpec:
    """An `EnvSpec` for gymnasium id `name`: options naming `EnvSpec` fields set them, the rest are `gym.make`
    keyword arguments."""
    fields = {f.name for f in dataclasses.fields(EnvSpec)} - {"name", "kwargs"}
    spec_options = {k: v for k, v in options.items() if k in fields}
    kwargs = {k: v for k, v in options.items() if k not in fields}
    return EnvSpec(name=name, **{"max_frame": 1, **spec_options}, kwargs=kwargs)


def normalizers(env: EnvBase) -> nn.ModuleDict:
    """The env's stateful normalization transforms (their statistics belong in checkpoints)."""
    found = {}
    transforms = env.transform if isinstance(env, TransformedEnv) else ()
    for transform in transforms if isinstance(transforms, Compose | tuple) else (transforms,):
        if isinstance(transform, VecNormV2):
            found["obs"] = transform
        elif isinstance(transform, ReturnScaling):
            found["reward"] = transform
    return nn.ModuleDict(found)


def sync_eval_env(env: EnvBase, eval_env: EnvBase) -> None:
    """Copy the train env's observation statistics into the eval env's frozen normalizer."""
    source, target = normalizers(env), normalizers(eval_env)
    if "obs" in source and "obs" in target:
        target["obs"].load_state_dict(copy.deepcopy(source["obs"].state_dict()))


def plain_vector_env(env: EnvBase) -> gym.vector.VectorEnv | None:
    """The gymnasium vector env under `env` when TorchRL adds nothing to its observations (only the episode
    statistics and init-tracking transforms), else None. Evaluation steps such an env directly: see
    `zoo.session.episode_returns`."""
    if not isinstance(env, TransformedEnv) or not isinstance(env.base_env, GymWrapper):
        return None
    if not all(isinstance(t, RewardSum | StepCounter | InitTracker) for t in env.transform):
        return None
    vector_env = env.base_env._env
    return vector_env if isinstance(vector_env, gym.vector.VectorEnv) else None


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
        "one_hot": isinstance(action_spec, OneHot),  # else integer-coded (Categorical) or continuous
    }
