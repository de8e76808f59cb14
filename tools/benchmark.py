"""Benchmark a suite: every spec of the suite's envs x N seeds through tools/train.py, reported in BENCHMARK.md.

    python tools/benchmark.py --suite classic --seeds 3
    python tools/benchmark.py --suite classic --seeds 1 --frames-scale 0.1 --only dqn_cartpole

Specs are discovered from the spec files (`--specs-dir`, default specs/): every spec whose env belongs to the
suite is a row. Cells (spec x seed) run as `tools/train.py` subprocesses, one at a time or `--jobs` at once;
each finished cell is cached in `<out>/results.json` (atomic writes) under a key made of the spec, a hash of
its explicit settings (those not at their defaults, frame budget included) and the seed, so an interrupted
benchmark resumes where it stopped, and an edited spec is rerun. After every cell the suite's section of the
report (between marker comments; the rest of the file is kept) and one learning-curve plot per env are
rewritten. The cache is committed beside the report (`git add -f data/benchmark/<section>/results.json`); a
row the cache cannot back (its cells ran from a cache that was not kept) is carried over from the report as it
stood, and the plot of its env is left as it is, so a run on a fresh checkout never drops results from the
report.

Trial score = the final training-return moving average (last 100 episodes, as SLM-Lab), mean and spread
(population std) over seeds. Frames per second = frames / training-loop seconds (evaluations included);
wall time = the whole process (start-up included), mean over seeds. `--frames-scale` / `--max-frame` shrink
the budgets for a quick pass: such sections are labelled and kept apart from full-budget results.
"""

import argparse
import dataclasses
import fcntl
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.record import TIME_PHASES, atomic_write_text, package_versions, read_metrics
from zoo.spec import Spec, SpecError, load_spec, read_spec_file, spec_names

ROOT = Path(__file__).resolve().parents[1]
SUITES = {"classic": ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "LunarLander-v3", "LunarLanderContinuous-v3"),
          "mujoco": ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "InvertedPendulum-v5", "InvertedDoublePendulum-v5")}
ALGORITHM_ORDER = ("REINFORCE", "SARSA", "DQN", "DDQN+PER", "A2C", "PPO", "SAC", "CrossQ")
# SLM-Lab's published trial scores (final return moving average) for the classic suite (docs/BENCHMARKS.md).
PUBLISHED = {
    "CartPole-v1": {"REINFORCE": 483, "SARSA": 431, "DQN": 240, "DDQN+PER": 452, "A2C": 497, "PPO": 499, "SAC": 406,
                    "CrossQ": 335},
    "Acrobot-v1": {"DQN": -94, "DDQN+PER": -84, "A2C": -84, "PPO": -81, "SAC": -93, "CrossQ": -103},
    "Pendulum-v1": {"A2C": -821, "PPO": -175, "SAC": -151, "CrossQ": -146},
    "LunarLander-v3": {"DQN": 195, "DDQN+PER": 266, "A2C": 27, "PPO": 183, "SAC": 106, "CrossQ": 139},
    "LunarLanderContinuous-v3": {"A2C": -77, "PPO": 133, "SAC": 125, "CrossQ": 269},
}
# CleanRL's published 1M-step PPO figures (docs/benchmark/ppo_continuous_action.md, tag pr-424: final episodic
# return, mean of 3 seeds, MuJoCo v4 envs, whose dynamics v5 keeps): the reference at the mujoco suite's PPO budget.
# Its SAC / TD3 tables are at 1M steps, not the suite's 300k, so they are not a column here.
CLEANRL_MUJOCO = {"Hopper-v5": {"PPO": 2383}, "HalfCheetah-v5": {"PPO": 1443}, "Walker2d-v5": {"PPO": 2288},
                  "InvertedPendulum-v5": {"PPO": 963}}
REFERENCES = {"classic": ("SLM-Lab", PUBLISHED), "mujoco": ("CleanRL 1M", CLEANRL_MUJOCO)}  # suite: column, scores
# The eval return each issue asks a spec of the env to reach; the report gives the frames each seed took.
TARGETS = {"CartPole-v1": 475, "Acrobot-v1": -100, "Pendulum-v1": -200, "LunarLander-v3": 200,
           "LunarLanderContinuous-v3": 200}
