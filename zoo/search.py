"""Hyperparameter search with Optuna, driven by the spec's `search:` block.

`python tools/search.py <spec file> [spec name] [-s k=v] [--sampler tpe|random|cmaes] [--workers N]
[--storage URL | --journal] [--resume [DIR]]`

The search block holds dotted spec keys (or nested mappings) with an SLM-Lab distribution suffix:
    uniform [low, high]   loguniform [low, high]   normal [mean, std]
    randint [low, high)   qrandint [low, high, q]  choice [a, b, ...] (any YAML values)
Each Optuna trial samples the space, runs `meta.max_session` seeds in turn (zoo.trial; the trial's score is
their mean final_return_ma) and reports every evaluation so `meta.search_scheduler` (median or
successive_halving, with `grace_period` and `reduction_factor`) can prune it; search stops at `meta.max_trial`.

Layout of `data/<spec_name>_search_<timestamp>/` (an experiment):
    search.json          how to resume: spec file and name, overrides, seed, sampler, storage, study name
    study.db             the Optuna study (SQLite; study.log with --journal; elsewhere with --storage URL)
    trials/t<n>/         one trial directory per Optuna trial (see zoo.trial)
    experiment.csv       every trial: number, state, score, sampled values, metrics
    experiment_graph.png the score against each searched parameter
    <spec_name>_best.yaml the best trial as a ready-to-run spec
Several machines join one study with the same `--storage postgresql://...` and `--study-name`.
"""

import argparse
import csv
import importlib.util
import json
import math
import multiprocessing
import random
import re
import socket
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy.exc
import yaml
from optuna.trial import TrialState

from zoo.record import RUN_STAMP, atomic_write_text, command_line
from zoo.spec import MetaSpec, Spec, SpecError, load_spec, parse_override, spec_to_dict
from zoo.trial import (
    create_trial_dir,
    json_safe,
    pyplot,
    random_baseline,
    run_session,
    save_figure,
    write_trial_metrics,
)

DISTRIBUTIONS = ("uniform", "loguniform", "normal", "randint", "qrandint", "choice")
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)  # toward meta.max_trial
HEARTBEAT_S, HEARTBEAT_GRACE_S = 60, 180  # a trial silent this long (its worker died) is marked FAIL
SCHEMA_RETRIES = 5  # workers creating one shared study's schema at once: the losers retry
NORMAL_QUANTILE = 1e-3  # `normal` samples a quantile in [q, 1 - q], so the values stay finite


# ------------------------------------------------------------------------------------------- search space
@dataclass
class SearchParam:
    """One searched field: dotted spec key, distribution name and its arguments."""

    key: str
    kind: str
    args: list

    def suggest(self, trial: optuna.Trial) -> Any:
        """The value for this trial (Optuna stores `normal` as its quantile and non-scalar choices as JSON)."""
        a = self.args
        if self.kind in ("uniform", "loguniform"):
            return trial.suggest_float(self.key, a[0], a[1], log=self.kind == "loguniform")
        if self.kind == "normal":
            quantile = trial.suggest_float(self.key, NORMAL_QUANTILE, 1 - NORMAL_QUANTILE)
            return statistics.NormalDist(a[0], a[1]).inv_cdf(quantile)
        if self.kind == "randint":
            return trial.suggest_int(self.key, a[0], a[1] - 1)
        if self.kind == "qrandint":
            return trial.suggest_int(self.key, a[0], a[1], step=a[2])
        if all(_scalar(c) for c in a):
            return trial.suggest_categorical(self.key, a)
        return json.loads(trial.suggest_categorical(self.key, [json.dumps(c) for c in a]))

    def encode(self, value: Any) -> Any:
        """A spec value as Optuna stores it (for enqueued trials)."""
        if self.kind == "normal":
            return statistics.NormalDist(*self.args).cdf(value)
        if self.kind == "choice" and not all(_scalar(c) for c in self.args):
            return json.dumps(value)
        return value

    def probes(self) -> list:
        """Values that must all make a valid spec (validation): every choice, or both ends of a range."""
        a = self.args
        if self.kind == "choice":
            return list(a)
        return [a[0]] if self.kind == "normal" else [a[0], a[1] - 1 if self.kind == "randint" else a[1]]


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def flatten_search(search: dict, prefix: str = "") -> dict[str, Any]:
    """Nested or dotted search mappings -> {"a.b.c__kind": args}."""
    flat = {}
    for key, value in search.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if "__" in str(key):
            flat[path] = value
        elif isinstance(value, dict):
            flat.update(flatten_search(value, path))
        else:
            raise SpecError(f"search.{path}", "needs a distribution suffix: __" + ", __".join(DISTRIBUTIONS))
    return flat


