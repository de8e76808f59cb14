"""Stable-Baselines3 time-to-solve baseline with RL Zoo's tuned hyperparameters.

Runs outside the project's environment, in a separate virtualenv::

    python3 -m venv /work/sb3venv
    /work/sb3venv/bin/pip install "torch>=2.14,<2.15" stable-baselines3 sb3-contrib rl-zoo3 \\
        "gymnasium[classic-control,box2d]"
    /work/sb3venv/bin/python tools/sb3_baseline.py --algo dqn --env CartPole-v1 --threshold 475 \\
        --max-frames 100000 --seed 0 --eval-every 2500 --eval-episodes 10

Atari ids (e.g. ``ALE/Pong-v5``) also need ``pip install ale-py opencv-python-headless``.

Trains until the first deterministic evaluation whose mean return reaches the threshold, or until the
frame budget is spent, and prints one final line ``sb3_result: {json}``. As with RL Zoo's ``-n`` flag,
the frame budget is also the horizon of the linear schedules and of DQN's exploration schedule.
"""

import argparse
import ast
import copy
import importlib
import importlib.resources
import importlib.util
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from rl_zoo3.utils import ALGOS, get_wrapper_class, linear_schedule
from stable_baselines3 import HerReplayBuffer
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
from stable_baselines3.common.vec_env import (
    VecEnv,
    VecFrameStack,
    VecNormalize,
    VecTransposeImage,
    sync_envs_normalization,
)
from torch import nn

EVAL_SEED_OFFSET = 10_000
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf", "delta_std")
EXPRESSION_KEYS = ("policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs")
ACTIVATIONS = {cls.__name__: cls for cls in (nn.ReLU, nn.Tanh, nn.ELU, nn.GELU, nn.LeakyReLU, nn.SiLU)}
# Names that RL Zoo's hyperparameter expressions may refer to; anything else is rejected.
SAFE_NAMES: dict[str, Any] = {
    "True": True,
    "False": False,
    "None": None,
    "RMSpropTFLike": RMSpropTFLike,
    "HerReplayBuffer": HerReplayBuffer,
    **{
        f"{prefix}.{name}": cls for prefix in ("nn", "th.nn", "torch.nn") for name, cls in ACTIVATIONS.items()
    },
}


def seconds_since_process_start() -> float:
    """Wall seconds since this process started, interpreter start-up and imports included (Linux /proc)."""
    start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def parse_expression(text: str) -> Any:
    """Safely evaluates an RL Zoo expression string such as ``"dict(net_arch=[64, 64])"`` (no eval)."""
    return _literal(ast.parse(text.strip(), mode="eval").body)


def _literal(node: ast.expr) -> Any:
    match node:
        case ast.Constant(value=value):
            return value
        case ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=int() | float() as value)):
            return -value
        case ast.List(elts=elts):
            return [_literal(elt) for elt in elts]
        case ast.Tuple(elts=elts):
            return tuple(_literal(elt) for elt in elts)
        case ast.Dict(keys=keys, values=values) if None not in keys:
            return {_literal(key): _literal(value) for key, value in zip(keys, values, strict=True)}
        case ast.Call(func=ast.Name(id="dict"), args=[], keywords=keywords) if all(kw.arg for kw in keywords):
            return {kw.arg: _literal(kw.value) for kw in keywords}
        case ast.Name() | ast.Attribute() if ast.unparse(node) in SAFE_NAMES:
            return SAFE_NAMES[ast.unparse(node)]
    raise ValueError(f"unsupported expression in hyperparameters: {ast.unparse(node)}")


def register_ale() -> None:
    """Registers the ALE (Atari) environments when the optional ale-py package is installed."""
    if importlib.util.find_spec("ale_py") is not None:
        gym.register_envs(importlib.import_module("ale_py"))


def is_atari(env_id: str) -> bool:
    """Whether the environment id is an ALE (Atari) game, the way RL Zoo decides it."""
    return "AtariEnv" in str(gym.spec(env_id).entry_point)


def load_zoo_hyperparams(algo: str, env_id: str) -> dict[str, Any]:
    """RL Zoo's tuned hyperparameters for (algo, env) from the installed rl_zoo3 package."""
    path = importlib.resources.files("rl_zoo3") / "hyperparams" / f"{algo}.yml"
    table = yaml.safe_load(path.read_text())
    candidates = [env_id]
    if env_id.endswith("-v3"):
        candidates.append(env_id.removesuffix("-v3") + "-v2")
    if is_atari(env_id):
        candidates.append("atari")
    for key in candidates:
        if key in table:
            return table[key]
    raise KeyError(f"no RL Zoo hyperparameters for {algo} on {env_id} in {path} (tried {candidates})")


