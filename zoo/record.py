"""Run directories: resolved spec, provenance, metrics CSV + TensorBoard, atomic checkpoints, graphs.

Layout of `data/<spec_name>_<timestamp>/`:
    spec.yaml          the resolved spec (runs as-is with tools/train.py)
    run.json           command, git SHA, package versions, seed, host
    metrics.csv        one row per log or eval point (frame-clocked), a column per metric (names below)
    tb/                TensorBoard event files
    ckpt/latest.pt     newest checkpoint; ckpt/previous.pt: the one before (fallback if latest is unreadable);
                       ckpt/best.pt: best evaluation so far; ckpt/replay_<frame>_<n>/: replay buffers they name
    ckpt/actor.pt      the greedy actor's plain state dict (latest; actor_best.pt: at the best evaluation)
    learning_curve.png train and eval return against frames
"""

import csv
import io
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml

import zoo
from zoo.checkpoint import dump_replay, remove_tree
from zoo.spec import Spec, load_spec, spec_to_dict

# Metric names, the same in metrics.csv and TensorBoard: `frame` (the clock), then namespaced where they are made:
#   train/  return, return_ma, length, episodes, fps (session); the algorithm's statistics (explore_var, kl_approx, ...)
#   eval/   return, return_std, length (session, on the eval env)
#   loss/   the algorithm's losses (main: the one it reports as `loss`; critic, actor, ...)
#   time/   wall (training seconds so far), and cumulative seconds per loop phase (TIME_PHASES: they sum to the wall)
# The CSV holds every metric logged: a column appears when its metric first does (see RunDir.log).
NAMESPACES = ("train/", "eval/", "loss/", "time/")  # CSV column groups, in this order after `frame`
TIME_PHASES = ("time/collect", "time/update", "time/log", "time/eval", "time/checkpoint")
# differ between otherwise identical runs
TIMING_COLUMNS = ("time/wall", "train/fps", "time/updates_per_s", *TIME_PHASES)
OLD_COLUMNS = {  # metrics.csv columns of runs written before the names were namespaced (zoo <= 0.2.1)
    "wall_time": "time/wall", "fps": "train/fps", "episodes": "train/episodes", "train_return": "train/return",
    "train_return_ma": "train/return_ma", "train_length": "train/length", "eval_return": "eval/return",
    "eval_return_std": "eval/return_std", "eval_length": "eval/length", "loss": "loss/main",
    "explore_var": "train/explore_var", "lr_factor": "train/lr_factor",
    **{phase.replace("/", "_"): phase for phase in TIME_PHASES}}
RESUME_KEYS = ("format", "frame", "seed", "agent", "rng")  # what a checkpoint must hold to resume from
PACKAGES = ("torch", "torchrl", "tensordict", "gymnasium", "ale-py", "numpy", "optuna", "zoo")