ALGORITHM_LABELS = {"SoftActorCritic": "SAC", "DoubleDQN": "DDQN", "Reinforce": "REINFORCE", "Sarsa": "SARSA"}
CURVE_POINTS = 200  # learning-curve points kept per cell in the cache
CACHE_FORMAT = 1


@dataclass
class Entry:
    """One row of the suite: a spec (file + optional name) and what it trains."""

    key: str
    path: Path
    name: str | None
    spec: Spec
    env: str
    algorithm: str


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmark.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="classic", choices=sorted(SUITES))
    parser.add_argument("--seeds", type=int, default=3, help="seeds per spec: 0..N-1 (default 3)")
    parser.add_argument("--frames-scale", type=float, default=1.0, help="multiply every frame budget (quick pass)")
    parser.add_argument("--max-frame", type=int, help="cap every frame budget (quick pass)")
    parser.add_argument("--only", nargs="+", metavar="SPEC", help="run only these specs (file stem or spec name)")
    parser.add_argument("--jobs", type=int, default=max(1, len(os.sched_getaffinity(0)) // 2),
                        help="cells run at once (default: half the cores)")
    parser.add_argument("--specs-dir", type=Path, default=ROOT / "specs")
    parser.add_argument("--out", type=Path, help="results cache and run dirs (default: data/benchmark/<section>)")
    parser.add_argument("--report", type=Path, default=ROOT / "BENCHMARK.md", help="markdown report to update")
    parser.add_argument("--plots-dir", type=Path, help="plots (default: <out>/plots)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1 or args.frames_scale <= 0 or (args.max_frame is not None and args.max_frame < 1):
        parser.error("--seeds, --jobs, --frames-scale and --max-frame must be positive")
    args.section = section_slug(args)
    args.out = args.out or ROOT / "data" / "benchmark" / args.section
    args.plots_dir = args.plots_dir or args.out / "plots"
    return args


def section_slug(args: argparse.Namespace) -> str:
    slug = args.suite
    if args.frames_scale != 1:
        slug += f"_scale{args.frames_scale:g}"
    if args.max_frame:
        slug += f"_max{args.max_frame}"
    return slug


def regenerate_command(args: argparse.Namespace) -> str:
    cmd = f"python tools/benchmark.py --suite {args.suite} --seeds {args.seeds}"
    if args.frames_scale != 1:
        cmd += f" --frames-scale {args.frames_scale:g}"
    if args.max_frame:
        cmd += f" --max-frame {args.max_frame}"
    return cmd


# ------------------------------------------------------------------------------------------------- discovery
def env_label(spec: Spec) -> str:
    if spec.env.name == "LunarLander-v3" and spec.env.kwargs.get("continuous"):
        return "LunarLanderContinuous-v3"
    return spec.env.name


def algorithm_label(spec: Spec) -> str:
    """SLM-Lab's name for the algorithm (DDQN+PER: double DQN with prioritized replay)."""
    label = ALGORITHM_LABELS.get(spec.agent.algorithm.name, spec.agent.algorithm.name)
    memory = getattr(spec.agent.memory, "name", "") or ""
    return label + "+PER" if memory.startswith("Prioritized") else label


def discover(specs_dir: Path, envs: tuple[str, ...]) -> list[Entry]:
    """Every loadable spec in `specs_dir` whose env is in `envs`, in suite order."""
    entries = []
    for path in sorted([*specs_dir.glob("*.yaml"), *specs_dir.glob("*.yml"), *specs_dir.glob("*.json")]):
        try:
            names = spec_names(read_spec_file(path)) or [None]
            for name in names:
                spec = load_spec(path, name)
                if env_label(spec) in envs:
                    entries.append(Entry(path.stem if name is None else f"{path.stem}:{name}", path, name, spec,
                                         env_label(spec), algorithm_label(spec)))
        except SpecError as err:
            print(f"skipping {path.name}: {err}", file=sys.stderr)
    order = {a: i for i, a in enumerate(ALGORITHM_ORDER)}
    return sorted(entries, key=lambda e: (envs.index(e.env), order.get(e.algorithm, len(order)), e.key))


def frame_budget(spec: Spec, args: argparse.Namespace) -> int:
    budget = max(1, round(spec.env.max_frame * args.frames_scale))
    return min(budget, args.max_frame) if args.max_frame else budget


def cell_overrides(entry: Entry, args: argparse.Namespace) -> list[str]:
    budget = frame_budget(entry.spec, args)
    log_frequency = min(entry.spec.meta.log_frequency, max(budget // 20, 1))  # ~20 curve points at least
    return [f"env.max_frame={budget}", f"meta.log_frequency={log_frequency}", "meta.max_session=1"]


def explicit_settings(value: Any) -> Any:
    """`value` with every dataclass field that holds its default left out, recursively.

    The cell key hashes these, not the whole resolved spec: a zoo release that adds a spec field (at a default
    that keeps the old behaviour) must not orphan every cached cell. What the code did is recorded beside each
    cell instead (`git_sha`, `versions`)."""
    if isinstance(value, list | tuple):
        return [explicit_settings(v) for v in value]
    if isinstance(value, dict):
        return {k: explicit_settings(v) for k, v in value.items()}
    if not dataclasses.is_dataclass(value):
        return value
    default = type(value)()
    return {f.name: explicit_settings(getattr(value, f.name)) for f in dataclasses.fields(value)
            if f.init and getattr(value, f.name) != getattr(default, f.name)}


def cell_key(entry: Entry, args: argparse.Namespace, seed: int) -> str:
    """Spec, hash of its explicit settings (budget included) and seed: an edited spec gets new keys."""
    settings = explicit_settings(load_spec(entry.path, entry.name, cell_overrides(entry, args)))
    settings.pop("name", None)  # the spec's own name is the key's first part
    settings.pop("translation", None)
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{entry.key}|{digest}|seed{seed}"


# ---------------------------------------------------------------------------------------------------- cells
def describe_device(spec: Spec) -> str:
    device = spec.meta.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({cpu_name()}, {len(os.sched_getaffinity(0))} cores)"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def repo_relative(path: Path) -> Path:
    """`path` relative to the checkout when inside it: the committed cache must not name one machine's paths."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def run_cell(entry: Entry, seed: int, args: argparse.Namespace) -> dict:
    """Train one spec x seed in a subprocess; the cell's result (raises RuntimeError on failure)."""
    cell_dir = args.out / "runs" / f"{entry.key.replace(':', '_')}_seed{seed}"
    if cell_dir.exists():  # an unfinished attempt (not in the cache): start over
        shutil.rmtree(cell_dir)
    cell_dir.mkdir(parents=True)
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), str(entry.path), *([entry.name] if entry.name else []),
           "train", "--seed", str(seed), "--data-dir", str(cell_dir), "--no-progress"]
    for override in cell_overrides(entry, args):
        cmd += ["-s", override]
    start = time.perf_counter()
    with open(cell_dir / "train.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall_seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (cell_dir / "train.log").read_text()[-1500:]
        raise RuntimeError(f"exit {proc.returncode}; log {cell_dir / 'train.log'}:\n{tail}")
    (run_dir,) = [p for p in cell_dir.iterdir() if (p / "metrics.csv").is_file()]
    rows = read_metrics(run_dir / "metrics.csv")
    last = rows[-1]
    if int(last["frame"]) < frame_budget(entry.spec, args):  # stopped early (SIGINT / SIGTERM): not a result
        raise RuntimeError(f"stopped at frame {last['frame']} before the budget; {cell_dir} will be rerun")
    loop_seconds = sum(float(last[k]) for k in TIME_PHASES if last.get(k)) or float(last["time/wall"])
    curve = [(int(r["frame"]), float(r["train/return_ma"])) for r in rows if r["train/return_ma"]]
    step = max(1, -(-len(curve) // CURVE_POINTS))
    eval_points = [(int(r["frame"]), float(r["eval/return"])) for r in rows if r.get("eval/return")]
    evals = [value for _, value in eval_points]
    target = TARGETS.get(entry.env)
    provenance = json.loads((run_dir / "run.json").read_text())
    return {"spec": entry.key, "env": entry.env, "algorithm": entry.algorithm, "seed": seed,
            "budget": frame_budget(entry.spec, args), "frames": int(last["frame"]),
            "score": float(last["train/return_ma"]) if last["train/return_ma"] else None,
            "final_eval": evals[-1] if evals else None, "best_eval": max(evals) if evals else None,
            "target_frame": next((f for f, v in eval_points if target is not None and v >= target), None),
            "wall_seconds": wall_seconds, "loop_seconds": loop_seconds,
            "fps": int(last["frame"]) / loop_seconds, "device": describe_device(entry.spec),
            "versions": provenance.get("versions", package_versions()), "git_sha": provenance.get("git_sha"),
            "run_dir": str(repo_relative(run_dir)), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "curve": curve[::step] + ([curve[-1]] if (len(curve) - 1) % step else [])}


def load_cache(path: Path) -> dict:
    if path.is_file():
        cache = json.loads(path.read_text())
        if cache.get("format") == CACHE_FORMAT:
            return cache
    return {"format": CACHE_FORMAT, "cells": {}}


def store_cell(path: Path, key: str, cell: dict) -> dict:
    """Add one finished cell to the cache file and return the whole cache. The file is re-read under an
    exclusive lock, so benchmarks run side by side on one cache (say, different `--only` sets) keep each
    other's cells."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cache = load_cache(path)
        cache["cells"][key] = cell
        atomic_write_text(path, json.dumps(cache, indent=1))
    return cache


# --------------------------------------------------------------------------------------------------- report
def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.mean(values):.1f} ± {statistics.pstdev(values):.1f}"


def median_best(cells: list[dict]) -> str:
    best = [c["best_eval"] for c in cells if c.get("best_eval") is not None]
    return fmt(statistics.median(best)) if best else "-"


def target_frames(cells: list[dict]) -> str:
    """Median frames to the target over the seeds that reached it, and how many did (cells cached before
    this column existed count as unknown)."""
    known = [c for c in cells if "target_frame" in c]
    reached = [c["target_frame"] for c in known if c["target_frame"] is not None]
    if not known:
        return "-"
    median = f"{statistics.median(reached):,.0f} " if reached else ""
    return f"{median}({len(reached)}/{len(known)})"


def version_text(versions: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def section_markers(section: str) -> tuple[str, str]:
    return f"<!-- benchmark:{section} begin -->", f"<!-- benchmark:{section} end -->"


def earlier_rows(path: Path, section: str) -> dict[str, tuple[list[str], str]]:
    """Rows of the section's table, as the report now stands, that hold results: spec -> (cells, versions)."""
    begin, end = section_markers(section)
    text = path.read_text() if path.is_file() else ""
    if begin not in text or end not in text:
        return {}
    body = text.split(begin, 1)[1].split(end, 1)[0]
    rows, legend = {}, {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 14 and cells[4].isdigit() and int(cells[4]) > 0:
            rows[cells[2]] = cells
        elif line.startswith("Versions: "):
            legend = dict(item.split(": ", 1) for item in line.removeprefix("Versions: ").split("; ") if ": " in item)
    return {spec: (cells, legend.get(cells[13], "")) for spec, cells in rows.items()}


def report_section(args: argparse.Namespace, entries: list[Entry], results: dict[str, list[dict]],
                   plots: list[Path], carried: dict[str, tuple[list[str], str]]) -> str:
    """The section's markdown; `carried`: rows of specs the cache has no cell of, as the report had them."""
    envs = SUITES[args.suite]
    reference, published_scores = REFERENCES[args.suite]
    quick = args.frames_scale != 1 or args.max_frame
    title = f"Suite `{args.suite}`" + (" - QUICK PASS with shrunk frame budgets (scores not comparable to the "
                                       "published ones)" if quick else "")
    version_sets: list[str] = []
    lines = [f"### {title}", "",
             f"Regenerate (resumable; add `--only <spec>` to run a subset): `{regenerate_command(args)}`", "",
             "Score: final training-return moving average (SLM-Lab's trial score). Evals: mean return of the greedy "
             "policy; best eval and target frames are medians over seeds (target frames: first evaluation at or "
             f"above the env's target, {', '.join(f'{e} {t}' for e, t in TARGETS.items() if e in envs) or 'none'}; "
             "`k/n` seeds reached it).", "",
             "| env | algorithm | spec | frames | seeds | score (mean ± std) | final eval | best eval | "
             f"frames to target | {reference} | wall s | frames/s | device | versions |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    order = {a: i for i, a in enumerate(ALGORITHM_ORDER)}
    rows: list[tuple[int, int, str, str]] = []  # sorted by env, then algorithm
    covered = set()
    for entry in entries:
        cells = results.get(entry.key, [])
        published = published_scores.get(entry.env, {}).get(entry.algorithm)
        covered.add((entry.env, entry.algorithm))
        sort_key = (envs.index(entry.env), order.get(entry.algorithm, len(order)), entry.key)
        if entry.key in carried:  # results the cache cannot back: the row as the report had it
            row, versions = carried[entry.key]
            if versions not in version_sets:
                version_sets.append(versions)
            row = [*row[:13], chr(ord("A") + version_sets.index(versions))]
            rows.append((*sort_key, "| " + " | ".join(row) + " |"))
            continue
        if not cells:
            budget = frame_budget(entry.spec, args)
            rows.append((*sort_key, f"| {entry.env} | {entry.algorithm} | {entry.key} | {budget:,} | 0 | not run | "
                         f"- | - | - | {fmt(published, 0)} | - | - | - | - |"))
            continue
        versions = version_text(cells[0]["versions"])
        if versions not in version_sets:
            version_sets.append(versions)
        scores = [c["score"] for c in cells if c["score"] is not None]
        evals = [c["final_eval"] for c in cells if c["final_eval"] is not None]
        rows.append((*sort_key,
                     f"| {entry.env} | {entry.algorithm} | {entry.key} | {cells[0]['frames']:,} | {len(cells)} | "
                     f"{spread(scores)} | {fmt(statistics.mean(evals) if evals else None)} | {median_best(cells)} | "
                     f"{target_frames(cells) if entry.env in TARGETS else '-'} | {fmt(published, 0)} | "
                     f"{fmt(statistics.mean(c['wall_seconds'] for c in cells), 0)} | "
                     f"{fmt(statistics.mean(c['fps'] for c in cells), 0)} | {cells[0]['device']} | "
                     f"{chr(ord('A') + version_sets.index(versions))} |"))
    for env in envs:
        for algorithm, score in published_scores.get(env, {}).items():
            if (env, algorithm) not in covered:
                missing = f"| {env} | {algorithm} | no spec yet | - | 0 | - | - | - | - | {score} | - | - | - | - |"
                rows.append((envs.index(env), order.get(algorithm, len(order)), "", missing))
    lines += [row[-1] for row in sorted(rows)]
    if carried:
        lines += ["", f"Rows carried over from the report as it stood (their results cache was not kept; the plots "
                      f"of their envs are not redrawn): {', '.join(e.key for e in entries if e.key in carried)}."]
    lines += ["", "Versions: " + ("; ".join(f"{chr(ord('A') + i)}: {v}" for i, v in enumerate(version_sets))
                                  if version_sets else "-"), ""]
    for plot in plots:
        rel = os.path.relpath(plot, args.report.parent)
        lines.append(f"![{plot.stem}]({rel})")
    return "\n".join(lines).rstrip() + "\n"


def write_report(path: Path, section: str, body: str) -> None:
    """Replace (or append) the section between this section's marker comments; keep the rest of the file."""
    begin, end = section_markers(section)
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    block = f"{begin}\n{body}{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(path, text)


def plot_env(env: str, entries: list[Entry], results: dict[str, list[dict]], out: Path,
             reference: tuple[str, dict]) -> Path | None:
    """Mean training-return moving average over seeds (band: min to max) of every spec on `env`, and the
    `reference` (column name, published scores) as dotted lines."""
    import matplotlib  # heavy import, only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for entry in entries:
        curves = [np.array(c["curve"], dtype=float) for c in results.get(entry.key, []) if len(c["curve"]) > 1]
        if entry.env != env or not curves:
            continue
        lo, hi = max(c[0, 0] for c in curves), min(c[-1, 0] for c in curves)
        grid = np.linspace(lo, hi, 100) if hi > lo else np.array([lo])
        ys = np.stack([np.interp(grid, c[:, 0], c[:, 1]) for c in curves])
        (line,) = ax.plot(grid, ys.mean(0), label=f"{entry.algorithm} ({entry.key}, {len(curves)} seeds)")
        ax.fill_between(grid, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.2)
        published = reference[1].get(env, {}).get(entry.algorithm)
        if published is not None:
            ax.axhline(published, color=line.get_color(), linestyle=":", linewidth=1)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("frames")
    ax.set_ylabel("training return (100-episode moving average)")
    ax.set_title(f"{env} (dotted: {reference[0]} published score)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path, tmp = out / f"{env}.png", out / f".{env}.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def update_outputs(args: argparse.Namespace, entries: list[Entry], cache: dict) -> None:
    keys = {cell_key(e, args, seed): e.key for e in entries for seed in range(args.seeds)}
    results: dict[str, list[dict]] = {}
    for key, spec_key in keys.items():
        if key in cache["cells"]:
            results.setdefault(spec_key, []).append(cache["cells"][key])
    carried = {spec: row for spec, row in earlier_rows(args.report, args.section).items() if spec not in results}
    plots = []
    for env in SUITES[args.suite]:
        existing = args.plots_dir / f"{env}.png"
        if existing.is_file() and any(e.env == env and e.key in carried for e in entries):
            plots.append(existing)  # redrawn from the cache, it would lose the curves of the carried rows
        elif path := plot_env(env, entries, results, args.plots_dir, REFERENCES[args.suite]):
            plots.append(path)
    write_report(args.report, args.section, report_section(args, entries, results, plots, carried))


# ----------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up in redirected logs
    entries = discover(args.specs_dir, SUITES[args.suite])
    selected = [e for e in entries if not args.only or e.key in args.only or e.spec.name in args.only]
    if args.only and not selected:
        print(f"error: --only {' '.join(args.only)} matches no spec of suite {args.suite} "
              f"(specs: {', '.join(e.key for e in entries)})", file=sys.stderr)
        return 2
    cache_path = args.out / "results.json"
    cache = load_cache(cache_path)
    todo = []
    for entry in selected:
        for seed in range(args.seeds):
            key = cell_key(entry, args, seed)
            if key in cache["cells"]:
                print(f"cached   {entry.key} seed {seed}: score {fmt(cache['cells'][key]['score'])}")
            else:
                todo.append((key, entry, seed))
    print(f"{len(todo)} cells to run ({args.jobs} at a time), results in {cache_path}")
    failures = 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_cell, entry, seed, args): (key, entry, seed) for key, entry, seed in todo}
        for done, future in enumerate(as_completed(futures), 1):
            key, entry, seed = futures[future]
            try:
                cell = future.result()
            except RuntimeError as err:
                failures += 1
                print(f"[{done}/{len(todo)}] FAILED {entry.key} seed {seed}: {err}", file=sys.stderr)
                continue
            cache = store_cell(cache_path, key, cell)
            print(f"[{done}/{len(todo)}] {entry.key} seed {seed}: score {fmt(cell['score'])}, "
                  f"{cell['frames']:,} frames, {cell['wall_seconds']:.0f} s, {cell['fps']:,.0f} frames/s")
            update_outputs(args, entries, cache)
    update_outputs(args, entries, load_cache(cache_path))
    print(f"report: {args.report} (section {args.section}), plots: {args.plots_dir}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
