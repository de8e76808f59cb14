"""env.collector ray: TorchRL's RayCollector on a local Ray instance, two collector actors, one killed mid-run.

Ray is an optional extra (`zoo[distributed]`): without it these tests skip, unless ZOO_REQUIRE_RAY is set (CI
sets it and installs the extra), so a broken install fails rather than hides."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from tests.conftest import ROOT, SPECS, only_run_dir, read_metrics
from tests.test_collectors import TINY, descendants
from zoo.components import build
from zoo.distributed import ray
from zoo.spec import load_spec

SPEC = str(SPECS / "ppo_cartpole.yaml")
ACTOR_CALL_TIMEOUT_S = 600
pytestmark = [pytest.mark.xdist_group("ray")]  # one Ray instance at a time on a 2-core machine


@pytest.fixture(autouse=True)
def need_ray():
    if ray is None:
        if os.environ.get("ZOO_REQUIRE_RAY"):
            pytest.fail("ZOO_REQUIRE_RAY is set but ray is not installed (pip install -e \".[distributed]\")")
        pytest.skip("ray not installed (the distributed extra; CI sets ZOO_REQUIRE_RAY=1)")


def actor_pids(collector) -> list[int]:
    """The process id of each collector actor."""
    return ray.get([actor.__ray_call__.remote(lambda _: os.getpid()) for actor in collector.remote_collectors],
                   timeout=ACTOR_CALL_TIMEOUT_S)


def actor_policy_weights(collector) -> list[TensorDict]:
    """Every actor's current policy weights (blocks until each actor has run the calls queued before)."""
    futures = [actor.__ray_call__.remote(lambda c: TensorDict.from_module(c.policy).data.clone())
               for actor in collector.remote_collectors]
    return ray.get(futures, timeout=ACTOR_CALL_TIMEOUT_S)


def collector_actors(pid: int) -> set[int]:
    """Processes below `pid` running a Ray collector actor (Ray names them `ray::Collector...`)."""
    found = set()
    for child in descendants(pid):
        try:
            if Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"ray::Collector"):
                found.add(child)
        except OSError:
            continue
    return found


def test_a_killed_worker_is_restarted_and_acts_with_the_pushed_weights():
    """Batches keep the vector layout `[num_envs, time]`; after a worker is killed the next batches still come,
    from a restarted actor, and every actor (the restarted one too) acts with the learner's latest weights."""
    components = build(load_spec(SPEC, None, [*TINY, "env.collector=ray", "env.max_frame=100000"]))
    try:
        batches = iter(components.collector)
        pids = actor_pids(components.collector)
        assert len(set(pids)) == 2
        frame = 0
        for step in range(6):
            data = next(batches)
            assert data.shape == torch.Size([4, 32])
            frame += data.numel()
            components.agent.update(data, frame)
            components.push_policy_weights()
            if step == 1:
                os.kill(pids[0], signal.SIGKILL)
        local = TensorDict.from_module(components.agent.policy).data
        assert all((remote == local).all() for remote in actor_policy_weights(components.collector))
        restarted = actor_pids(components.collector)
        assert restarted[0] != pids[0] and restarted[1] == pids[1]
    finally:
        components.close()


@pytest.mark.learning
def test_ppo_cartpole_through_ray_solves_with_a_worker_killed(tmp_path):
    """PPO CartPole through two Ray collector actors reaches a greedy eval of 475, one actor killed after the first
    logged row: the run goes on (Ray restarts it) and ends normally."""
    sets = ["-s", "meta.seed=0", "-s", "env.collector=ray", "-s", "env.num_workers=2"]
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), SPEC, *sets, "--target-return", "475",
           "--data-dir", str(tmp_path), "--no-progress"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "RL_WARNINGS": "False", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline and not any(
                len(path.read_text().splitlines()) > 1 for path in tmp_path.glob("*/metrics.csv")):
            time.sleep(0.05)
        actors = collector_actors(proc.pid)
        assert len(actors) == 2, f"found {len(actors)} collector actors"
        os.kill(min(actors), signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    rows = read_metrics(only_run_dir(tmp_path))
    evals = [float(r["eval/return"]) for r in rows if r["eval/return"]]
    assert max(evals) >= 475, evals