@dataclass
class ZooSetup:
    """RL Zoo hyperparameters split into environment settings and algorithm constructor arguments."""

    n_envs: int
    n_timesteps: int
    normalize_kwargs: dict[str, Any] | None
    frame_stack: int | None
    env_wrapper: Any
    vec_env_wrapper: Any
    env_kwargs: dict[str, Any]
    model_kwargs: dict[str, Any] = field(default_factory=dict)


def translate(raw: dict[str, Any], env_id: str) -> ZooSetup:
    """Translates a raw RL Zoo entry into SB3 arguments, mirroring rl_zoo3's ExperimentManager."""
    hp = copy.deepcopy(raw)
    for key in SCHEDULE_KEYS:
        if isinstance(hp.get(key), str):
            schedule, initial_value = hp[key].split("_")
            if schedule != "lin":
                raise ValueError(f"unsupported schedule {hp[key]!r} for {key}")
            hp[key] = linear_schedule(initial_value)
    for key in EXPRESSION_KEYS:
        if isinstance(hp.get(key), str):
            hp[key] = parse_expression(hp[key])
    if isinstance(hp.get("train_freq"), list):
        hp["train_freq"] = tuple(hp["train_freq"])

    normalize = hp.pop("normalize", False)
    if isinstance(normalize, str):
        normalize = parse_expression(normalize)
    normalize_kwargs = None
    if normalize:
        normalize_kwargs = dict(normalize) if isinstance(normalize, dict) else {}
        if "gamma" in hp:
            normalize_kwargs["gamma"] = hp["gamma"]

    env_kwargs = dict(hp.pop("env_kwargs", None) or {})
    if is_atari(env_id) and gym.spec(env_id).kwargs.get("frameskip", 1) != 1:
        env_kwargs.setdefault("frameskip", 1)  # AtariWrapper already skips 4 frames (ALE v5 ids skip too).
    setup = ZooSetup(
        n_envs=int(hp.pop("n_envs", 1)),
        n_timesteps=int(hp.pop("n_timesteps")),
        normalize_kwargs=normalize_kwargs,
        frame_stack=hp.pop("frame_stack", None),
        env_wrapper=get_wrapper_class(hp),
        vec_env_wrapper=get_wrapper_class(hp, "vec_env_wrapper"),
        env_kwargs=env_kwargs,
    )
    hp.pop("env_wrapper", None)
    hp.pop("vec_env_wrapper", None)
    setup.model_kwargs = hp
    return setup


def make_env(env_id: str, setup: ZooSetup, seed: int, eval_env: bool) -> VecEnv:
    """Builds the training env (n_envs copies) or a single evaluation env, wrapped as RL Zoo does."""
    env = make_vec_env(
        env_id,
        n_envs=1 if eval_env else setup.n_envs,
        seed=seed + EVAL_SEED_OFFSET if eval_env else seed,
        env_kwargs=setup.env_kwargs,
        wrapper_class=setup.env_wrapper,
    )
    if setup.vec_env_wrapper is not None:
        env = setup.vec_env_wrapper(env)
    if setup.normalize_kwargs is not None:
        kwargs = setup.normalize_kwargs | ({"training": False, "norm_reward": False} if eval_env else {})
        env = VecNormalize(env, **kwargs)
    if setup.frame_stack is not None:
        env = VecFrameStack(env, setup.frame_stack)
    if is_image_space(env.observation_space) and not is_image_space_channels_first(env.observation_space):
        env = VecTransposeImage(env)
    return env


def add_action_noise(model_kwargs: dict[str, Any], env: VecEnv) -> None:
    """Replaces RL Zoo's ``noise_type``/``noise_std`` entries with an SB3 action-noise object."""
    noise_type = model_kwargs.pop("noise_type", None)
    noise_std = model_kwargs.pop("noise_std", None)
    if noise_type is None:
        return
    n_actions = env.action_space.shape[0]
    mean, sigma = np.zeros(n_actions), noise_std * np.ones(n_actions)
    if "normal" in noise_type:
        model_kwargs["action_noise"] = NormalActionNoise(mean=mean, sigma=sigma)
    elif "ornstein-uhlenbeck" in noise_type:
        model_kwargs["action_noise"] = OrnsteinUhlenbeckActionNoise(mean=mean, sigma=sigma)
    else:
        raise ValueError(f"unknown noise_type {noise_type!r}")


