"""Environments: gymnasium ids or `module:factory`, vectorized in one process and wrapped for TorchRL.

TorchRL's per-step cost is its TensorDict plumbing, not the env, so we amortize it by stepping `num_envs`
copies at once: one gymnasium `SyncVectorEnv` (autoreset DISABLED: TorchRL resets finished copies itself,
and the terminal observation stays in `("next", "observation")`) under zoo's `VectorGymEnv`, a `GymWrapper`
subclass. `GymEnv(num_envs=)` is avoided: with gymnasium 1.x it builds a next-step-autoreset env that corrupts
terminal transitions.

`VectorGymEnv` writes the keys of TorchRL's `RewardSum`, `StepCounter` and `InitTracker` itself
(`episode_reward`, `step_count`, `is_init`: raw env rewards, whatever reward transforms follow) and fuses
`step_and_maybe_reset` into one pass (see its docstring); TorchRL's collectors look for `is_init`.

Normalization (`env.normalize_obs`, `env.clip_obs`, `env.normalize_reward`) is a chain of transforms on top:
TorchRL's `VecNormV2` for observations (decay 1: an exact running mean / variance, as SB3's VecNormalize),
`ClipTransform` for the clip, and `ReturnScaling` for rewards. The eval env gets a frozen copy of the
observation statistics (synced from the train env before each evaluation) and no reward scaling (nor
`env.reward_scale`'s `RewardScaling`). VizDoom ids get their pixel preprocessing in zoo/vizdoom.py. Without
normalization the env is the bare `VectorGymEnv` (a `TransformedEnv` would bypass its fused step).
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
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torchrl.data import Bounded, Categorical, OneHot, TensorSpec, Unbounded
from torchrl.envs import (
    ClipTransform,
    Compose,
    EnvBase,
    GymWrapper,
    RewardScaling,
    Transform,
    TransformedEnv,
    VecNormV2,
)

from zoo.atari import LIFE_DONE_KEY, LIFE_TERMINATED_KEY, make_atari_env
from zoo.spec import EnvSpec, SpecError, is_atari, is_vizdoom
from zoo.vizdoom import vizdoom_factory

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


FLAT_LEAVES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
ACTION_SPACES = (gym.spaces.Discrete, gym.spaces.Box, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


class ClipBoxAction(gym.ActionWrapper):
    """Clips Box actions into the action space before the env sees them, keeping the space's bounds.

    Why: unsquashed Gaussian samples leave the box, and MuJoCo envs charge their control cost on the action as
    given (`ctrl_cost_weight * sum(action ** 2)`; only the simulator clamps it), so out-of-box samples cost more
    than the motors deliver. CleanRL (`ClipAction`) and SB3 (`np.clip` before `env.step`) clip there; gymnasium's
    `ClipAction` would also widen the space to infinite bounds, which zoo's actors rescale by.
    """

    def action(self, action: np.ndarray) -> np.ndarray:
        return np.clip(action, self.action_space.low, self.action_space.high)


def _flattenable(space: gym.Space) -> bool:
    """A Dict / Tuple (nested at will) of Box, Discrete, MultiDiscrete and MultiBinary spaces."""
    if isinstance(space, gym.spaces.Dict):
        return all(_flattenable(sub) for sub in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return all(_flattenable(sub) for sub in space.spaces)
    return isinstance(space, FLAT_LEAVES)


def supported_spaces(env: gym.Env, env_name: str) -> gym.Env:
    """`env` with Box observations, else SpecError: Discrete ones one-hot encoded, Dict / Tuple ones flattened into
    one float32 vector (gymnasium's `FlattenObservation`: Discrete parts one-hot, Box parts raveled); Discrete, Box,
    MultiDiscrete or MultiBinary actions, Box ones clipped into their bounds (`ClipBoxAction`)."""
    obs = env.observation_space
    if isinstance(obs, gym.spaces.Discrete):
        env = OneHotObservation(env)
    elif isinstance(obs, gym.spaces.Dict | gym.spaces.Tuple | gym.spaces.MultiDiscrete | gym.spaces.MultiBinary):
        if not _flattenable(obs):
            raise SpecError("env.name", f"{env_name} has {type(obs).__name__} observations with parts that cannot be "
                            "flattened into a vector; supported parts: Box, Discrete, MultiDiscrete, MultiBinary")
        env = gym.wrappers.DtypeObservation(gym.wrappers.FlattenObservation(env), np.float32)  # one-hot parts: int
    obs, action = env.observation_space, env.action_space
    if not isinstance(obs, gym.spaces.Box):
        raise SpecError("env.name", f"{env_name} has {type(obs).__name__} observations; supported: Box, Discrete "
                        "(one-hot encoded), Dict / Tuple / MultiDiscrete / MultiBinary (flattened)")
    if not isinstance(action, ACTION_SPACES):
        raise SpecError("env.name", f"{env_name} has {type(action).__name__} actions; supported: Discrete, Box, "
                        "MultiDiscrete, MultiBinary")
    if obs.dtype == np.float64:  # MuJoCo envs observe float64; zoo's nets and buffers are float32
        env = gym.wrappers.DtypeObservation(env, np.float32)
    if isinstance(action, gym.spaces.Box):
        env = ClipBoxAction(env)
    return env


class MaskObservation(gym.ObservationWrapper):
    """Keeps the observation components flagged 1 in `env.obs_mask`: a partially observed task from a full one
    (CartPole without its velocities needs memory, i.e. a RecurrentNet)."""

    def __init__(self, env: gym.Env, mask: list[int]):
        super().__init__(env)
        space = env.observation_space
        self.keep = np.flatnonzero(np.asarray(mask, dtype=bool))
        self.observation_space = gym.spaces.Box(space.low[self.keep], space.high[self.keep], dtype=space.dtype)

    def observation(self, observation) -> np.ndarray:
        return observation[self.keep]


def mask_observation(env: gym.Env, env_spec: EnvSpec) -> gym.Env:
    """`env` behind `MaskObservation` when `env.obs_mask` is set; SpecError when the mask does not fit it."""
    mask, space = env_spec.obs_mask, env.observation_space
    if mask is None:
        return env
    if len(space.shape) != 1:
        raise SpecError("env.obs_mask", f"{env_spec.name} observations have shape {list(space.shape)}; obs_mask "
                        "takes 1-D observations only")
    if len(mask) != space.shape[0]:
        raise SpecError("env.obs_mask", f"has {len(mask)} flags; {env_spec.name} observations have "
                        f"{space.shape[0]} components")
    if not any(mask):
        raise SpecError("env.obs_mask", "keeps no component; flag at least one with 1")
    return MaskObservation(env, mask)


def _env_factory(env_spec: EnvSpec) -> Callable[[], gym.Env]:
    """A zero-argument constructor of one gymnasium env with supported spaces (`supported_spaces`), masked by
    `env.obs_mask`."""
    make = _raw_env_factory(env_spec)
    return lambda: mask_observation(supported_spaces(make(), env_spec.name), env_spec)


def _raw_env_factory(env_spec: EnvSpec) -> Callable[[], gym.Env]:
    """A zero-argument constructor of one gymnasium env, checked once so errors name the spec field."""
    if is_vizdoom(env_spec.name):  # screen-only uint8 frames, frame skip and stack (zoo/vizdoom.py)
        return vizdoom_factory(env_spec)
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


class VectorGymEnv(GymWrapper):
    """TorchRL's `GymWrapper` over a gymnasium vector env, with `RewardSum`'s, `StepCounter`'s and
    `InitTracker`'s keys built in and a fused `step_and_maybe_reset`.

    Why: a collector step through `TransformedEnv(GymWrapper, Compose(RewardSum(), StepCounter(), InitTracker()))`
    runs TorchRL's generic machinery (`EnvBase.step` with `_step_proc_data`, `step_mdp`, then, whenever a copy
    finished, `reset` through every transform's `_reset` and `_update_during_reset`'s masked `where`), several
    times the cost of the gymnasium step itself with a handful of cheap envs. The fused path does the same work
    in one pass (gymnasium step, statistics, masked reset of the finished copies) and writes the same keys.
    `step`, `reset` and `rollout` keep TorchRL's generic path; tests check that both agree. The statistics are
    read from the input TensorDict (the collector's carry), as the transforms do, so the env holds no state of
    its own beyond the gymnasium env's. Envs with observations other than one Box, or an info reader, use the
    generic path for `step_and_maybe_reset` too.
    """

    def _make_specs(self, env: gym.Env, batch_size=None) -> None:
        super()._make_specs(env, batch_size)
        self._fused = (set(self.observation_spec.keys()) == {"observation"} and not self.info_dict_reader
                       and self.wrapper_frame_skip == 1)
        shape, device = (*self.batch_size, 1), self.device
        self.observation_spec["episode_reward"] = Unbounded(shape=shape, dtype=torch.float32, device=device)
        self.observation_spec["step_count"] = Bounded(low=0, high=torch.iinfo(torch.int64).max, shape=shape,
                                                      dtype=torch.int64, device=device)
        self.observation_spec["is_init"] = Categorical(2, shape=shape, dtype=torch.bool, device=device)
        # the fused step converts actions with the leaf spec: `read_action` looks it up in the full spec per call
        self._action_leaf_spec = self.full_action_spec.get("action", None)
        self._fused = self._fused and self._action_leaf_spec is not None

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        next_td = super()._step(tensordict)  # done / reward may lack the trailing 1 until `_step_proc_data`
        shape = (*self.batch_size, 1)
        next_td.set("episode_reward", tensordict.get("episode_reward") + next_td.get("reward").reshape(shape))
        next_td.set("step_count", tensordict.get("step_count") + 1)
        next_td.set("is_init", torch.zeros(shape, dtype=torch.bool, device=self.device))
        return next_td

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        # fresh statistics for every copy: TorchRL's reset keeps the copies not being reset (`_update_during_reset`)
        out = super()._reset(tensordict, **kwargs)
        shape = (*self.batch_size, 1)
        out.set("episode_reward", torch.zeros(shape, dtype=torch.float32, device=self.device))
        out.set("step_count", torch.zeros(shape, dtype=torch.int64, device=self.device))
        out.set("is_init", torch.ones(shape, dtype=torch.bool, device=self.device))
        return out

    def _step_and_maybe_reset(self, tensordict: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        if not self._fused or tensordict.device not in (None, self.device):
            return super()._step_and_maybe_reset(tensordict)
        action = tensordict.get("action")
        obs, reward, terminated, truncated, _ = self._env.step(self._action_leaf_spec.to_numpy(action, safe=False))
        finished = np.logical_or(terminated, truncated)  # numpy: the reset mask needs no tensor round trip
        shape, device = (*self.batch_size, 1), self.device
        obs_dtype = self.observation_spec["observation"].dtype
        observation = torch.as_tensor(obs, device=device).to(obs_dtype)
        reward = torch.as_tensor(reward, device=device).to(torch.float32).view(shape)
        terminated = torch.as_tensor(terminated, device=device).view(shape)
        truncated = torch.as_tensor(truncated, device=device).view(shape)
        done = terminated | truncated
        episode_reward = tensordict.get("episode_reward") + reward
        step_count = tensordict.get("step_count") + 1
        next_td = TensorDict._new_unsafe(
            {"observation": observation, "reward": reward, "done": done, "terminated": terminated,
             "truncated": truncated, "episode_reward": episode_reward, "step_count": step_count,
             "is_init": torch.zeros_like(done)},
            batch_size=self.batch_size, device=device)
        tensordict.set("next", next_td)
        is_init = torch.zeros_like(done)
        if finished.any():
            reset_obs, _ = self._env.reset(options={"reset_mask": finished})
            observation = torch.as_tensor(reset_obs, device=device).to(obs_dtype)
            episode_reward = episode_reward.masked_fill(done, 0)
            step_count = step_count.masked_fill(done, 0)
            is_init = done.clone()
            # after the reset no copy is done; one tensor per key, as TorchRL's reset writes them
            done, terminated, truncated = (torch.zeros_like(is_init) for _ in range(3))
        carry = TensorDict._new_unsafe(
            {"observation": observation, "done": done, "terminated": terminated, "truncated": truncated,
             "episode_reward": episode_reward, "step_count": step_count, "is_init": is_init, "action": action},
            batch_size=self.batch_size, device=device)
        return tensordict, carry


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
    env = VectorGymEnv(make_vector_env(env_spec, num_envs), categorical_action_encoding=categorical_action_encoding,
                       device=device)
    transforms: list[Transform] = []
    if env_spec.normalize_obs:
        obs_norm = ObsNorm(in_keys=["observation"], decay=1.0, eps=1e-4, reduce_batch_dims=True)
        transforms.append(obs_norm.freeze() if evaluation else obs_norm)
        if env_spec.clip_obs is not None:
            transforms.append(ClipTransform(in_keys=["observation"], low=-env_spec.clip_obs, high=env_spec.clip_obs))
    if env_spec.normalize_reward and not evaluation:
        transforms.append(ReturnScaling(num_envs, gamma))
    if env_spec.reward_scale != 1.0 and not evaluation:  # after the raw episode_reward the env itself records
        transforms.append(RewardScaling(loc=0.0, scale=env_spec.reward_scale))
    if transforms:  # else the bare env, whose fused step_and_maybe_reset a TransformedEnv would bypass
        with warnings.catch_warnings():  # VecNormV2 calls batched envs "experimental"; tested in tests/unit
            warnings.filterwarnings("ignore", message="Support of ObsNorm", category=UserWarning)
            env = TransformedEnv(env, Compose(*transforms))
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


def transform_state(env: EnvBase) -> dict:
    """State of the env's transforms (normalization statistics, Atari's), `{}` for zoo's bare `VectorGymEnv`."""
    return env.transform.state_dict() if isinstance(env, TransformedEnv) else {}


