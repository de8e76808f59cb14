"""Where the frames go for one spec: env limit, collection rate, training rate and time to a return.

    python tools/speed.py specs/dqn_cartpole.yaml [spec name] [--threshold 475] [--max-frame N]
    python tools/speed.py specs/dqn_cartpole.yaml --vs-sb3 --sb3-python /work/sb3venv/bin/python --repeats 3

Measures, on this machine:
  (a) env limit: the raw gymnasium vector env (the spec's env and num_envs, random actions), no TorchRL;
  (b) collection: zoo's collector with the spec's exploration policy, no learning;
  (c) training: `tools/train.py` end to end in a subprocess, evaluating every K frames (`--eval-every`) with
      `--eval-episodes` greedy episodes and stopping at the first evaluation whose mean return reaches the
      threshold (`--target-return`). Read from metrics.csv: frames per second of the training loop
      (evaluations included), frames and loop seconds to the threshold; the process time is measured
      outside the process (interpreter start-up, imports and set-up included).
With --vs-sb3, Stable-Baselines3 with RL Zoo's tuned hyperparameters for the same env and algorithm runs
through tools/sb3_baseline.py with the same evaluation settings and threshold, alternating with zoo runs
(seed = --seed + repeat on both sides); medians and the ratios (zoo speed-up: SB3 time / zoo time, zoo fps /
SB3 fps) are printed. Unsolved runs count in `solved` but not in the medians of time to threshold.
Shared or busy machines make every figure noisy: compare runs made side by side only.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from zoo.cli import optimize_performance
from zoo.components import build, make_collector
from zoo.envs import make_vector_env
from zoo.record import TIME_PHASES, read_metrics
from zoo.spec import Spec, SpecError, load_spec

ROOT = Path(__file__).resolve().parents[1]
SB3_ALGOS = {"DQN": "dqn", "DoubleDQN": "dqn", "VanillaDQN": "dqn", "PPO": "ppo", "A2C": "a2c",
             "SoftActorCritic": "sac", "SAC": "sac", "TD3": "td3"}
RESULT_PREFIX = "sb3_result: "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="speed.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec_file")
    parser.add_argument("spec_name", nargs="?", default=None)
    parser.add_argument("--threshold", type=float, help="target mean eval return (default: the env's reward_threshold)")
    parser.add_argument("--max-frame", type=int, help="training budget for both libraries (default: each its own: "
                        "the spec's env.max_frame, RL Zoo's n_timesteps)")
    parser.add_argument("--eval-every", type=int, default=2500, help="frames between evaluations (default 2500)")
    parser.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation (default 10)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time of (a) and (b) each (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first repeat (then +1 per repeat)")
    parser.add_argument("--repeats", type=int, default=1, help="training runs per library, alternating")
    parser.add_argument("--no-train", action="store_true", help="only (a) and (b)")
    parser.add_argument("--vs-sb3", action="store_true", help="also run Stable-Baselines3 (tools/sb3_baseline.py)")
    parser.add_argument("--sb3-python", default=sys.executable, help="python of the venv that has SB3 and rl_zoo3")
    parser.add_argument("--sb3-device", default="cpu")
    parser.add_argument("--json-out", type=Path, help="also write every measurement to this JSON file")
    parser.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE", help="spec override")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------------ (a) and (b)
def env_limit(spec: Spec, num_envs: int, seconds: float) -> float:
    """Frames/s of the raw gymnasium sync vector env zoo builds (autoreset disabled), random actions."""
    env = make_vector_env(spec.env, num_envs)
    env.reset(seed=0)
    env.action_space.seed(0)
    frames, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        done = np.logical_or(terminated, truncated)
        if done.any():
            env.reset(options={"reset_mask": done})
        frames += num_envs
    env.close()
    return frames / elapsed


def collection_rate(spec: Spec, seed: int, seconds: float) -> float:
    """Frames/s of zoo's collector (the spec's env and exploration policy), no learning; first batch excluded."""
    components = build(spec, seed=seed)
    components.collector.shutdown()
    collector = make_collector(components.env, components.agent)
    frames, start = 0, None
    for data in collector:
        if start is None:  # warm-up batch (first calls, allocations)
            start = time.perf_counter()
            continue
        frames += data.numel()
        if time.perf_counter() - start >= seconds:
            break
    elapsed = time.perf_counter() - start
    collector.shutdown()
    return frames / elapsed


# ---------------------------------------------------------------------------------------------------- (c)
def phase_seconds(row: dict[str, str]) -> float:
    """Loop seconds up to the end of this row's evaluation: the sum of the time/<phase> columns."""
    times = [float(row[k]) for k in TIME_PHASES if row.get(k) not in ("", None)]
    return sum(times) if times else float(row["time/wall"])


def zoo_run(args: argparse.Namespace, threshold: float, seed: int, work: Path) -> dict:
    """One `tools/train.py` run to the threshold; figures from its metrics.csv and the process wall time."""
    data_dir = work / f"zoo_seed{seed}_{time.monotonic_ns()}"
    overrides = [*args.set, f"meta.eval_frequency={args.eval_every}", f"meta.eval_episodes={args.eval_episodes}"]
    if args.max_frame:
        overrides.append(f"env.max_frame={args.max_frame}")
    name = [args.spec_name] if args.spec_name else []
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), args.spec_file, *name,
           "--seed", str(seed), "--data-dir", str(data_dir), "--no-progress", "--target-return", str(threshold)]
    for override in overrides:
        cmd += ["-s", override]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    process_seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"zoo run failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    (run_dir,) = [p for p in data_dir.iterdir() if (p / "metrics.csv").is_file()]
    rows = read_metrics(run_dir / "metrics.csv")
    solved = next((r for r in rows if r.get("eval/return") and float(r["eval/return"]) >= threshold), None)
    last = rows[-1]
    loop_seconds = phase_seconds(last)
    evals = [float(r["eval/return"]) for r in rows if r.get("eval/return")]
    return {"library": "zoo", "seed": seed, "solved": solved is not None,
            "frames_to_solve": int(solved["frame"]) if solved else None,
            "train_seconds_to_solve": phase_seconds(solved) if solved else None,
            "total_seconds": process_seconds, "frames": int(last["frame"]),
            "fps": int(last["frame"]) / loop_seconds, "final_eval_mean": evals[-1] if evals else None}


