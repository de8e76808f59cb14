"""Run SLM-Lab's own spec files through zoo: `python tools/check_slm_corpus.py <slm_lab/spec dir> [--run]`.

The acceptance check of the SLM-Lab translation (zoo/slm.py) on files this repository does not hold: every spec of
every file given (or found under the directories given) is loaded, built and, with `--run`, trained in dev mode
through `tools/train.py`, one at a time. Templated specs get `-s env=...` (an Atari, MuJoCo or classic env, from the
file's name) and `-s max_frame=...`, as SLM-Lab's own command line needs. Prints one line per spec and a summary.
"""

import argparse
import contextlib
import io
import signal
import sys
import tempfile
from pathlib import Path

from zoo.cli import main as train_main
from zoo.spec import SpecError, read_spec_file, spec_names

SKIP = ("playground",)  # MuJoCo Playground (JAX) specs: not gymnasium envs


def template_values(path: Path) -> list[str]:
    """The `-s` values SLM-Lab's README passes to its templated specs, by family."""
    name = path.name
    env = "ALE/Pong-v5" if "atari" in name else "HalfCheetah-v5" if "mujoco" in name else "CartPole-v1"
    return ["-s", f"env={env}", "-s", "max_frame=1e6"]


def spec_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        found = sorted(path.rglob("*")) if path.is_dir() else [path]
        files += [f for f in found if f.suffix in (".json", ".yaml", ".yml") and not any(s in f.name for s in SKIP)]
    return files


def run_one(path: Path, name: str | None, run: bool, data_dir: str, max_frame: int | None) -> tuple[int, str]:
    frames = ["-s", f"env.max_frame={max_frame}"] if max_frame else []
    argv = [str(path), *([name] if name else []), "dev", *template_values(path), *frames, "--no-progress",
            "--data-dir", data_dir, "--seed", "0", *([] if run else ["--dry-run"])]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = train_main(argv)
        except Exception as exc:  # a traceback is a failure to report, not to stop the survey
            status, _ = 99, err.write(f"traceback: {type(exc).__name__}: {exc}")
    text = err.getvalue().strip().splitlines()
    return status, " | ".join(text[:6])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="SLM-Lab spec files or directories")
    parser.add_argument("--run", action="store_true", help="train each spec in dev mode (default: load and build)")
    parser.add_argument("--one-per-file", action="store_true", help="only the first spec of each file")
    parser.add_argument("--max-frame", type=int, help="frames per dev run (default: dev mode's cap)")
    args = parser.parse_args(argv)
    ok = failed = 0
    stopped = []  # SIGINT / SIGTERM: a running dev session stops at its next batch, then the survey stops
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stopped.append(signum))
    with tempfile.TemporaryDirectory() as data_dir:
        for path in spec_files(args.paths):
            try:
                names = spec_names(read_spec_file(path)) or [None]
            except SpecError as err:
                print(f"FAIL {path}: {err}")
                failed += 1
                continue
            for name in names[:1] if args.one_per_file else names:
                status, message = run_one(path, name, args.run, data_dir, args.max_frame)
                ok, failed = ok + (status == 0), failed + (status != 0)
                print(f"{'ok  ' if status == 0 else 'FAIL'} {path}:{name or ''}" + (f"  [{status}] {message}"
                                                                                    if status else ""), flush=True)
                if stopped:
                    print(f"interrupted: {ok} specs ran, {failed} failed before the signal")
                    return 130
    print(f"{ok} specs ran, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
