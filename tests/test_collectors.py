"""env.collector multi_sync / multi_async: TorchRL's multi-process collectors behind the one session loop.

Two workers, a few hundred frames: batch layout, per-worker seeds, resume, no worker outliving the learner
(errors, SIGTERM, SIGKILL), and meta.distributed's two ways for the workers to see the learner's weights."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torchrl.modules.utils import get_primers_from_module

from tests.conftest import ROOT, SPECS, only_run_dir, read_metrics
from zoo.cli import main
from zoo.components import build
from zoo.record import RunDir, load_checkpoint
from zoo.session import Session
from zoo.spec import SpecError, load_spec

SPEC = str(SPECS / "ppo_cartpole.yaml")
TINY = ["env.num_envs=4", "agent.algorithm.time_horizon=32", "agent.algorithm.minibatch_size=64",
        "agent.algorithm.training_epoch=1", "agent.net.hid_layers=[16]", "meta.eval_episodes=2", "meta.seed=2",
        "meta.log_frequency=128", "meta.eval_frequency=256", "env.num_workers=2"]


def tiny(collector: str, *extra: str) -> list[str]:
    return [*TINY, f"env.collector={collector}", *extra]


@pytest.mark.parametrize(("overrides", "field"), [
    (["env.num_workers=2"], "env.num_workers"),
    (["env.collector=multi_sync", "env.num_workers=3"], "env.num_workers"),
    (["env.collector=multi_async", "env.num_workers=2", "env.normalize_obs=true"], "env.normalize_obs"),
    (["env.collector=redis"], "env.collector"),
    (["env.ray_address=auto"], "env.ray_address"),
    (["env.collector=multi_sync", "env.num_workers=2", "meta.device=cuda"], "meta.device"),
    (["meta.distributed=hogwild"], "meta.distributed"),
    (["meta.distributed=true"], "meta.distributed"),
    (["meta.distributed=synced"], "meta.distributed"),  # needs env.collector multi_async
    (["meta.distributed=shared", "env.collector=multi_sync", "env.num_workers=2"], "meta.distributed"),
    (["meta.distributed=synced", "env.collector=multi_async", "env.num_workers=1"], "env.num_workers"),
])
def test_collector_fields_are_validated(overrides, field):
    with pytest.raises(SpecError) as err:
        load_spec(SPEC, None, overrides)
    assert err.value.where == field and "allowed" in err.value.message and "\n" not in str(err.value)


def test_multi_sync_batches_keep_the_vector_layout_and_workers_draw_apart():
    """multi_sync joins its workers' batches into `[num_envs, time]`; workers are seeded apart (their first
    observations differ)."""
    components = build(load_spec(SPEC, None, tiny("multi_sync", "env.max_frame=256")))
    try:
        data = next(iter(components.collector))
        assert tuple(data.batch_size) == (4, 32)
        first = data["observation"][:, 0]  # rows 0-1: worker 0's copies, rows 2-3: worker 1's
        assert not torch.equal(first[:2], first[2:])
    finally:
        components.close()


def test_distributed_needs_an_asynchronous_actor_critic():
    with pytest.raises(SpecError) as err:
        load_spec(SPECS / "dqn_cartpole.yaml", None, ["env.collector=multi_async", "env.num_workers=2",
                                                      "meta.distributed=synced"])
    assert err.value.where == "meta.distributed" and "A2C, PPO" in err.value.message


@pytest.mark.parametrize(("collector", "extra"), [("multi_sync", ()), ("multi_async", ("meta.distributed=synced",))])
def test_multi_process_run_resumes(tmp_path, collector, extra):
    """Stopped at its evaluation at 256 frames, train@latest continues the same run to 512."""
    spec = load_spec(SPEC, None, tiny(collector, "env.max_frame=512", *extra))
    components = build(spec)
    run = RunDir.create(spec, tmp_path, components.seed, ["test"])
    Session(components, run, progress=False, on_eval=lambda session, row: session.frame >= 256).run_loop()
    assert load_checkpoint(run.path / "ckpt" / "latest.pt")["frame"] == 256
    sets = [arg for item in tiny(collector, "env.max_frame=512", *extra) for arg in ("-s", item)]
    assert main([SPEC, *sets, "train@latest", "--data-dir", str(tmp_path), "--no-progress"]) == 0
    assert only_run_dir(tmp_path) == run.path
    frames = [int(r["frame"]) for r in read_metrics(run.path)]
    assert frames == [128, 256, 384, 512]
    assert load_checkpoint(run.path / "ckpt" / "latest.pt")["frame"] == 512


def test_multi_async_batches_and_an_error_in_the_loop_shuts_the_workers_down(tmp_path):
    """A multi_async batch is one worker's `[copies, workers * time]` cut into `[copies * workers, time]` (the
    shape and frames of a sync batch); an update that raises ends the run with every worker process stopped."""
    spec = load_spec(SPEC, None, tiny("multi_async", "env.max_frame=100000"))
    components = build(spec)
    shapes, continuity = [], []

    def fail(data, frame):
        shapes.append(tuple(data.batch_size))
        for row in (0, 2):  # rows 2i and 2i + 1: consecutive chunks of copy i
            if not data["next", "done"][row, -1]:
                continuity.append(torch.equal(data["next", "observation"][row, -1], data["observation"][row + 1, 0]))
        raise RuntimeError("update failed")

    components.agent.update = fail
    with pytest.raises(RuntimeError, match="update failed"):
        Session(components, RunDir.create(spec, tmp_path, components.seed, ["test"]), progress=False).run_loop()
    assert shapes == [(4, 32)] and continuity and all(continuity)
    deadline = time.monotonic() + 10
    while any(proc.is_alive() for proc in components.collector.procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(proc.is_alive() for proc in components.collector.procs)


@pytest.mark.parametrize("mode", ["synced", "shared"])
def test_distributed_workers_see_the_learners_weights_as_the_mode_says(mode):
    """The learner's policy turns to 'always action 0' in place, as an optimizer step writes it. shared: the
    workers act on it at once; synced: they keep their copy (about half the actions 0) until the push."""
    components = build(load_spec(SPEC, None, tiny("multi_async", "env.max_frame=100000", f"meta.distributed={mode}")))
    head = [m for m in components.agent.policy.modules() if isinstance(m, nn.Linear) and m.out_features == 2][-1]
    try:
        batches = iter(components.collector)
        next(batches)
        with torch.no_grad():
            head.weight.zero_()
            head.bias.copy_(torch.tensor([10.0, -10.0]))
        workers = len(components.collector.procs)
        # A worker may have a queued batch and a batch half collected at the change, and batches arrive in no fixed
        # order, so only the last few of several rounds are sure to have been collected wholly after it.
        before_push = [(next(batches)["action"] == 0).float().mean().item() for _ in range(3 * workers + 2)]
        components.push_policy_weights()
        after_push = [(next(batches)["action"] == 0).float().mean().item() for _ in range(3 * workers + 2)]
    finally:
        components.close()
    assert min(after_push[-2:]) == 1.0
    if mode == "shared":
        assert min(before_push[-2:]) == 1.0
    else:
        assert max(before_push) < 0.8


def descendants(pid: int) -> set[int]:
    """Live (not zombie) processes below `pid`, from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    return {pid for pid in pids if running(pid)}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_no_worker_outlives_the_learner(tmp_path, sig):
    """SIGTERM: the learner checkpoints, shuts its workers down and exits 0. SIGKILL: the workers die with it."""
    sets = [arg for item in tiny("multi_sync", "env.max_frame=10000000") for arg in ("-s", item)]
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), SPEC, *sets, "--data-dir", str(tmp_path), "--no-progress"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "RL_WARNINGS": "False"}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 180
        while not list(tmp_path.glob("*/metrics.csv")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = descendants(proc.pid)
        assert len(workers) >= 2, "no collector workers found"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGTERM:
        assert proc.returncode == 0, err[-2000:]
        assert "stopped at frame" in out + err
    deadline = time.monotonic() + 15
    while alive(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(workers)


@pytest.mark.parametrize("collector", ["multi_sync", "multi_async"])
def test_recurrent_policy_carries_its_state_in_the_workers(collector):
    """Each worker's env gets the policy's primer: batches hold the hidden state, zero where an episode starts and
    the state the policy left before every other step."""
    spec = load_spec(SPECS / "ppo_lstm_cartpole_novel.yaml", None, [
        f"env.collector={collector}", "env.num_workers=2", "env.num_envs=4", "agent.algorithm.time_horizon=32",
        "agent.algorithm.minibatch_size=64", "agent.net.rnn_hidden_size=8", "env.max_frame=100000"])
    components = build(spec)
    try:
        data = next(iter(components.collector))
    finally:
        components.close()
    primers = get_primers_from_module(components.agent.policy, warn=False)  # a Compose: actor's and critic's
    keys = [key for primer in primers.transforms for key in primer.primers.keys(True, True)]
    assert keys and data.batch_size == (4, 32)
    for key in keys:
        state, fresh = data[key], data["is_init"].squeeze(-1)
        assert not state[fresh].any() and state[~fresh].abs().sum() > 0, key
        assert torch.equal(state[:, 1:][~fresh[:, 1:]], data["next", key][:, :-1][~fresh[:, 1:]]), key