def check_param(name: str, args: Any) -> SearchParam:
    """Validate `key__kind: args`; one-line SpecError naming the search key and what is allowed."""
    key, _, kind = name.rpartition("__")
    where = f"search.{name}"
    if kind not in DISTRIBUTIONS:
        raise SpecError(where, f"unknown distribution '__{kind}'; allowed: __" + ", __".join(DISTRIBUTIONS))
    if not isinstance(args, list):
        raise SpecError(where, f"expected a list, got {args!r}")
    if kind == "choice":
        if not args:
            raise SpecError(where, "needs at least one choice")
        return SearchParam(key, kind, args)
    sizes = {"qrandint": 3}
    if len(args) != sizes.get(kind, 2):
        shape = {"normal": "[mean, std]", "qrandint": "[low, high, q]"}.get(kind, "[low, high]")
        raise SpecError(where, f"expected {shape}, got {args!r}")
    integral = kind in ("randint", "qrandint")
    if not all(isinstance(a, int) and not isinstance(a, bool) if integral else _number(a) for a in args):
        raise SpecError(where, f"expected {'integers' if integral else 'numbers'}, got {args!r}")
    if kind == "normal":
        if args[1] <= 0:
            raise SpecError(where, f"std must be > 0, got {args[1]}")
    elif kind == "qrandint" and (args[0] > args[1] or args[2] <= 0):
        raise SpecError(where, f"needs low <= high and q > 0, got {args!r}")
    elif kind != "qrandint" and args[0] >= args[1]:
        raise SpecError(where, f"needs low < high, got {args!r}")
    if kind == "loguniform" and args[0] <= 0:
        raise SpecError(where, f"needs low > 0 for a log scale, got {args[0]}")
    return SearchParam(key, kind, [float(a) for a in args] if not integral else args)


def parse_search(spec: Spec, spec_file: str, spec_name: str | None, overrides: dict[str, Any]) -> list[SearchParam]:
    """The validated search space; each value of each parameter is tried on the spec (unknown keys, ranges)."""
    try:
        params = [check_param(name, args) for name, args in flatten_search(spec.search).items()]
        if not params:
            raise SpecError("search", "empty: add dotted keys with a distribution suffix, e.g. "
                            "agent.algorithm.gamma__uniform: [0.95, 0.999]")
        for param in params:
            for value in param.probes():
                try:
                    load_spec(spec_file, spec_name, {**overrides, param.key: value})
                except SpecError as err:
                    raise SpecError(f"search.{param.key}__{param.kind}",
                                    f"value {value!r} does not fit the spec ({err.where}: {err.message})") from None
    except SpecError as err:
        raise SpecError(err.where, err.message, file=spec_file) from None
    return params


# ------------------------------------------------------------------------------------------- study set-up
@dataclass
class SearchConfig:
    """Everything a worker process needs (picklable; stored as search.json for --resume)."""

    spec_file: str
    spec_name: str | None
    overrides: dict[str, Any]
    experiment_dir: str
    study_name: str
    storage: str | None  # None: SQLite in the experiment dir
    journal: bool = False
    sampler: str = "tpe"
    seed: int = 0
    data_dir: str = "data"
    extra: dict[str, Any] = field(default_factory=dict)

    def local(self) -> bool:
        return self.storage is None


def with_driver(url: str) -> str:
    """SQLAlchemy 2.1 maps `postgresql://` to psycopg 3; without it, use psycopg2 (the `postgres` extra)."""
    if not url.startswith("postgresql://"):
        return url
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def make_storage(config: SearchConfig) -> optuna.storages.BaseStorage:
    exp = Path(config.experiment_dir)
    if config.journal:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(exp / "study.log")))
    url = with_driver(config.storage or f"sqlite:///{exp / 'study.db'}")
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(SCHEMA_RETRIES):
        try:
            return open_rdb_storage(url, engine)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # Workers that start together on a fresh database race to create Optuna's schema: on PostgreSQL all
            # but one fail on `CREATE TYPE ... AS ENUM` (a duplicate pg_type row). DDL is transactional there, so
            # the loser's attempt rolled back; once the winner has committed, a retry finds the schema and goes on.
            time.sleep(0.5 * (attempt + 1) + random.random())
    return open_rdb_storage(url, engine)


