"""Where the frames go for one spec: env limit, collection, a per-frame profile, training rate, time to a return.

    python tools/speed.py specs/ppo_cartpole.yaml [spec name] [--threshold 475] [--max-frame N]
    python tools/speed.py specs/dqn_cartpole.yaml --vs-sb3 --sb3-python /work/sb3venv/bin/python --repeats 3
    python tools/speed.py specs/ppo_bipedalwalker.yaml --collectors sync multi_sync multi_async --no-train

Measures, on this machine:
  (a) env limit: the raw gymnasium vector env (the spec's env and num_envs, random actions), no TorchRL;
  (b) collection: zoo's collector (`zoo.components.make_collector`) with the spec's exploration policy, no
      learning, and its share of the env limit; with `--collectors`, the same for each `env.collector` named
      (`--workers` processes), side by side in one run, as a ratio to the spec's own collector;
  (p) a profile of one frame for 1, 8 and 32 envs (`--profile-envs`): microseconds per frame in the env step
      (raw gymnasium), the policy forward, TorchRL / tensordict plumbing (the collector's time minus those
      two), replay storage (off-policy) and the update (`agent.update` on collected batches);
  (c) training: `tools/train.py` end to end in a subprocess, evaluating every K frames (`--eval-every`) with
      `--eval-episodes` greedy episodes and stopping at the first evaluation whose mean return reaches the
      threshold (`--target-return`). Evaluation is excluded from every clock, zoo's and SB3's alike: frames
      per second of the training loop, loop seconds to the threshold and process seconds to the threshold
      (measured outside the process: interpreter start-up, imports and set-up included) all subtract the
      seconds spent evaluating (zoo's `time/eval`; SB3's callback time). The process time with evaluation
      is printed too.
With --vs-sb3, Stable-Baselines3 with RL Zoo's tuned hyperparameters for the same env and algorithm runs
through tools/sb3_baseline.py with the same evaluation settings and threshold, alternating with zoo runs
(seed = --seed + repeat on both sides); medians and the ratios (zoo speed-up: SB3 time / zoo time, zoo fps /
SB3 fps) are printed. Unsolved runs count in `solved` but not in the medians of time to threshold.
Shared or busy machines make every figure noisy: compare runs made side by side only.
"""

import argparse
import dataclasses
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
import torch
from torchrl.envs import ExplorationType, set_exploration_type

from zoo.cli import optimize_performance
from zoo.components import build, make_collector
from zoo.envs import make_vector_env
from zoo.memory import TRANSITION_KEYS
from zoo.record import TIME_PHASES, read_metrics
from zoo.spec import COLLECTORS, Spec, SpecError, load_spec, validate

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
    parser.add_argument("--repeats", type=int, default=1, help="training runs per library, alternating (and "
                        "rounds of the --collectors comparison)")
    parser.add_argument("--no-train", action="store_true", help="only (a), (b) and the profile")
    parser.add_argument("--profile-envs", type=int, nargs="*", default=[1, 8, 32],
                        help="env counts of the per-frame profile (default 1 8 32; none to skip)")
    parser.add_argument("--vs-sb3", action="store_true", help="also run Stable-Baselines3 (tools/sb3_baseline.py)")
    parser.add_argument("--sb3-python", default=sys.executable, help="python of the venv that has SB3 and rl_zoo3")
    parser.add_argument("--sb3-device", default="cpu")
    parser.add_argument("--collectors", nargs="*", default=[], choices=COLLECTORS, metavar="NAME",
                        help="also measure collection with each of these env.collector values, side by side "
                             f"({', '.join(COLLECTORS)}), with --workers processes")
    parser.add_argument("--workers", type=int, default=2, help="env.num_workers for --collectors (default 2)")
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


