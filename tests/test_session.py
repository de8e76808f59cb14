"""The training loop's timers and profiler, on a tiny DQN CartPole run through the CLI."""

import os
import signal

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import SPECS, only_run_dir, read_metrics
from zoo.cli import main
from zoo.session import PHASES, PhaseTimer, profile_schedule, stop_on_signals

SPEC = str(SPECS / "dqn_cartpole.yaml")
TINY = ["env.max_frame=512", "meta.log_frequency=128", "meta.eval_frequency=256", "meta.eval_episodes=1",
        "agent.algorithm.training_start_step=256", "agent.net.hid_layers=[16]", "env.num_envs=8",
        "agent.algorithm.training_frequency=64", "agent.algorithm.training_iter=2", "meta.seed=1"]


def train(tmp_path, *args: str) -> int:
    sets = [arg for item in TINY for arg in ("-s", item)]
    return main([SPEC, *sets, *args, "--data-dir", str(tmp_path), "--no-progress"])


def test_short_run_profile_writes_a_trace_and_phases_sum_to_wall_time(tmp_path, capsys):
    """8 batches, 4 of them random: too short for the full schedule (skip 4, wait 2, warm up 2, trace 5)."""
    assert train(tmp_path, "--profile") == 0
    out = capsys.readouterr().out
    run = only_run_dir(tmp_path)
    assert list((run / "profile").glob("*.pt.trace.json*")), out
    assert f"profiler trace: {run / 'profile'}" in out
    assert "time per phase: collect" in out
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/return_ma", "eval/return", "loss/main", "train/explore_var", "time/collect"} <= set(header)
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert set(events.Tags()["scalars"]) <= set(header) - {"frame"}  # the same names in TensorBoard
    assert {"loss/main", "eval/return", "time/checkpoint"} <= set(events.Tags()["scalars"])
    logged = [row for row in read_metrics(run) if not row["eval/return"]]  # time/wall is taken before an eval
    assert logged
    for row in logged:
        phases = sum(float(row[f"time/{phase}"]) for phase in PHASES)
        assert phases == pytest.approx(float(row["time/wall"]), rel=0.02, abs=0.02)


@pytest.mark.parametrize("skip", [0, 3, 40])
def test_profile_schedule_fits_any_run_length(skip):
    for total in range(1, 30):
        schedule = profile_schedule(skip, total)
        assert schedule["active"] >= 1 and min(schedule.values()) >= 0
        assert sum(schedule.values()) <= total
    full = profile_schedule(skip, skip + 20)
    assert full == {"skip_first": skip, "wait": 2, "warmup": 2, "active": 5}


def test_phase_timer_charges_time_outside_blocks_to_log(monkeypatch):
    clock = iter([0.0, 1.0, 3.0, 6.0, 10.0])
    monkeypatch.setattr("zoo.session.time.perf_counter", lambda: next(clock))
    timer = PhaseTimer()  # t = 0
    with timer("collect"):  # enters at 1 (1 s of log), leaves at 3
        pass
    with timer("update"):  # enters at 6 (3 s of log), leaves at 10
        pass
    assert timer.totals == {"collect": 2.0, "update": 4.0, "log": 4.0, "eval": 0.0, "checkpoint": 0.0}


def test_a_signal_stops_the_session_and_reaches_the_handler_installed_before():
    """A tool running sessions one after another (tools/check_slm_corpus.py) learns of the signal too."""
    seen = []

    def tool_handler(signum, frame):
        seen.append(signum)

    before = signal.signal(signal.SIGTERM, tool_handler)
    try:
        with stop_on_signals() as flag:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.01)  # let the interpreter run the Python handler
        assert flag["stop"] and seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is tool_handler  # restored afterwards
    finally:
        signal.signal(signal.SIGTERM, before)