def load_transform_state(env: EnvBase, state: dict) -> None:
    if isinstance(env, TransformedEnv):
        env.transform.load_state_dict(state)
    elif state:
        raise ValueError("transform state given for an env without transforms")


def sync_eval_env(env: EnvBase, eval_env: EnvBase) -> None:
    """Copy the train env's observation statistics into the eval env's frozen normalizer."""
    source, target = normalizers(env), normalizers(eval_env)
    if "obs" in source and "obs" in target:
        target["obs"].load_state_dict(copy.deepcopy(source["obs"].state_dict()))


def plain_vector_env(env: EnvBase) -> gym.vector.VectorEnv | None:
    """The gymnasium vector env under `env` when TorchRL adds nothing to its observations (zoo's bare
    `VectorGymEnv`), else None. Evaluation steps such an env directly: see `zoo.session.episode_returns`."""
    if not isinstance(env, VectorGymEnv):
        return None
    vector_env = env._env
    return vector_env if isinstance(vector_env, gym.vector.VectorEnv) else None


def learning_keys(env: EnvBase) -> tuple[str, str]:
    """(done, terminated) keys under "next" that learners should cut traces / stop bootstrapping on.

    Atari with `env.episode_life` ends a learning episode with each lost life while the game (and the
    recorded score) goes on; everywhere else these are the env's own `done` / `terminated`.
    """
    if LIFE_TERMINATED_KEY in env.observation_spec:
        return LIFE_DONE_KEY, LIFE_TERMINATED_KEY
    return "done", "terminated"


