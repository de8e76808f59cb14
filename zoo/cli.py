"""`python tools/train.py <spec file> [spec name] [mode] [-s key=value ...]`.

Modes: `train` (default), `dev` (short, verbose), `train@latest` / `train@<run dir>` (resume; a trial
directory: every unfinished session), `enjoy@latest` / `enjoy@<run dir>` (replay the best checkpoint; a trial
directory: its best session's). Spec errors print one line and exit 2.

torch, TorchRL and the modules built on them are imported inside the functions that run a spec: `--help`
and argument errors then answer without several seconds of imports.
"""

import argparse
import os
import re
import sys
from pathlib import Path

import yaml

from zoo.spec import Spec, SpecError, field_docs, load_spec, spec_to_dict

MODE = re.compile(r"^(dev|train|enjoy)(@.+)?$")
DEV_MAX_FRAME = 5000
SMALL_CPU_CORES = 4  # at or below: one torch thread per process (more threads contend with env stepping)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="train.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec_file", nargs="?", help="YAML or JSON spec file")
    parser.add_argument("rest", nargs="*", help="[spec name] [mode]")
    parser.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a dotted field (agent.algorithm.gamma=0.98) or fill a ${var} template")
    parser.add_argument("--dry-run", action="store_true", help="print the component graph and exit (an SLM-Lab "
                        "spec: also the zoo spec it became and where zoo's behaviour differs)")
    parser.add_argument("--format", choices=("zoo", "slm"), default=None,
                        help="spec file format (default: recognised by its shape; slm: SLM-Lab v5, translated)")
    parser.add_argument("--help-spec", action="store_true", help="list every spec field with default and doc")
    parser.add_argument("--data-dir", default="data", help="where run directories go (default: data)")
    parser.add_argument("--seed", type=int, default=None, help="root seed (overrides meta.seed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--record", action="store_true", help="enjoy: write a video of one episode into the run dir")
    parser.add_argument("--render", action="store_true", help="enjoy: show the episodes in a window (needs a display)")
    parser.add_argument("--job", metavar="FILE", help="run a YAML list of {spec, name, mode, set: [k=v]} jobs in turn")
    parser.add_argument("--optimize-perf", action=argparse.BooleanOptionalAction, default=True,
                        help="fit torch threads to the machine (when meta.num_threads is null); TF32 matmuls and "
                             "cuDNN autotuning on CUDA (default: on)")
    parser.add_argument("--profile", action="store_true",
                        help="torch.profiler trace of a few batches into <run>/profile (TensorBoard) and a "
                             "per-phase time breakdown at the end")
    parser.add_argument("--target-return", type=float, default=None, metavar="R",
                        help="stop at the first evaluation whose mean return reaches R (time-to-solve runs)")
    args = parser.parse_intermixed_args(argv)  # the mode may follow the options
    args.spec_name, args.mode = None, "train"
    for word in args.rest:
        if MODE.match(word):
            args.mode = word
        elif args.spec_name is None:
            args.spec_name = word
        else:
            parser.error(f"unexpected argument '{word}'")
    if args.spec_file is None and not args.help_spec and not args.job:
        parser.error("a spec file is required")
    return args


