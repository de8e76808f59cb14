"""What a checkpoint holds beyond the networks: RNG states, env states, the collector's carry, the replay buffer.

Checkpoints are written at batch boundaries only. There, the collector's carry (the next step's root
TensorDict: observation, running episode return, step count, trajectory ids) and the gymnasium sub-envs'
internal states are saved and put back on resume, so a resumed run continues the episodes in flight and
reproduces an uninterrupted run bit for bit on CPU (tests/test_resume.py checks it).

Env state: for each gymnasium sub-env we walk its wrapper chain and save every instance attribute that is
plain data (numbers, strings, numpy arrays, tuples / lists / dicts of them) and every numpy `Generator`'s
state. That covers classic control, toy-text and custom envs whose state lives in Python attributes.
Envs holding anything else (Box2D worlds, ALE emulators) cannot be captured this way: for them only the RNG
states are saved, and the resumed run starts fresh episodes from them (not bit-exact; stated in the warning).

Replay buffers (`meta.ckpt_replay`) go to their own folder through TorchRL's `dumps`; `FrameStackReplay` adds
its step counters and kept final frames there (`frame_stack.pt`). When the env state could not be saved, the
resumed run's fresh episodes end the ones in flight in that replay as truncations (see `FrameStackReplay`).

Not captured: state that replay-buffer transforms keep outside the storage (TorchRL's `MultiStepTransform`
holds the last n-1 frames of each env), so an n-step learner loses those few transitions at a resume.

Everything is stored as tensors and plain Python so that `torch.load(weights_only=True)` reads it.
"""

import enum
import random
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torchrl.collectors import BaseCollector, Collector
from torchrl.data import ReplayBuffer
from torchrl.envs import EnvBase

from zoo.memory import CER_FILE, FRAME_STACK_FILE

# attributes that are configuration or handles, not state (restoring them is unnecessary)
SKIPPED_ATTRIBUTES = {"_saved_kwargs", "spec", "_cached_spec", "metadata", "_metadata", "env_fns", "render_mode",
                      "screen", "clock"}
REPLAY_SUFFIXES = {".json", ".memmap"}  # all `buffer.dumps` writes for tensor storages once prefetch.pkl is removed
REPLAY_FILES = {FRAME_STACK_FILE, CER_FILE}  # zoo's own additions, read with torch.load(weights_only=True)


class UnsupportedEnvState(TypeError):
    """An env attribute that cannot be saved as plain data."""