def action_kind(action_spec: TensorSpec) -> str:
    """The gymnasium space an (unbatched) TorchRL action spec stands for: Discrete, Box, MultiDiscrete or MultiBinary.

    `GymWrapper` maps both MultiDiscrete and MultiBinary to a `BoundedDiscrete` spec; MultiBinary's is int8."""
    if hasattr(action_spec.space, "n"):
        return "Discrete"
    if action_spec.dtype.is_floating_point:
        return "Box"
    return "MultiBinary" if action_spec.dtype in (torch.int8, torch.uint8, torch.bool) else "MultiDiscrete"


def env_info(env: EnvBase) -> dict[str, object]:
    """Shapes and kinds of the env's observation and action spaces, for builders and --dry-run.

    `discrete`: one Discrete action (Categorical or one-hot); `action_kind` names the space, MultiDiscrete and
    MultiBinary included (their `action_dim` is the number of components)."""
    obs_spec = env.observation_spec["observation"]
    action_spec = env.action_spec_unbatched if hasattr(env, "action_spec_unbatched") else env.action_spec
    discrete = hasattr(action_spec.space, "n")
    return {
        "action_kind": action_kind(action_spec),
        "obs_shape": tuple(obs_spec.shape[len(env.batch_size):]),
        "obs_dtype": obs_spec.dtype,
        "discrete": discrete,
        "num_actions": int(action_spec.space.n) if discrete else None,
        "action_dim": None if discrete else int(action_spec.shape[-1]),
        "action_spec": action_spec,
        "one_hot": isinstance(action_spec, OneHot),  # else integer-coded (Categorical) or continuous
    }
