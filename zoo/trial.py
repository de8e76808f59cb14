"""Trials: `meta.max_session` seeds of one spec, run as parallel processes and summarised with zoo.metrics.

Layout of `data/<spec_name>_<timestamp>/` (a trial):
    spec.yaml, trial.json   the resolved spec; command, root seed and session seeds
    sessions/s<i>/          one run directory per session (see zoo.record), plus session_metrics.json
                            (its checkpoint series and scalar metrics) and session_graph.png
    trial_metrics.json      per-session and averaged metrics, consistency, IQM with a bootstrap CI
    trial_graph.png         mean eval return across sessions with a min-max band

Random-policy baselines (for strength) are computed once per env and cached in `<data dir>/random_baselines.json`.
"""

import fcntl
import json
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import yaml

from zoo.components import build
from zoo.envs import _env_factory
from zoo.metrics import trial_metrics
from zoo.record import CheckpointError, RunDir, atomic_write_text, command_line
from zoo.session import Session
from zoo.spec import EnvSpec, Spec, spec_to_dict

RANDOM_EPISODES = 20  # episodes of the uniform-random policy per baseline
RANDOM_MAX_STEPS = 200_000  # cap on the steps a baseline may take (long Atari episodes)
BASELINES_FILE = "random_baselines.json"


# ------------------------------------------------------------------------------------------ random baseline
def baseline_key(env_spec: EnvSpec) -> str:
    """Cache key: the env id, plus its kwargs and step limit when they are set (they change the baseline)."""
    extra = {k: v for k, v in (("kwargs", env_spec.kwargs), ("max_t", env_spec.max_t)) if v}
    return env_spec.name + (json.dumps(extra, sort_keys=True) if extra else "")


def measure_random_return(env_spec: EnvSpec, episodes: int = RANDOM_EPISODES, seed: int = 0) -> float:
    """Mean raw return of uniformly random actions over `episodes` episodes."""
    env = _env_factory(env_spec)()
    env.action_space.seed(seed)
    returns, steps = [], 0
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done and steps < RANDOM_MAX_STEPS:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total, steps, done = total + float(reward), steps + 1, terminated or truncated
        returns.append(total)
        if steps >= RANDOM_MAX_STEPS:
            break
    env.close()
    return float(np.mean(returns))


def random_baseline(env_spec: EnvSpec, data_dir: Path) -> float:
    """The env's random-policy return from the cache file, measured and stored (atomically, locked) if absent."""
    path = Path(data_dir) / BASELINES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    key = baseline_key(env_spec)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent trials measure each env once
        cache = json.loads(path.read_text()) if path.exists() else {}
        if key not in cache:
            cache[key] = {"mean": measure_random_return(env_spec), "episodes": RANDOM_EPISODES}
            atomic_write_text(path, json.dumps(cache, indent=2, sort_keys=True))
    return float(cache[key]["mean"])


# ------------------------------------------------------------------------------------------------ sessions
def session_seed(root_seed: int, index: int) -> int:
    """Independent seed of session `index` derived from the trial's root seed."""
    return int(np.random.SeedSequence([root_seed, index]).generate_state(1)[0] % 2**31)


def run_session(spec: Spec, seed: int, path: Path, *, progress: bool = False,
                on_eval: Callable[[Session, dict], bool] | None = None, resume: bool = False) -> dict:
    """Train one session into the run directory `path` (created beforehand); returns its checkpoint series.

    `resume`: continue from the run's checkpoint, or start it afresh in the same directory when it has none
    (killed before its first evaluation)."""
    run = RunDir(path)
    state = run.load_resume_state() if resume and (run.ckpt_dir / "latest.pt").is_file() else None
    session = Session(build(spec, seed=seed, start_frame=state["frame"] if state else 0), run, progress=progress,
                      on_eval=on_eval)
    if state is not None:
        session.resume(state)
    elif resume:  # rows and events of a start that never reached a checkpoint
        run.restore_metrics("")
        run.purge_step = 1
    session.run_loop()
    return write_session_series(session, seed, Path(path))


def write_session_series(session: Session, seed: int, path: Path) -> dict:
    """session_metrics.json (its evaluations: the series trial metrics are computed on) and session_graph.png."""
    series = {**session.evals, "seed": seed, "run_dir": str(path), "frame": session.frame}
    atomic_write_text(path / "session_metrics.json", json.dumps(json_safe(series), indent=2))
    plot_session(path)
    return series