def rng_state() -> dict:
    """Python, numpy and torch RNG states in a form `torch.load(weights_only=True)` accepts."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()),
                                                       *np_state[2:]], "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# ------------------------------------------------------------------------------------------- env state
def _encode(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.ndarray) and value.dtype != object:
        return ("ndarray", torch.from_numpy(value.copy()))
    if isinstance(value, np.generic):
        return ("npscalar", value.dtype.str, value.item())
    if isinstance(value, tuple | list):
        return (type(value).__name__, [_encode(v) for v in value])
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return ("dict", {k: _encode(v) for k, v in value.items()})
    raise UnsupportedEnvState(type(value).__name__)


def _decode(value):
    if not isinstance(value, tuple):
        return value
    tag, *payload = value
    if tag == "ndarray":
        return payload[0].numpy().copy()
    if tag == "npscalar":
        return np.dtype(payload[0]).type(payload[1])
    if tag == "dict":
        return {k: _decode(v) for k, v in payload[0].items()}
    items = [_decode(v) for v in payload[0]]
    return tuple(items) if tag == "tuple" else items


def _is_constant(name: str, value) -> bool:
    return (name in SKIPPED_ATTRIBUTES or isinstance(value, gym.Space | enum.Enum | type) or callable(value)
            and not isinstance(value, gym.Env | np.random.Generator))


def _object_state(obj, rng_only: bool) -> dict:
    """Attributes of one gymnasium env / wrapper / vector env, recursing into wrapped and sub envs."""
    state = {}
    for name, value in vars(obj).items():
        if isinstance(value, np.random.Generator):
            state[name] = ("rng", value.bit_generator.state)
        elif isinstance(value, gym.Env | gym.vector.VectorEnv):
            state[name] = ("env", _object_state(value, rng_only))
        elif isinstance(value, list) and value and all(isinstance(v, gym.Env) for v in value):
            state[name] = ("envs", [_object_state(v, rng_only) for v in value])
        elif not rng_only and not _is_constant(name, value):
            state[name] = ("value", _encode(value))
    return state


def _load_object_state(obj, state: dict) -> None:
    for name, (kind, payload) in state.items():
        if kind == "rng":
            generator = getattr(obj, name, None)
            if not isinstance(generator, np.random.Generator):
                generator = np.random.Generator(getattr(np.random, payload["bit_generator"])())
                setattr(obj, name, generator)
            generator.bit_generator.state = payload
        elif kind == "env":
            _load_object_state(getattr(obj, name), payload)
        elif kind == "envs":
            for sub, sub_state in zip(getattr(obj, name), payload, strict=True):
                _load_object_state(sub, sub_state)
        else:
            setattr(obj, name, _decode(payload))


def gym_env_of(env: EnvBase):
    """The gymnasium (vector) env under a TorchRL `GymWrapper`, through any TransformedEnv layers."""
    base = getattr(env, "base_env", env)
    return base._env  # GymWrapper keeps the wrapped gymnasium env here; TorchRL has no public accessor


def env_state(env: EnvBase) -> dict:
    """Internal state of every gymnasium sub-env; `exact` is False when only RNG states could be captured."""
    gym_env = getattr(getattr(env, "base_env", env), "_env", None)
    try:
        return {"exact": True, "state": _object_state(gym_env, rng_only=False)}
    except (UnsupportedEnvState, TypeError):  # TypeError: vars() of an object without __dict__ (C++ classes)
        pass
    try:
        return {"exact": False, "state": _object_state(gym_env, rng_only=True)}
    except TypeError:
        return {"exact": False, "state": {}}


def load_env_state(env: EnvBase, state: dict) -> None:
    if state["state"]:
        _load_object_state(gym_env_of(env), state["state"])


# ------------------------------------------------------------------------------------------ collector
def collector_state(collector: BaseCollector) -> dict:
    """The collector's carry between batches (the next root TensorDict); `{}` for multi-process collectors, whose
    carries live in their workers.

    Read from a private attribute: TorchRL's `Collector.state_dict` holds frame counters and transform state
    but not the carry, without which the episodes in flight could not continue after a resume.
    """
    return {"carrier": collector._carrier.to_dict()} if isinstance(collector, Collector) else {}


def load_collector_state(collector: Collector, state: dict) -> None:
    collector._carrier.update(state["carrier"])


# --------------------------------------------------------------------------------------------- replay
def dump_replay(buffer: ReplayBuffer, path: Path) -> None:
    """`buffer.dumps` into `path` (a fresh folder), minus the pickle file TorchRL writes for prefetch queues."""
    path.mkdir(parents=True)
    buffer.dumps(path)
    (path / "prefetch.pkl").unlink(missing_ok=True)  # holds None without prefetching; loads would unpickle it


def load_replay(buffer: ReplayBuffer, path: Path) -> None:
    """`buffer.loads(path)` after refusing any file that is not JSON metadata or raw memory-mapped tensors.

    `loads` would unpickle a `prefetch.pkl` and TensorDict's memmap reader unpickles non-tensor fields, so a
    folder from elsewhere could run code; ours hold only `.json` and `.memmap` files (and FrameStackReplay's
    `frame_stack.pt` or CombinedReplay's `cer_pending.pt` at the top, read with `torch.load(weights_only=True)`).
    """
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: replay folder missing")
    unexpected = [p for p in path.rglob("*") if p.is_file() and p.suffix not in REPLAY_SUFFIXES
                  and not (p.parent == path and p.name in REPLAY_FILES)]
    if unexpected:
        raise ValueError(f"unexpected file {unexpected[0].relative_to(path)} in replay folder (only .json, .memmap)")
    buffer.loads(path)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
