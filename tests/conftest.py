"""Shared helpers: run the CLI in a subprocess, read a run directory's metrics."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"


def run_cli(*args: str, data_dir: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python tools/train.py <args> --data-dir <data_dir> --no-progress`, captured."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "RL_WARNINGS": "False"}
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), *args, "--data-dir", str(data_dir), "--no-progress"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def only_run_dir(data_dir: Path) -> Path:
    runs = [p for p in data_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def cli():
    return run_cli
