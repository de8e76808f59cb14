"""`enjoy@<run dir>` / `enjoy@latest`: replay a run's best checkpoint with the deterministic actor.

A trial directory (`meta.max_session > 1`) replays its best session: the one whose best evaluation is highest
(`enjoy@<trial dir>/sessions/s<i>` picks another).

Loads ckpt/best.pt (latest.pt when no evaluation has improved yet) into components built from the run's own
spec, with the observation statistics frozen as they were at that evaluation, runs `meta.eval_episodes`
episodes and prints the mean and std of the raw return. `--record` writes one episode as a video into the
run directory (MP4 when the optional `imageio-ffmpeg` is installed: `pip install zoo[video]`, else an
animated GIF through pillow); `--render` shows the episodes in a window where a display exists.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torchrl.envs import ExplorationType, set_exploration_type

from zoo.checkpoint import gym_env_of
from zoo.components import build
from zoo.envs import load_transform_state
from zoo.record import CheckpointError, RunDir, is_trial_dir, load_checkpoint, load_run_spec, resolve_run_dir
from zoo.session import episode_returns
from zoo.spec import Spec
from zoo.trial import best_session

VIDEO_FPS = 30
MAX_RECORD_STEPS = 10_000


def load_enjoy_state(run: RunDir) -> tuple[dict, Path]:
    """best.pt, or latest.pt when the run has no best yet."""
    best = run.ckpt_dir / "best.pt"
    path = best if best.is_file() else run.ckpt_dir / "latest.pt"
    return load_checkpoint(path, require=("agent", "policy", "eval_env_transform", "seed")), path


def has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def enjoy(args: argparse.Namespace, spec: Spec) -> int:
    """Replay the best checkpoint of the run named by `args.mode` (`enjoy@latest` or `enjoy@<run dir>`)."""
    target = args.mode.partition("@")[2] or "latest"
    run_path = resolve_run_dir(target, Path(args.data_dir), spec.name)
    if is_trial_dir(run_path):
        run_path = best_session(run_path)
        print(f"best session of the trial: {run_path}")
    spec = load_run_spec(run_path, args.set)
    if args.render and not has_display():
        raise CheckpointError("--render needs a display (DISPLAY is not set); use --record to write a video")
    episodes = spec.meta.eval_episodes
    if args.record and not args.render:  # off-screen frames: no window system needed (silences SDL's complaints)
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    if args.render or args.record:
        spec.env.kwargs = {**spec.env.kwargs, "render_mode": "human" if args.render else "rgb_array"}
    if args.render:  # one window: the episodes run one after another in a single env copy
        spec.meta.eval_episodes = 1
    state, path = load_enjoy_state(RunDir(run_path))
    components = build(spec, seed=state["seed"] if args.seed is None else args.seed)
    try:
        components.agent.load_state_dict(state["agent"])
        components.agent.policy.load_state_dict(state["policy"])
        load_transform_state(components.eval_env, state["eval_env_transform"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: does not fit the run's spec ({type(err).__name__})") from None
    env, actor = components.eval_env, components.agent.actor
    runs = episodes if args.render else 1
    returns = torch.cat([episode_returns(env, actor)[0] for _ in range(runs)]).tolist()
    print(f"{run_path} ({path.name}, frame {state.get('frame', '?')}): {len(returns)} episodes, "
          f"return mean {np.mean(returns):.2f} std {np.std(returns):.2f}")
    if args.record:
        video = record_episode(env, actor, run_path / f"video_{path.stem}")
        print(f"video: {video}")
    components.close()
    return 0


def record_episode(env, actor, stem: Path) -> Path:
    """One episode of the first env copy, rendered frame by frame, written as MP4 or GIF next to `stem`."""
    sub_envs = getattr(gym_env_of(env), "envs", None)
    if not sub_envs:  # e.g. ale-py's native AtariVectorEnv renders nothing per copy
        raise CheckpointError(f"cannot record {type(gym_env_of(env)).__name__}: no gymnasium sub-env to render")
    sub_env = sub_envs[0]
    frames = []
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        td = env.reset()
        for _ in range(MAX_RECORD_STEPS):
            frames.append(sub_env.render())
            td, next_td = env.step_and_maybe_reset(actor(td))
            if td["next", "done"].reshape(-1)[0]:
                frames.append(sub_env.render())
                break
            td = next_td
    return write_video([np.asarray(f) for f in frames if f is not None], stem)


def write_video(frames: list[np.ndarray], stem: Path, fps: int = VIDEO_FPS) -> Path:
    """MP4 through imageio-ffmpeg when installed, else an animated GIF through pillow."""
    if not frames:
        raise CheckpointError("the env rendered no frames (does it support render_mode='rgb_array'?)")
    try:
        import imageio_ffmpeg
    except ImportError:
        imageio_ffmpeg = None
    if imageio_ffmpeg is not None:
        path = stem.with_suffix(".mp4")
        height, width = frames[0].shape[:2]
        writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, macro_block_size=1)
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame[..., :3], dtype=np.uint8))
        writer.close()
        return path
    from PIL import Image

    path = stem.with_suffix(".gif")
    images = [Image.fromarray(np.asarray(frame[..., :3], dtype=np.uint8)) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path