def open_rdb_storage(url: str, engine: dict[str, Any]) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():  # Optuna marks heartbeats experimental; our tests cover what we rely on
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S,
                                          grace_period=HEARTBEAT_GRACE_S)


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(meta: MetaSpec) -> optuna.pruners.BasePruner:
    """meta.search_scheduler -> an Optuna pruner; steps are evaluations (counted across a trial's sessions)."""
    if meta.search_scheduler == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=meta.grace_period)
    if meta.search_scheduler == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=meta.grace_period,
                                                      reduction_factor=meta.reduction_factor)
    return optuna.pruners.NopPruner()


def load_base_spec(config: SearchConfig) -> Spec:
    return load_spec(config.spec_file, config.spec_name, config.overrides)


def open_study(config: SearchConfig, sampler_seed: int) -> optuna.Study:
    spec = load_base_spec(config)
    return optuna.create_study(study_name=config.study_name, storage=make_storage(config), direction="maximize",
                               sampler=make_sampler(config.sampler, sampler_seed), pruner=make_pruner(spec.meta),
                               load_if_exists=True)


def counted_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=COUNTED))


class SurplusTrial(Exception):
    """Two workers raced for the last of meta.max_trial slots; the later trial stops before it runs."""


def claim_slot(trial: optuna.Trial, max_trial: int) -> None:
    """MaxTrialsCallback counts after a trial ends, so workers finishing together can both start one more.
    Trial ids grow with creation order, so the trial that finds max_trial earlier ones counted is surplus:
    it is recorded as FAIL (user attr `surplus`), left out of the results; MaxTrialsCallback then stops the worker."""
    earlier = [t for t in trial.study.get_trials(deepcopy=False, states=COUNTED) if t._trial_id < trial._trial_id]
    if len(earlier) >= max_trial:
        trial.set_user_attr("surplus", True)
        raise SurplusTrial(f"trial {trial.number}: meta.max_trial={max_trial} already reached")


# -------------------------------------------------------------------------------------------------- worker
def objective(trial: optuna.Trial, config: SearchConfig, params: list[SearchParam], max_trial: int) -> float:
    """Sample, run the sessions one after another with pruning, return the mean final_return_ma."""
    claim_slot(trial, max_trial)
    values = {p.key: p.suggest(trial) for p in params}
    trial.set_user_attr("values", values)
    trial.set_user_attr("host", socket.gethostname())
    spec = load_spec(config.spec_file, config.spec_name, {**config.overrides, **values})
    trial_dir, runs = create_trial_dir(spec, Path(config.experiment_dir) / "trials", config.seed,
                                       spec.meta.max_session, name=f"t{trial.number}")
    trial.set_user_attr("trial_dir", str(trial_dir))
    baseline = random_baseline(spec.env, Path(config.data_dir))
    state = {"step": 0, "pruned": False}

    def report(session, row: dict) -> bool:
        if not math.isfinite(row["eval/return"]):
            return False
        trial.report(row["eval/return"], state["step"])
        state["step"] += 1
        state["pruned"] = trial.should_prune()
        return state["pruned"]

    sessions = []
    for seed, path in runs:
        sessions.append(run_session(spec, seed, path, on_eval=report))
        if state["pruned"]:
            break
    metrics = write_trial_metrics(trial_dir, sessions, baseline)
    trial.set_user_attr("metrics", json_safe(metrics["mean"]))
    print(f"trial {trial.number}: {'pruned' if state['pruned'] else 'done'}, score {metrics['score']:.4g}, "
          f"{json.dumps(values)}", flush=True)
    if state["pruned"]:
        raise optuna.TrialPruned()
    return metrics["score"]


