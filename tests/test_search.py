"""Trials and searches through the command lines: trial metrics, pruning, kill and resume, shared PostgreSQL."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.conftest import ROOT, run_cli
from zoo.cli import read_job_list
from zoo.metrics import trial_metrics
from zoo.search import SurplusTrial, claim_slot, with_driver
from zoo.spec import SpecError

FIXTURE = ROOT / "tests" / "fixtures" / "search_cartpole.yaml"
POSTGRES_URL = os.environ.get("ZOO_POSTGRES_URL", "postgresql://zoo:zoo@127.0.0.1:5432/zoo_test")
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "RL_WARNINGS": "False"}


def search_cmd(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "tools" / "search.py"), str(FIXTURE), *args]


def run_search(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(search_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=ENV)


def trial_states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def test_trial_runs_seeds_in_parallel_and_aggregates(tmp_path):
    result = run_cli(str(FIXTURE), "-s", "meta.max_session=2", "-s", "env.max_frame=1024", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("trial_metrics: final_return_ma=")
    trial_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    metrics = json.loads((trial_dir / "trial_metrics.json").read_text())
    series = [json.loads((trial_dir / "sessions" / f"s{i}" / "session_metrics.json").read_text()) for i in (0, 1)]
    assert series[0]["seed"] != series[1]["seed"] and len(series[0]["returns"]) == 2
    baseline = json.loads((tmp_path / "random_baselines.json").read_text())["CartPole-v1"]["mean"]
    expected = trial_metrics(series, baseline)
    assert metrics["mean"]["strength"] == pytest.approx(expected["mean"]["strength"])
    assert metrics["score"] == pytest.approx(sum(s["returns"][-1] + s["returns"][0] for s in series) / 4)
    for name in ("trial_graph.png", "sessions/s0/session_graph.png", "sessions/s1/metrics.csv"):
        assert (trial_dir / name).exists(), name


def one_complete_one_running(data: Path) -> bool:
    """Trial states read straight from the study file, read-only: opening it through Optuna would run its schema
    set-up (and the first lazy import of its ORM models) inside this poll, racing the workers creating the file."""
    dbs = list(data.glob("search_cartpole_search_*/study.db"))
    if not dbs:
        return False
    try:
        with closing(sqlite3.connect(f"file:{dbs[0]}?mode=ro", uri=True, timeout=1)) as con:
            states = {state for (state,) in con.execute("SELECT state FROM trials")}
    except sqlite3.Error:  # file or table not created yet, or locked by a writer
        return False
    return {"COMPLETE", "RUNNING"} <= states


def test_search_prunes_survives_kill_and_resumes(tmp_path):
    # two known points first (max_t 200), then points capped at 5 steps: always below them, so pruned
    points = tmp_path / "points.yaml"
    points.write_text(yaml.safe_dump([{"env.max_t": 200, "agent.net.optim_spec.lr": 0.001},
                                      {"env.max_t": 200, "agent.net.optim_spec.lr": 0.002}]
                                     + [{"env.max_t": 5, "agent.net.optim_spec.lr": 0.001}] * 4))
    data = tmp_path / "data"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(search_cmd("--workers", "2", "--enqueue", str(points), "--data-dir", str(data)),
                                 stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=ENV, start_new_session=True)
    try:  # kill the whole search (both workers) once a trial is complete and the next one is running
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None and not one_complete_one_running(data):
            time.sleep(0.5)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]

    result = run_search("--resume", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr[-3000:]
    exp = next(data.glob("search_cartpole_search_*"))
    states = trial_states(optuna.load_study(study_name="search_cartpole", storage=f"sqlite:///{exp / 'study.db'}"))
    assert states.count("COMPLETE") + states.count("PRUNED") == 4, states
    assert "PRUNED" in states and "FAIL" in states, states  # the killed trial is marked FAIL, not rerun as running
    rows = (exp / "experiment.csv").read_text().splitlines()
    assert rows[0].startswith("trial,state,score") and len(rows) == len(states) + 1
    assert (exp / "experiment_graph.png").exists()
    best = exp / "search_cartpole_best.yaml"
    assert "max_t: 200" in best.read_text()
    rerun = run_cli(str(best), "-s", "env.max_frame=512", data_dir=tmp_path / "best")
    assert rerun.returncode == 0, rerun.stderr[-3000:]


def postgres_reachable() -> bool:
    try:
        import psycopg2

        psycopg2.connect(POSTGRES_URL, connect_timeout=3).close()
        return True
    except Exception:  # noqa: BLE001 - no driver, no server or no database: not reachable
        return False


def test_two_workers_share_one_postgres_study(tmp_path):
    if not postgres_reachable():
        if os.environ.get("ZOO_REQUIRE_POSTGRES"):
            pytest.fail(f"ZOO_REQUIRE_POSTGRES is set but PostgreSQL is not reachable at {POSTGRES_URL}")
        pytest.skip("no PostgreSQL server (set ZOO_POSTGRES_URL; CI sets ZOO_REQUIRE_POSTGRES=1)")
    study_name = f"zoo_test_{uuid.uuid4().hex[:8]}"
    args = ["--storage", POSTGRES_URL, "--study-name", study_name, "-s", "meta.max_trial=3",
            "-s", "meta.search_scheduler=null", "--sampler", "random"]
    logs = [open(tmp_path / f"machine{i}.log", "w") for i in (0, 1)]  # noqa: SIM115 - closed below
    machines = [subprocess.Popen(search_cmd(*args, "--data-dir", str(tmp_path / f"machine{i}")), stdout=logs[i],
                                 stderr=subprocess.STDOUT, cwd=ROOT, env=ENV) for i in (0, 1)]
    try:
        codes = [m.wait(timeout=400) for m in machines]
    finally:
        for m, log in zip(machines, logs, strict=True):
            m.kill()
            log.close()
    assert codes == [0, 0], [(tmp_path / f"machine{i}.log").read_text()[-2000:] for i in (0, 1)]
    try:
        study = optuna.load_study(study_name=study_name, storage=with_driver(POSTGRES_URL))
        trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 3  # a raced-for 4th slot is marked surplus
        dirs = {Path(t.user_attrs["trial_dir"]).parents[2].name for t in trials}
        assert dirs == {"machine0", "machine1"}, dirs  # both processes ran trials of the one study
    finally:
        optuna.delete_study(study_name=study_name, storage=with_driver(POSTGRES_URL))


def test_job_file_runs_each_listed_spec(tmp_path):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(yaml.safe_dump([{"spec": str(FIXTURE), "mode": "dev", "set": ["env.max_frame=256"]},
                                    {"spec": str(FIXTURE), "set": ["env.max_frame=256", "meta.seed=1"]}]))
    result = run_cli("--job", str(jobs), data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "job 2/2" in result.stdout and len(list((tmp_path / "data").glob("search_cartpole_*"))) == 2
    jobs.write_text(yaml.safe_dump([{"spec": str(FIXTURE), "seed": 3}]))
    with pytest.raises(SpecError, match="unknown job key 'seed'"):
        read_job_list(str(jobs))


def test_claim_slot_marks_the_trial_past_max_trial_surplus():
    study = optuna.create_study(direction="maximize")
    for value in (1.0, 2.0):
        study.tell(study.ask(), value)
    racing = [study.ask(), study.ask()]  # two workers asked for the last slot at once
    claim_slot(racing[0], max_trial=3)
    with pytest.raises(SurplusTrial, match="max_trial=3"):
        claim_slot(racing[1], max_trial=3)
    assert racing[1].user_attrs == {"surplus": True}