def collection_rate(spec: Spec, seed: int, seconds: float, collector_name: str | None = None,
                    workers: int = 1) -> float:
    """Frames/s of zoo's collector (the spec's env and exploration policy), no learning; first batch excluded.

    `collector_name` (an `env.collector` value, with `workers` processes) replaces the spec's collector; worker
    start-up happens before the clock starts."""
    if collector_name is not None:
        env_spec = dataclasses.replace(spec.env, collector=collector_name,
                                       num_workers=1 if collector_name == "sync" else workers)
        spec = dataclasses.replace(spec, env=env_spec)
        validate(spec)  # e.g. normalization, which the multi-process collectors refuse
    components = build(spec, seed=seed)
    components.close()
    collector = make_collector(components.env, components.agent, env_spec=spec.env, seed=seed)
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


# ------------------------------------------------------------------------------------------------ profile
def _per_call_us(fn, seconds: float) -> float:
    fn()  # warm-up
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        calls += 1
    return elapsed / calls * 1e6


def frame_profile(spec_file: str, spec_name: str | None, overrides: list[str], num_envs: int, seed: int,
                  seconds: float) -> dict[str, float | None]:
    """Microseconds per frame, at `num_envs` envs, in each part of a collect-and-learn cycle (see (p))."""
    spec = load_spec(spec_file, spec_name, [*overrides, f"env.num_envs={num_envs}"])
    optimize_performance(spec)
    torch.set_num_threads(spec.meta.num_threads)
    env_us = 1e6 / env_limit(spec, num_envs, seconds)
    components = build(spec, seed=seed)
    components.collector.shutdown()
    agent, env = components.agent, components.env
    td = env.reset()
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        policy_us = _per_call_us(lambda: agent.policy(td.clone(False)), seconds / 2) / num_envs
    collect_us = 1e6 / collection_rate(spec, seed, seconds)
    collector = make_collector(env, agent)
    batches = iter(collector)
    storage_us = None
    if agent.buffer is not None:
        batch = next(batches).select(*TRANSITION_KEYS)
        flat = batch.reshape(-1)
        storage_us = _per_call_us(lambda: agent.buffer.extend(flat), seconds / 2) / flat.numel()
    frame, update_seconds, update_frames = 10**9, 0.0, 0  # far past any learning-start gate
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or update_frames == 0:
        data = next(batches)
        tick = time.perf_counter()
        agent.update(data, frame)
        update_seconds += time.perf_counter() - tick
        update_frames += data.numel()
    collector.shutdown()
    plumbing_us = max(collect_us - env_us - policy_us, 0.0)
    return {"num_envs": num_envs, "env_us": env_us, "policy_us": policy_us, "plumbing_us": plumbing_us,
            "collect_us": collect_us, "storage_us": storage_us, "update_us": update_seconds / update_frames * 1e6}


def profile_lines(rows: list[dict]) -> list[str]:
    header = (f"{'envs':>5s}{'env step':>10s}{'policy':>9s}{'plumbing':>10s}{'collect':>9s}{'storage':>9s}"
              f"{'update':>9s}{'collect / env limit':>21s}")
    lines = ["per-frame profile (microseconds per frame):", header]
    for r in rows:
        storage = f"{r['storage_us']:9.1f}" if r["storage_us"] is not None else f"{'-':>9s}"
        lines.append(f"{r['num_envs']:5d}{r['env_us']:10.1f}{r['policy_us']:9.1f}{r['plumbing_us']:10.1f}"
                     f"{r['collect_us']:9.1f}{storage}{r['update_us']:9.1f}{r['env_us'] / r['collect_us']:20.0%}")
    return lines


# ---------------------------------------------------------------------------------------------------- (c)
def phase_seconds(row: dict[str, str]) -> float:
    """Loop seconds up to the end of this row, evaluation excluded: the time/<phase> columns but time/eval."""
    times = [float(row[k]) for k in TIME_PHASES if k != "time/eval" and row.get(k) not in ("", None)]
    return sum(times) if times else float(row["time/wall"]) - eval_seconds(row)