def run_worker(config: SearchConfig, worker: int) -> None:
    """One worker: optimize until the study counts meta.max_trial trials (complete, pruned or running)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_base_spec(config)
    params = parse_search(spec, config.spec_file, config.spec_name, config.overrides)
    probe = open_study(config, 0)
    seed = int(np.random.SeedSequence([config.seed, worker, len(probe.trials)]).generate_state(1)[0])
    study = open_study(config, seed)  # seeds differ per worker and per resume, so workers do not repeat draws
    max_trial = spec.meta.max_trial
    if counted_trials(study) >= max_trial:
        return
    study.optimize(lambda t: objective(t, config, params, max_trial), gc_after_trial=True, catch=(SurplusTrial,),
                   callbacks=[optuna.study.MaxTrialsCallback(max_trial, states=COUNTED)])


def fail_stale_trials(config: SearchConfig) -> int:
    """--resume of a local study: trials left RUNNING by a killed search can never finish; mark them FAIL.
    (Shared storages rely on heartbeats instead: another machine's running trial is not stale.)"""
    storage = make_storage(config)
    study_id = storage.get_study_id_from_name(config.study_name)
    stale = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        storage.set_trial_state_values(storage.get_trial_id_from_study_id_trial_number(study_id, t.number),
                                       TrialState.FAIL)
    return len(stale)


# -------------------------------------------------------------------------------------------------- outputs
def experiment_rows(study: optuna.Study) -> list[dict[str, Any]]:
    rows = []
    for t in study.trials:
        if t.user_attrs.get("surplus"):
            continue
        row = {"trial": t.number, "state": t.state.name, "score": t.value,
               "duration_s": t.duration.total_seconds() if t.duration else None}
        row.update({k: json.dumps(v) if isinstance(v, list | dict) else v
                    for k, v in t.user_attrs.get("values", {}).items()})
        row.update(t.user_attrs.get("metrics", {}))
        row["trial_dir"] = t.user_attrs.get("trial_dir")
        rows.append(row)
    return rows


def write_experiment_csv(rows: list[dict[str, Any]], path: Path) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def export_best_spec(study: optuna.Study, config: SearchConfig) -> Path | None:
    """The best complete trial as `<spec_name>_best.yaml`: the base spec with its values, no search block."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    best = max(complete, key=lambda t: t.value)
    values = best.user_attrs["values"]
    spec = load_spec(config.spec_file, config.spec_name, {**config.overrides, **values})
    data = spec_to_dict(spec)
    data["search"] = {}
    header = (f"# Best trial {best.number} of the search {Path(config.experiment_dir).name} "
              f"(score {best.value:.4g}, mean final_return_ma over {spec.meta.max_session} sessions).\n"
              f"# Searched values: {json.dumps(values)}\n# Base spec: {config.spec_file}"
              f"{' ' + config.spec_name if config.spec_name else ''}\n")
    path = Path(config.experiment_dir) / f"{spec.name}_best.yaml"
    atomic_write_text(path, header + yaml.safe_dump(data, sort_keys=False))
    return path


def plot_experiment(rows: list[dict[str, Any]], kinds: dict[str, str], path: Path) -> Path | None:
    """experiment_graph.png: score against each searched parameter (complete trials; pruned ones in grey)."""
    done = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED") and r.get("final_return_ma") is not None]
    keys = list(kinds)
    if not done or not keys:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(3.5 * len(keys), 3.5), squeeze=False, sharey=True)
    for ax, key in zip(axes[0], keys, strict=True):
        for state, style in (("COMPLETE", {"c": "tab:blue"}), ("PRUNED", {"c": "grey", "marker": "x"})):
            pts = [(r[key], r["final_return_ma"]) for r in done if r["state"] == state and key in r]
            if not pts:
                continue
            xs = [x if _number(x) else str(x) for x, _ in pts]
            ax.scatter(xs, [y for _, y in pts], label=state.lower(), **style)
        ax.set_xlabel(key.split(".")[-1] if len(key) > 30 else key)
        if kinds.get(key) == "loguniform":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("final_return_ma")
    axes[0][0].legend(loc="best")
    fig.suptitle(f"experiment {path.parent.name}")
    return save_figure(fig, path)


def export(study: optuna.Study, config: SearchConfig, params: list[SearchParam]) -> dict[str, Any]:
    exp = Path(config.experiment_dir)
    rows = experiment_rows(study)
    write_experiment_csv(rows, exp / "experiment.csv")
    plot_experiment(rows, {p.key: p.kind for p in params}, exp / "experiment_graph.png")
    best_path = export_best_spec(study, config)
    states = [r["state"] for r in rows]
    return {"best_spec": best_path, "complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
            "failed": states.count("FAIL")}


# ---------------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="search.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec_file", help="YAML or JSON spec file with a search: block")
    parser.add_argument("spec_name", nargs="?", default=None, help="spec name in a multi-spec file")
    parser.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE", help="override a field")
    parser.add_argument("--sampler", choices=("tpe", "random", "cmaes"), default="tpe", help="default: tpe")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes on the study (default 1)")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="shared study database, e.g. postgresql://user:pass@host/db (default: SQLite in "
                             "the experiment directory)")
    parser.add_argument("--journal", action="store_true", help="a journal file instead of SQLite (local storage)")
    parser.add_argument("--study-name", default=None, help="study name (default: the spec name); workers on "
                        "several machines use the same --storage and --study-name")
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="DIR",
                        help="continue an interrupted search: its experiment directory, or the newest of this spec")
    parser.add_argument("--enqueue", metavar="FILE", help="YAML list of {dotted key: value} points to try first "
                        "(known-good settings); keys must be searched parameters")
    parser.add_argument("--data-dir", default="data", help="where experiment directories go (default: data)")
    parser.add_argument("--seed", type=int, default=None, help="root seed (overrides meta.seed; default 0)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    return args


def newest_experiment(data_dir: Path, spec_name: str) -> Path | None:
    """The most recent experiment directory of exactly `spec_name` (`<spec_name>_search_<timestamp>`)."""
    name = re.compile(rf"{re.escape(spec_name)}_search_{RUN_STAMP}")
    candidates = Path(data_dir).iterdir() if Path(data_dir).is_dir() else ()
    runs = [p for p in candidates if name.fullmatch(p.name) and (p / "search.json").is_file()]
    return max(runs, key=lambda p: p.stat().st_mtime, default=None)


def make_config(args: argparse.Namespace) -> SearchConfig:
    """A new experiment's config, or the stored one for --resume."""
    overrides = dict(parse_override(text) for text in args.set)
    spec = load_spec(args.spec_file, args.spec_name, overrides)
    if args.sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:
        raise SpecError("--sampler", "cmaes needs the cmaes package: pip install -e '.[search]'")
    if args.resume:
        exp = newest_experiment(Path(args.data_dir), spec.name) if args.resume == "latest" else Path(args.resume)
        if exp is None or not (exp / "search.json").is_file():
            raise SpecError("--resume", f"no search experiment of spec '{spec.name}' to resume"
                            + (f" at {exp}" if exp else f" in {args.data_dir}"))
        config = SearchConfig(**json.loads((exp / "search.json").read_text()))
        config.storage = args.storage or config.storage  # stored without its password
        return config
    seed = args.seed if args.seed is not None else (spec.meta.seed or 0)
    exp = Path(args.data_dir) / f"{spec.name}_search_{time.strftime('%Y_%m_%d_%H%M%S')}"
    exp.mkdir(parents=True, exist_ok=False)
    config = SearchConfig(spec_file=str(args.spec_file), spec_name=args.spec_name, overrides=overrides,
                          experiment_dir=str(exp), study_name=args.study_name or spec.name, storage=args.storage,
                          journal=args.journal, sampler=args.sampler, seed=seed, data_dir=str(args.data_dir),
                          extra={"command": command_line()})
    stored = {**config.__dict__, "storage": _hide_password(config.storage)}
    atomic_write_text(exp / "search.json", json.dumps(stored, indent=2))
    return config


def enqueue_points(study: optuna.Study, params: list[SearchParam], path: str) -> None:
    """--enqueue: queue the listed points; every key must be a searched parameter."""
    by_key = {p.key: p for p in params}
    try:
        points = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SpecError("--enqueue", f"cannot read {path} ({type(err).__name__})") from None
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise SpecError("--enqueue", f"{path}: expected a list of mappings of searched keys to values")
    for point in points:
        unknown = [k for k in point if k not in by_key]
        if unknown:
            raise SpecError("--enqueue", f"'{unknown[0]}' is not a searched parameter; searched: {', '.join(by_key)}")
        study.enqueue_trial({k: by_key[k].encode(v) for k, v in point.items()})


def _hide_password(url: str | None) -> str | None:
    if url is None:
        return None
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def search(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = make_config(args)
    spec = load_base_spec(config)
    params = parse_search(spec, config.spec_file, config.spec_name, config.overrides)
    study = open_study(config, config.seed)  # creates the study (and its tables) once, before any worker
    if args.enqueue and not args.resume:
        enqueue_points(study, params, args.enqueue)
    if args.resume and config.local():
        stale = fail_stale_trials(config)
        print(f"resuming {config.experiment_dir}: {counted_trials(study)} trials counted, {stale} stale marked FAIL")
    print(f"search {config.experiment_dir}: {len(params)} parameters, {spec.meta.max_trial} trials x "
          f"{spec.meta.max_session} sessions, sampler {config.sampler}, pruner {spec.meta.search_scheduler}, "
          f"{args.workers} worker(s)", flush=True)
    if args.workers == 1:
        run_worker(config, 0)
    else:
        # explicit spawn: `import torchrl` sets it anyway, and workers must not inherit torch threads or DB handles
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=run_worker, args=(config, i)) for i in range(args.workers)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        if any(w.exitcode != 0 for w in workers):
            print(f"error: a worker exited with status {[w.exitcode for w in workers]}", file=sys.stderr)
            return 1
    summary = export(optuna.load_study(study_name=config.study_name, storage=make_storage(config)), config, params)
    print(f"search done: {summary['complete']} complete, {summary['pruned']} pruned, {summary['failed']} failed; "
          f"experiment.csv and experiment_graph.png in {config.experiment_dir}")
    if summary["best_spec"]:
        print(f"best spec: {summary['best_spec']} (run it with python tools/train.py {summary['best_spec']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return search(args)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