def _session_process(spec: Spec, seed: int, path: str, resume: bool) -> dict:
    """Entry point of a session process (top level, so the spawn start method can import it)."""
    return run_session(spec, seed, Path(path), resume=resume)


def create_trial_dir(spec: Spec, root: Path, root_seed: int, sessions: int,
                     name: str | None = None) -> tuple[Path, list[tuple[int, Path]]]:
    """The trial directory `root/<name or spec_name_timestamp>` and one run directory per session: [(seed, path)]."""
    stamp = time.strftime("%Y_%m_%d_%H%M%S")
    path, suffix = Path(root) / (name or f"{spec.name}_{stamp}"), 1
    while path.exists():
        suffix += 1
        path = Path(root) / f"{spec.name}_{stamp}_{suffix}"
    path.mkdir(parents=True)
    seeds = [session_seed(root_seed, i) for i in range(sessions)]
    runs = [(seed, RunDir.create(spec, path / "sessions", seed, command_line(), name=f"s{i}").path)
            for i, seed in enumerate(seeds)]
    atomic_write_text(path / "spec.yaml", yaml.safe_dump(spec_to_dict(spec), sort_keys=False))
    atomic_write_text(path / "trial.json", json.dumps({"spec_name": spec.name, "command": command_line(),
                                                       "root_seed": root_seed, "session_seeds": seeds}, indent=2))
    return path, runs


def run_trial(spec: Spec, data_dir: Path, root_seed: int, processes: int | None = None) -> tuple[Path, dict | None]:
    """Run `spec.meta.max_session` sessions in parallel processes; write and return the trial metrics (None when
    the trial was stopped before every session finished: `resume_trial` continues it)."""
    trial_dir, runs = create_trial_dir(spec, data_dir, root_seed, spec.meta.max_session)
    return trial_dir, run_sessions(spec, trial_dir, [(seed, path, False) for seed, path in runs], data_dir, processes)


def resume_trial(trial_dir: Path, spec: Spec, data_dir: Path, processes: int | None = None) -> dict | None:
    """Continue every unfinished session of a trial (from its checkpoint, or afresh without one); the trial
    metrics as `run_trial`. `spec` is the trial's own (`zoo.record.load_run_spec`)."""
    seeds = json.loads((Path(trial_dir) / "trial.json").read_text())["session_seeds"]
    runs = [(seed, Path(trial_dir) / "sessions" / f"s{i}", True) for i, seed in enumerate(seeds)]
    return run_sessions(spec, Path(trial_dir), runs, data_dir, processes)