def eval_seconds(row: dict[str, str]) -> float:
    return float(row.get("time/eval") or 0.0)


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
            "total_seconds": process_seconds - eval_seconds(last), "total_seconds_with_eval": process_seconds,
            "eval_seconds": eval_seconds(last), "frames": int(last["frame"]),
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
    result["total_seconds_inside"] = result["total_seconds"]
    result["total_seconds"] = process_seconds - result["eval_seconds"]
    result["total_seconds_with_eval"] = process_seconds
    return result


# ------------------------------------------------------------------------------------------------- report
METRICS = (("fps", "training frames/s", True), ("frames_to_solve", "frames to threshold", False),
           ("train_seconds_to_solve", "loop seconds to threshold", False),
           ("total_seconds", "process seconds to threshold", False),
           ("total_seconds_with_eval", "  (with evaluation)", False))


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


def compare_collectors(spec, args: argparse.Namespace) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Collection frames/s of each `--collectors` choice, `--repeats` rounds taking them in turn (side by side);
    prints each one's median and, with `sync` among them, the median of the per-round ratios to it."""
    rounds: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name in args.collectors:
            try:
                rate = collection_rate(spec, args.seed, args.seconds, name, args.workers)
            except SpecError as err:
                print(f"collection with env.collector {name} skipped: {err}")
                continue
            rounds.setdefault(name, []).append(rate)
    medians = {name: statistics.median(rates) for name, rates in rounds.items()}
    for name, rates in rounds.items():
        workers = "" if name == "sync" else f", {args.workers} workers"
        each = ", ".join(f"{rate:,.0f}" for rate in rates)
        ratio = ""
        if "sync" in rounds and name != "sync":
            ratios = [rate / base for rate, base in zip(rates, rounds["sync"], strict=False)]
            ratio = f", {statistics.median(ratios):.2f}x sync (median of the rounds' ratios)"
        print(f"collection with env.collector {name}{workers}: {medians[name]:,.0f} frames/s (median of {each})"
              f"{ratio}")
    return medians, rounds


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
    torch.set_num_threads(spec.meta.num_threads)
    print(f"spec {spec.name}: {algorithm} on {env_id}, {spec.env.num_envs} envs, device {spec.meta.device}, "
          f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.2f}")
    record: dict = {"spec": spec.name, "env": env_id, "algorithm": algorithm, "threshold": threshold}
    record["env_limit_fps"] = env_limit(spec, spec.env.num_envs, args.seconds)
    record["env_limit_fps_single"] = env_limit(spec, 1, args.seconds)
    print(f"env limit (gymnasium, random actions): {record['env_limit_fps']:,.0f} frames/s with "
          f"{spec.env.num_envs} envs, {record['env_limit_fps_single']:,.0f} frames/s with 1 env")
    record["collection_fps"] = collection_rate(spec, args.seed, args.seconds)
    print(f"collection (zoo collector, spec policy, no learning): {record['collection_fps']:,.0f} frames/s, "
          f"{record['collection_fps'] / record['env_limit_fps']:.0%} of the env limit")
    if args.collectors:
        record["collectors"], record["collector_rounds"] = compare_collectors(spec, args)
    if args.profile_envs:
        record["profile"] = []
        for n in args.profile_envs:
            try:
                record["profile"].append(frame_profile(args.spec_file, args.spec_name, args.set, n, args.seed,
                                                       args.seconds))
            except SpecError as err:  # e.g. PPO's minibatch larger than 1 env's batch
                print(f"profile at {n} envs skipped: {err}")
        for line in profile_lines(record["profile"]):
            print(line)
    if not args.no_train:
        print(f"training to eval return >= {threshold:g} (eval every {args.eval_every} frames, "
              f"{args.eval_episodes} episodes; evaluation excluded from every clock but the last line's):")
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
                          f"{r['total_seconds']:.1f} s (+ {r['eval_seconds']:.1f} s evaluating), {r['frames']} "
                          f"frames, final eval {r['final_eval_mean']}")
        for line in summary_lines(runs):
            print(line)
        record["runs"] = runs
    if args.json_out:
        args.json_out.write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