def sb3_run(args: argparse.Namespace, algo: str, env_id: str, threshold: float, seed: int) -> dict:
    """One tools/sb3_baseline.py run; its `sb3_result` line, with the process time measured here as for zoo."""
    cmd = [args.sb3_python, str(ROOT / "tools" / "sb3_baseline.py"), "--algo", algo, "--env", env_id,
           "--threshold", str(threshold), "--seed", str(seed), "--eval-every", str(args.eval_every),
           "--eval-episodes", str(args.eval_episodes), "--device", args.sb3_device]
    if args.max_frame:
        cmd += ["--max-frames", str(args.max_frame)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    process_seconds = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"SB3 run failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    result = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    result.pop("hyperparams", None)
    result["total_seconds_inside"], result["total_seconds"] = result["total_seconds"], process_seconds
    return result


# ------------------------------------------------------------------------------------------------- report
METRICS = (("fps", "training frames/s", True), ("frames_to_solve", "frames to threshold", False),
           ("train_seconds_to_solve", "loop seconds to threshold", False),
           ("total_seconds", "process seconds (total)", False))


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def summary_lines(runs: dict[str, list[dict]]) -> list[str]:
    libraries = list(runs)
    header = f"{'median of runs':28s}" + "".join(f"{lib:>12s}" for lib in libraries)
    if len(libraries) == 2:
        header += f"{'zoo speed-up':>14s}"
    lines = [header]
    for key, label, higher_is_better in METRICS:
        values = [median(runs[lib], key) for lib in libraries]
        line = f"{label:28s}" + "".join(f"{v:>12,.1f}" if v is not None else f"{'-':>12s}" for v in values)
        if len(values) == 2 and None not in values and min(values) > 0:
            zoo, other = values
            line += f"{(zoo / other if higher_is_better else other / zoo):>13.2f}x"
        lines.append(line)
    lines.append(f"{'solved':28s}" + "".join(f"{sum(r['solved'] for r in runs[lib])}/{len(runs[lib])}".rjust(12)
                                             for lib in libraries))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up in redirected logs
    try:
        spec = load_spec(args.spec_file, args.spec_name, args.set)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    optimize_performance(spec)
    env_id, algorithm = spec.env.name, spec.agent.algorithm.name
    threshold = args.threshold
    if threshold is None and env_id in gym.registry:
        threshold = gym.spec(env_id).reward_threshold
    if threshold is None and not args.no_train:
        print(f"error: {env_id} has no reward_threshold; pass --threshold", file=sys.stderr)
        return 2
    if args.vs_sb3 and algorithm not in SB3_ALGOS:
        print(f"error: no SB3 counterpart for {algorithm} (known: {', '.join(SB3_ALGOS)})", file=sys.stderr)
        return 2
    print(f"spec {spec.name}: {algorithm} on {env_id}, {spec.env.num_envs} envs, device {spec.meta.device}, "
          f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.2f}")
    record: dict = {"spec": spec.name, "env": env_id, "algorithm": algorithm, "threshold": threshold}
    record["env_limit_fps"] = env_limit(spec, spec.env.num_envs, args.seconds)
    record["env_limit_fps_single"] = env_limit(spec, 1, args.seconds)
    print(f"env limit (gymnasium, random actions): {record['env_limit_fps']:,.0f} frames/s with "
          f"{spec.env.num_envs} envs, {record['env_limit_fps_single']:,.0f} frames/s with 1 env")
    record["collection_fps"] = collection_rate(spec, args.seed, args.seconds)
    print(f"collection (zoo collector, spec policy, no learning): {record['collection_fps']:,.0f} frames/s")
    if not args.no_train:
        print(f"training to eval return >= {threshold:g} (eval every {args.eval_every} frames, "
              f"{args.eval_episodes} episodes):")
        runs: dict[str, list[dict]] = {"zoo": []} | ({"sb3": []} if args.vs_sb3 else {})
        with tempfile.TemporaryDirectory(prefix="zoo_speed_") as work:
            for repeat in range(args.repeats):
                seed = args.seed + repeat
                runs["zoo"].append(zoo_run(args, threshold, seed, Path(work)))
                if args.vs_sb3:
                    runs["sb3"].append(sb3_run(args, SB3_ALGOS[algorithm], env_id, threshold, seed))
                for lib in runs:
                    r = runs[lib][-1]
                    solve = (f"threshold at {r['frames_to_solve']} frames, {r['train_seconds_to_solve']:.1f} s"
                             if r["solved"] else "threshold not reached")
                    print(f"  {lib:4s} seed {seed}: {r['fps']:,.0f} frames/s, {solve}, process "
                          f"{r['total_seconds']:.1f} s, {r['frames']} frames, final eval {r['final_eval_mean']}")
        for line in summary_lines(runs):
            print(line)
        record["runs"] = runs
    if args.json_out:
        args.json_out.write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