@contextmanager
def forward_signals():
    """SIGINT / SIGTERM sent to the trial's process reach its session processes, which checkpoint and stop (a
    terminal's Ctrl-C reaches them anyway; a scheduler's SIGTERM to the main process would not)."""
    def forward(signum, frame):
        for child in multiprocessing.active_children():
            os.kill(child.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_sessions(spec: Spec, trial_dir: Path, runs: list[tuple[int, Path, bool]], data_dir: Path,
                 processes: int | None = None) -> dict | None:
    """Train the sessions `(seed, run dir, resume)` in parallel processes (`resume`: from the run's checkpoint, if
    any; a session whose checkpoint is at `max_frame` is only read). Trial metrics once all have finished."""
    baseline = random_baseline(spec.env, data_dir)
    processes = processes or min(len(runs), os.cpu_count() or 1)
    done = {i: finished_series(seed, path) for i, (seed, path, resume) in enumerate(runs) if resume}
    done = {i: series for i, series in done.items() if series["frame"] >= spec.env.max_frame}
    # explicit spawn: `import torchrl` already sets it, and forking a process holding torch threads is unsafe
    with forward_signals(), ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {i: pool.submit(_session_process, spec, seed, str(path), resume)
                   for i, (seed, path, resume) in enumerate(runs) if i not in done}
        done.update({i: future.result() for i, future in futures.items()})
    sessions = [done[i] for i in range(len(runs))]
    if any(series["frame"] < spec.env.max_frame for series in sessions):
        return None
    return write_trial_metrics(trial_dir, sessions, baseline)


def finished_series(seed: int, path: Path) -> dict:
    """The checkpoint series of a session from its latest checkpoint (frame 0 without one)."""
    run = RunDir(path, tensorboard=False)
    if not (run.ckpt_dir / "latest.pt").is_file():
        return {"frames": [], "opt_steps": [], "returns": [], "seed": seed, "run_dir": str(path), "frame": 0}
    state = run.load_resume_state()
    return {**state.get("evals", {"frames": [], "opt_steps": [], "returns": []}), "seed": seed, "run_dir": str(path),
            "frame": state["frame"]}


def best_session(trial_dir: Path) -> Path:
    """The session of a trial whose best evaluation is highest (the one `enjoy@<trial dir>` replays)."""
    def best_return(path: Path) -> float:
        returns = [float(r["eval/return"]) for r in RunDir(path, tensorboard=False).read_metrics()
                   if r.get("eval/return") not in (None, "")]
        return max(returns, default=-math.inf)

    sessions = sorted((Path(trial_dir) / "sessions").glob("s*"), key=lambda p: int(p.name[1:]))
    if not sessions:
        raise CheckpointError(f"{trial_dir}: a trial directory without sessions")
    return max(sessions, key=best_return)


def write_trial_metrics(trial_dir: Path, sessions: list[dict], baseline: float) -> dict:
    """trial_metrics.json and trial_graph.png from the sessions' checkpoint series."""
    metrics = trial_metrics(sessions, baseline)
    for entry, series in zip(metrics["sessions"], sessions, strict=True):
        # each session's file also holds its scalar metrics, under SLM-Lab's names (strength, stability, ...)
        atomic_write_text(Path(series["run_dir"]) / "session_metrics.json",
                          json.dumps(json_safe({**series, "metrics": entry}), indent=2))
        entry.update(seed=series["seed"], run_dir=series["run_dir"])
    atomic_write_text(trial_dir / "trial_metrics.json", json.dumps(json_safe(metrics), indent=2))
    plot_trial(trial_dir, sessions)
    return metrics


def json_safe(value):
    """JSON-safe copy: NaN and infinities become null."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


# -------------------------------------------------------------------------------------------------- graphs
def pyplot():
    import matplotlib  # heavy import, only when a graph is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Save atomically (a reader never sees half a PNG) and close."""
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=100)
    pyplot().close(fig)
    os.replace(tmp, path)
    return path


def plot_session(run_path: Path) -> Path | None:
    """session_graph.png: train and eval return, loss, exploration variable against frames."""
    rows = RunDir(run_path, tensorboard=False).read_metrics()
    if not rows:
        return None
    plt = pyplot()

    def series(key):
        points = [(float(r["frame"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        return tuple(zip(*points, strict=True)) if points else ((), ())

    fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    for key, style in (("train/return_ma", "-"), ("eval/return", "o-")):
        axes[0].plot(*series(key), style, label=key, markersize=3)
    axes[0].set_ylabel("return")
    axes[0].legend(loc="best")
    for ax, key in zip(axes[1:], ("loss/main", "train/explore_var"), strict=True):
        ax.plot(*series(key), "-")
        ax.set_ylabel(key)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("frames")
    axes[0].set_title(f"session {run_path.parent.parent.name}/{run_path.name}")
    return save_figure(fig, run_path / "session_graph.png")


def plot_trial(trial_dir: Path, sessions: list[dict]) -> Path | None:
    """trial_graph.png: the mean eval return across sessions with a min-max band, against frames."""
    n = min((len(s["returns"]) for s in sessions), default=0)
    if n == 0:
        return None
    plt = pyplot()
    frames = np.asarray(sessions[0]["frames"][:n], dtype=float)
    returns = np.array([s["returns"][:n] for s in sessions], dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(frames, returns.min(axis=0), returns.max(axis=0), alpha=0.25, label="min-max of sessions")
    ax.plot(frames, returns.mean(axis=0), "o-", markersize=3, label=f"mean of {len(sessions)} sessions")
    ax.set_xlabel("frames")
    ax.set_ylabel("eval return")
    ax.set_title(f"trial {trial_dir.name}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return save_figure(fig, trial_dir / "trial_graph.png")


def format_trial_line(metrics: dict) -> str:
    """The final `trial_metrics:` line: averaged metrics, IQM with its CI, per-session scores."""
    mean = metrics["mean"]
    parts = [f"{k}={v:.4g}" for k, v in mean.items()]
    low, high = metrics["iqm"]["ci95"]
    parts.append(f"iqm={metrics['iqm']['final_return_ma']:.4g} [{low:.4g}, {high:.4g}]")
    parts.append("sessions=" + ",".join(f"{s['final_return_ma']:.4g}" for s in metrics["sessions"]))
    return "trial_metrics: " + " ".join(parts)