def _file_mode() -> int:
    """Mode of a newly created file under the process umask (mkstemp itself creates 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read (missing, truncated, corrupt or unsafe)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save `state` atomically (a crash leaves the previous file intact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    try:
        torch.save(state, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, require: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True` (no code runs); one-line CheckpointError on any problem."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the file cannot be trusted
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: unreadable checkpoint ({reason[:160]})") from None
    missing = [key for key in require if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"{path}: not a zoo checkpoint (no '{missing[0]}')")
    return state


def package_versions() -> dict[str, str]:
    """Versions of python and the packages a run depends on; zoo's from its source (an editable install's
    metadata keeps the version it was installed at)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = zoo.__version__ if name == "zoo" else metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class RunDir:
    """One session's run directory: writes metrics, checkpoints and graphs."""

    def __init__(self, path: Path, tensorboard: bool = True, purge_step: int | None = None):
        self.path = Path(path)
        self.ckpt_dir = self.path / "ckpt"
        self.metrics_path = self.path / "metrics.csv"
        self.tensorboard = tensorboard
        self.purge_step = purge_step  # on resume: TensorBoard drops events at or past this frame
        self._writer = None
        self._columns: list[str] | None = None
        self._replay_refs: list[str] = []  # replay folders named by previous.pt and latest.pt

    @classmethod
    def create(cls, spec: Spec, root: Path, seed: int, command: list[str], tensorboard: bool = True,
               name: str | None = None) -> "RunDir":
        """A new `root/<name or spec_name_timestamp>` holding the resolved spec and provenance."""
        stamp = time.strftime("%Y_%m_%d_%H%M%S")
        path = Path(root) / (name or f"{spec.name}_{stamp}")
        suffix = 1
        while path.exists():
            suffix += 1
            path = Path(root) / f"{spec.name}_{stamp}_{suffix}"
        path.mkdir(parents=True)
        run = cls(path, tensorboard)
        atomic_write_text(path / "spec.yaml", yaml.safe_dump(spec_to_dict(spec), sort_keys=False))
        provenance = {"spec_name": spec.name, "command": command, "seed": seed, "git_sha": git_sha(),
                      "versions": package_versions(), "host": platform.node(), "started": time.time()}
        atomic_write_text(path / "run.json", json.dumps(provenance, indent=2))
        return run

    # ------------------------------------------------------------------------------------------ metrics
    def log(self, row: dict[str, float | int | None]) -> None:
        """Append a metrics row to the CSV (flushed) and TensorBoard, under the same names.

        A metric not seen before adds a column: the file is rewritten atomically with the wider header (earlier
        rows leave it empty), so metrics.csv always has one header that names every column.
        """
        if self._columns is None:
            self._columns = self._existing_columns()
        new = [key for key in row if key not in self._columns]
        if new:
            self._columns = ordered_columns([*self._columns, *new])
            self._rewrite_csv()
        with open(self.metrics_path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._columns).writerow({k: _fmt(row.get(k)) for k in self._columns})
        if self.tensorboard:
            self._tb_log(row)

    def _existing_columns(self) -> list[str]:
        """metrics.csv's columns, the old names of a run written by zoo <= 0.2.1 renamed in the file."""
        if not self.metrics_path.exists():
            return []
        with open(self.metrics_path, newline="") as f:
            header = next(csv.reader(f), [])
        columns = [OLD_COLUMNS.get(name, name) for name in header]
        if columns != header:
            self._columns = columns
            self._rewrite_csv()
        return columns

    def _rewrite_csv(self) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self._columns, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.read_metrics())
        atomic_write_text(self.metrics_path, out.getvalue())

    def _tb_log(self, row: dict[str, Any]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # heavy import, only when TensorBoard is on

            self._writer = SummaryWriter(str(self.path / "tb"), purge_step=self.purge_step)
        frame = int(row["frame"])
        for key, value in row.items():
            if key == "frame" or value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            self._writer.add_scalar(key, value, frame)
        self._writer.flush()

    def read_metrics(self) -> list[dict[str, str]]:
        """metrics.csv's rows under the current metric names (old runs' columns renamed, see OLD_COLUMNS)."""
        return read_metrics(self.metrics_path)

    def metrics_text(self) -> str:
        """metrics.csv as written so far (checkpoints carry it, so a resumed run's CSV continues exactly)."""
        return self.metrics_path.read_text() if self.metrics_path.exists() else ""

    def restore_metrics(self, text: str) -> None:
        """Rewrite metrics.csv as it was when a checkpoint was taken (drops rows logged after it)."""
        if text:
            atomic_write_text(self.metrics_path, text)
        else:
            self.metrics_path.unlink(missing_ok=True)
        self._columns = None

    # -------------------------------------------------------------------------------------- checkpoints
    def save(self, state: dict[str, Any], best: bool = False, buffer=None,
             actor: dict[str, Any] | None = None) -> None:
        """Write ckpt/latest.pt (the old one becomes ckpt/previous.pt), and best.pt when `best`.

        `actor` (the greedy actor's plain state dict) goes to ckpt/actor.pt, and to ckpt/actor_best.pt when
        `best`: files a TorchRL user loads with `actor.load_state_dict(torch.load(path, weights_only=True))`
        into the actor `zoo.build` returns, without zoo's checkpoint layout or exploration state.

        With a replay `buffer`, it is dumped first into a new folder named in the checkpoint, and folders
        named by neither latest.pt nor previous.pt are deleted last: a crash at any point leaves a readable
        checkpoint whose replay folder is complete.
        """
        if buffer is not None:
            name = f"replay_{state['frame']}_{time.time_ns()}"
            tmp = self.ckpt_dir / f".{name}.tmp"
            dump_replay(buffer, tmp)
            os.replace(tmp, self.ckpt_dir / name)
            state = {**state, "replay": name}
        latest, tmp = self.ckpt_dir / "latest.pt", self.ckpt_dir / ".latest.new.pt"
        save_checkpoint(tmp, state)
        if latest.exists():
            os.replace(latest, self.ckpt_dir / "previous.pt")
        os.replace(tmp, latest)
        if best:
            save_checkpoint(self.ckpt_dir / "best.pt", state)
        if actor is not None:
            save_checkpoint(self.ckpt_dir / "actor.pt", actor)
            if best:
                save_checkpoint(self.ckpt_dir / "actor_best.pt", actor)
        self._replay_refs = [*self._replay_refs, state["replay"]][-2:] if "replay" in state else []
        for folder in self.ckpt_dir.glob("replay_*"):
            if folder.name not in self._replay_refs:
                remove_tree(folder)
        for folder in self.ckpt_dir.glob(".replay_*.tmp"):  # left by a crash mid-dump
            remove_tree(folder)

    def load_resume_state(self, warn=print) -> dict[str, Any]:
        """latest.pt, or previous.pt with a one-line warning when latest is missing, truncated or corrupt."""
        errors = []
        for name in ("latest.pt", "previous.pt"):
            try:
                state = load_checkpoint(self.ckpt_dir / name, require=RESUME_KEYS)
                if "replay" in state and not (self.ckpt_dir / state["replay"]).is_dir():
                    raise CheckpointError(f"{self.ckpt_dir / name}: its replay folder {state['replay']} is missing")
            except CheckpointError as err:
                errors.append(str(err))
                continue
            if errors:
                warn(f"warning: {errors[0]}; resuming from {self.ckpt_dir / name} (frame {state['frame']})")
            self._replay_refs = [state["replay"]] if "replay" in state else []
            return state
        raise CheckpointError(errors[0] if len(errors) == 1 or "no checkpoint file" in errors[1] else
                              f"{errors[0]}; {errors[1]}")

    # ------------------------------------------------------------------------------------------- graphs
    def plot(self) -> Path | None:
        """Redraw learning_curve.png from metrics.csv."""
        rows = self.read_metrics()
        if not rows:
            return None
        import matplotlib  # heavy import, only when a graph is drawn

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        def series(key):
            pts = [(float(r["frame"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
            return zip(*pts, strict=True) if pts else ((), ())

        fig, ax = plt.subplots(figsize=(7, 4))
        for key, label, style in (("train/return_ma", "train return (moving avg)", "-"),
                                  ("eval/return", "eval return", "o-")):
            xs, ys = series(key)
            if xs:
                ax.plot(xs, ys, style, label=label, markersize=3)
        ax.set_xlabel("frames")
        ax.set_ylabel("return")
        ax.set_title(self.path.name)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
        fig.tight_layout()
        out = self.path / "learning_curve.png"
        tmp = self.path / ".learning_curve.tmp.png"
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, out)
        return out

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def ordered_columns(columns: list[str]) -> list[str]:
    """`frame` first, then the NAMESPACES in order, each in order of first appearance; others last."""
    def group(name: str) -> int:
        if name == "frame":
            return -1
        return next((i for i, ns in enumerate(NAMESPACES) if name.startswith(ns)), len(NAMESPACES))

    return sorted(dict.fromkeys(columns), key=group)


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a metrics.csv (missing file: none), its columns under the current names (see OLD_COLUMNS)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{OLD_COLUMNS.get(k, k): v for k, v in row.items()} for row in csv.DictReader(f)]


RUN_STAMP = r"\d{4}_\d{2}_\d{2}_\d{6}(?:_\d+)?"  # RunDir.create's time.strftime("%Y_%m_%d_%H%M%S")[_<n>]


def run_spec_name(path: Path) -> str | None:
    """The spec a run (or trial) directory belongs to: run.json's (trial.json's) `spec_name`.

    Runs whose run.json lacks it fall back to their directory name without the timestamp `RunDir.create` adds
    (`ppo_lunar_2026_01_02_030405` -> `ppo_lunar`); None when neither says.
    """
    path = Path(path)
    try:  # a session's run.json, or a trial's trial.json (see zoo.trial)
        name = json.loads((path / ("trial.json" if is_trial_dir(path) else "run.json")).read_text()).get("spec_name")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(name, str) and name:
        return name
    match = re.fullmatch(rf"(.+)_{RUN_STAMP}", Path(path).name)
    return match.group(1) if match else None


def is_trial_dir(path: Path) -> bool:
    """Whether `path` is a trial directory (zoo.trial: trial.json and one run directory per session)."""
    return (Path(path) / "trial.json").is_file()


def newest_run(root: Path, spec_name: str) -> Path | None:
    """The most recent run or trial directory of exactly `spec_name` under `root` (never another spec's run)."""
    root = Path(root)
    runs = [p for p in root.iterdir() if run_spec_name(p) == spec_name] if root.is_dir() else []
    return max(runs, key=lambda p: p.stat().st_mtime, default=None)


def resolve_run_dir(target: str, data_dir: Path, spec_name: str) -> Path:
    """The run (or trial) directory a `train@<target>` / `enjoy@<target>` mode names: `latest` (of `spec_name`) or
    a path."""
    data_dir = Path(data_dir)
    if target == "latest":
        path = newest_run(data_dir, spec_name)
        if path is None:
            raise CheckpointError(f"{data_dir}: no run of spec '{spec_name}' to resume")
        return path
    path = Path(target)
    if not path.is_dir() and (data_dir / target).is_dir():
        path = data_dir / target
    if not (path / "run.json").is_file() and not is_trial_dir(path):
        raise CheckpointError(f"{path}: not a run directory (no run.json) nor a trial directory (no trial.json)")
    return path


def load_run_spec(run_path: Path, overrides: list[str]) -> Spec:
    """The resolved spec a run (or trial) was started with (its spec.yaml), plus this command's `-s` overrides."""
    spec = load_spec(run_path / "spec.yaml", None, overrides)
    name = run_spec_name(run_path)
    if name is None:
        raise CheckpointError(f"{run_path}: run.json (trial.json) unreadable or without spec_name")
    spec.name = name
    return spec


def command_line() -> list[str]:
    return [sys.executable, *sys.argv]