def apply_dev_mode(spec: Spec, overrides: list[str]) -> None:
    """dev: a short, verbose run (budget capped unless env.max_frame is set on the command line)."""
    if not any(o.startswith("env.max_frame=") for o in overrides):
        spec.env.max_frame = min(spec.env.max_frame, DEV_MAX_FRAME)
    spec.meta.log_frequency = min(spec.meta.log_frequency, max(spec.env.max_frame // 10, 1))
    spec.meta.eval_frequency = min(spec.meta.eval_frequency, max(spec.env.max_frame // 2, 1))
    spec.meta.eval_episodes = min(spec.meta.eval_episodes, 2)


def optimize_performance(spec: Spec) -> None:
    """--optimize-perf: fit torch's intra-op threads to the machine and let CUDA use TF32 and cuDNN autotuning."""
    import torch
    if spec.meta.num_threads is None:
        cores = len(os.sched_getaffinity(0))
        # small MLPs gain nothing from many intra-op threads; leave half the cores to env stepping
        spec.meta.num_threads = 1 if cores <= SMALL_CPU_CORES else min(cores // 2, 8)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
        torch.backends.cudnn.benchmark = True


def train(args: argparse.Namespace, spec: Spec) -> int:
    from zoo.components import build
    from zoo.record import RunDir, command_line, is_trial_dir, load_run_spec, resolve_run_dir
    from zoo.session import Session

    data_dir = Path(args.data_dir)
    kind, _, target = args.mode.partition("@")
    if target:  # resume: the run's own spec (budget, seed, overrides it was started with)
        run_path = resolve_run_dir(target, data_dir, spec.name)
        spec = load_run_spec(run_path, args.set)
        if is_trial_dir(run_path) and not args.dry_run:
            if args.optimize_perf:
                optimize_performance(spec)
            return resume_trial(args, spec, run_path)
    if kind == "dev":
        apply_dev_mode(spec, args.set)
    if args.optimize_perf:
        optimize_performance(spec)
    seed = args.seed if args.seed is not None else spec.meta.seed
    if kind == "train" and not target and spec.meta.max_session > 1 and not args.dry_run:
        return train_trial(args, spec, seed)
    state = None
    if target:
        run = RunDir(run_path)
        state = run.load_resume_state(warn=lambda message: print(message, file=sys.stderr))
        seed = state["seed"]
    components = build(spec, seed=seed, start_frame=state["frame"] if state else 0)
    try:  # run_loop shuts the collector down; before it, a dry run or an unfitting checkpoint must too
        if args.dry_run:
            if spec.translation:
                print(translation_report(spec))
            print(components.describe())
            components.close()
            return 0
        if state is None:
            run = RunDir.create(spec, data_dir, components.seed, command_line())
        session = Session(components, run, progress=not args.no_progress, verbose=kind == "dev",
                          profile=args.profile, target_return=args.target_return)
        if state is not None:
            session.resume(state)
            print(f"resuming {run.path} at frame {session.frame}")
    except BaseException:
        components.close()
        raise
    row = session.run_loop()
    print(f"run {run.path}: frame {session.frame}, train/return_ma {row.get('train/return_ma', float('nan')):.2f}, "
          f"eval/return {session.last_eval.get('eval/return', float('nan')):.2f}, best {session.best_eval:.2f}")
    if args.profile:
        total = sum(session.timer.totals.values())
        print("time per phase: " + ", ".join(f"{phase} {seconds:.2f}s ({seconds / max(total, 1e-9):.0%})"
                                             for phase, seconds in session.timer.totals.items()))
        if session.profile_trace is not None:
            print(f"profiler trace: {session.profile_trace} (tensorboard --logdir {session.profile_trace})")
        else:
            print(f"no profiler trace: the run stopped at frame {session.frame}, before the batches it was to "
                  f"trace ({session.profile_schedule})")
    return 0


def translation_report(spec: Spec) -> str:
    """The zoo spec an SLM-Lab spec became, and every note on where zoo's behaviour differs from SLM-Lab's."""
    lines = [f"# zoo spec translated from SLM-Lab's '{spec.name}'",
             yaml.safe_dump(spec_to_dict(spec), sort_keys=False).rstrip(), "# translation notes (SLM-Lab -> zoo):"]
    return "\n".join(lines + [f"#   {note}" for note in spec.translation])


def train_trial(args: argparse.Namespace, spec: Spec, seed: int | None) -> int:
    """meta.max_session > 1: the seeds run as parallel processes; prints the `trial_metrics:` line."""
    import numpy as np

    from zoo.trial import run_trial

    seed = int(np.random.SeedSequence().generate_state(1)[0] % 2**31) if seed is None else seed
    trial_dir, metrics = run_trial(spec, Path(args.data_dir), seed)
    return report_trial(trial_dir, spec, metrics)


def resume_trial(args: argparse.Namespace, spec: Spec, trial_dir: Path) -> int:
    """train@<trial dir>: continue every unfinished session of the trial; prints the `trial_metrics:` line."""
    from zoo import trial

    print(f"resuming trial {trial_dir}")
    return report_trial(trial_dir, spec, trial.resume_trial(trial_dir, spec, Path(args.data_dir)))


def report_trial(trial_dir: Path, spec: Spec, metrics: dict | None) -> int:
    from zoo.trial import format_trial_line

    if metrics is None:
        print(f"trial {trial_dir} stopped before every session finished; resume with train@{trial_dir}")
        return 0
    print(f"trial {trial_dir}: {spec.meta.max_session} sessions, metrics in {trial_dir / 'trial_metrics.json'}")
    print(format_trial_line(metrics))
    return 0


def run_jobs(args: argparse.Namespace) -> int:
    """--job FILE: train each listed spec in turn (with this command's --data-dir); returns the worst status."""
    jobs = read_job_list(args.job)
    status = 0
    for i, job in enumerate(jobs):
        argv = [str(job["spec"]), *([job["name"]] if job.get("name") else []), job.get("mode", "train"),
                "--data-dir", args.data_dir, *(["--no-progress"] if args.no_progress else [])]
        for override in job.get("set", []):
            argv += ["-s", override]
        print(f"job {i + 1}/{len(jobs)}: {' '.join(argv)}", flush=True)
        status = max(status, main(argv))
    return status


def read_job_list(path: str) -> list[dict]:
    try:
        jobs = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SpecError("--job", f"cannot read job file {path} ({type(err).__name__})") from None
    if isinstance(jobs, dict):
        jobs = jobs.get("jobs")
    if not isinstance(jobs, list) or not all(isinstance(j, dict) and "spec" in j for j in jobs):
        raise SpecError("--job", f"{path}: expected a list of mappings with a 'spec' key (and name, mode, set)")
    for job in jobs:
        unknown = set(job) - {"spec", "name", "mode", "set"}
        if unknown:
            raise SpecError("--job", f"{path}: unknown job key '{sorted(unknown)[0]}'; allowed: spec, name, mode, set")
    return jobs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.job:
        try:
            return run_jobs(args)
        except SpecError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    if args.help_spec:
        for path, default, doc in field_docs():
            print(f"{path:48s} {default:24s} {doc}")
        return 0
    from zoo.enjoy import enjoy
    from zoo.record import CheckpointError

    try:
        spec = load_spec(args.spec_file, args.spec_name, args.set, fmt=args.format)
        kind = args.mode.partition("@")[0]
        if kind == "enjoy":
            return enjoy(args, spec)
        return train(args, spec)
    except SpecError as err:  # builders raise theirs without the file: name it here
        text = str(err if err.file else SpecError(err.where, err.message, file=args.spec_file))
        for line in text.splitlines():  # a translated spec reports every untranslatable field, one per line
            print(f"error: {line}", file=sys.stderr)
        return 2
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the loop installed its handler (while building); nothing to save
        print("interrupted before training started", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout piped into a reader that closed early (`--dry-run | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes it
        return 141


if __name__ == "__main__":
    sys.exit(main())