class SolveCallback(BaseCallback):
    """Evaluates every ``eval_every`` frames; stops training once solved or when the budget is spent."""

    def __init__(
        self, eval_env: VecEnv, eval_every: int, eval_episodes: int, threshold: float, max_frames: int
    ) -> None:
        super().__init__()
        self.eval_env = eval_env
        self.eval_every = eval_every
        self.eval_episodes = eval_episodes
        self.threshold = threshold
        self.max_frames = max_frames
        self.next_eval = eval_every
        self.eval_seconds = 0.0
        self.last_mean = math.nan
        self.solved_frames: int | None = None
        self.solved_at: float | None = None

    def _on_step(self) -> bool:
        frames = self.num_timesteps
        budget_spent = frames >= self.max_frames
        if frames < self.next_eval and not budget_spent:
            return True
        while self.next_eval <= frames:
            self.next_eval += self.eval_every
        start = time.perf_counter()
        sync_envs_normalization(self.training_env, self.eval_env)
        mean, std = evaluate_policy(
            self.model, self.eval_env, n_eval_episodes=self.eval_episodes, deterministic=True
        )
        now = time.perf_counter()
        self.eval_seconds += now - start
        self.last_mean = float(mean)
        print(f"eval frames={frames} mean={mean:.2f} std={std:.2f} eval_s={now - start:.2f}", flush=True)
        if mean >= self.threshold:
            self.solved_frames, self.solved_at = frames, now
            return False
        return not budget_spent


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Writes JSON to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
        json.dump(payload, tmp, indent=2)
    os.replace(tmp.name, path)


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", required=True, choices=sorted(ALGOS))
    parser.add_argument("--env", required=True, help="gymnasium id, e.g. CartPole-v1 or ALE/Pong-v5")
    parser.add_argument("--threshold", type=float, help="solving mean eval return (default: env spec)")
    parser.add_argument("--max-frames", type=int, help="frame budget (default: RL Zoo's n_timesteps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=2500, help="frames between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json-out", type=Path, help="also write the result JSON to this file")
    parser.add_argument("--hyperparam", action="append", default=[], metavar="KEY=VALUE",
                        help="override one RL Zoo hyperparameter (YAML value), e.g. learning_starts=512")
    return parser.parse_args()


def main() -> None:
    """Trains one SB3 agent with RL Zoo's hyperparameters and reports its time to solve."""
    args = parse_args()
    torch.set_num_threads(1)
    register_ale()
    threshold = args.threshold if args.threshold is not None else gym.spec(args.env).reward_threshold
    if threshold is None:
        raise SystemExit(f"{args.env} has no reward_threshold; pass --threshold")

    raw = load_zoo_hyperparams(args.algo, args.env)
    for item in args.hyperparam:
        key, _, value = item.partition("=")
        raw[key] = yaml.safe_load(value)
    setup = translate(raw, args.env)
    max_frames = args.max_frames or setup.n_timesteps
    env = make_env(args.env, setup, args.seed, eval_env=False)
    eval_env = make_env(args.env, setup, args.seed, eval_env=True)
    add_action_noise(setup.model_kwargs, env)
    model: BaseAlgorithm = ALGOS[args.algo](
        env=env, seed=args.seed, device=args.device, verbose=0, **setup.model_kwargs
    )
    callback = SolveCallback(eval_env, args.eval_every, args.eval_episodes, threshold, max_frames)

    learn_start = time.perf_counter()
    model.learn(total_timesteps=max_frames, callback=callback)
    train_seconds = time.perf_counter() - learn_start

    solved = callback.solved_frames is not None
    result = {
        "library": "sb3",
        "algo": args.algo,
        "env": args.env,
        "seed": args.seed,
        "solved": solved,
        "frames_to_solve": callback.solved_frames,
        # evaluation excluded, as from zoo's clocks (tools/speed.py): the solving evaluation ends at solved_at
        "train_seconds_to_solve": callback.solved_at - learn_start - callback.eval_seconds if solved else None,
        "total_seconds": seconds_since_process_start(),
        "frames": model.num_timesteps,
        "fps": model.num_timesteps / (train_seconds - callback.eval_seconds),
        "train_seconds": train_seconds,
        "eval_seconds": callback.eval_seconds,
        "final_eval_mean": callback.last_mean,
        "threshold": threshold,
        "max_frames": max_frames,
        "hyperparams": raw,
    }
    if args.json_out is not None:
        write_json_atomic(args.json_out, result)
    print("sb3_result: " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
