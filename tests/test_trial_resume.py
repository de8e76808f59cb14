"""Trials resume and replay: train@latest continues every unfinished session, enjoy@<trial dir> the best one."""

import os
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT, SPECS, read_metrics
from zoo.cli import main
from zoo.record import load_checkpoint
from zoo.trial import best_session

SPEC = str(SPECS / "ppo_cartpole.yaml")
MAX_FRAME = 16384
TINY = ["meta.max_session=2", f"env.max_frame={MAX_FRAME}", "meta.log_frequency=512", "meta.eval_frequency=512",
        "meta.eval_episodes=2", "agent.net.hid_layers=[16]", "agent.algorithm.training_epoch=2", "meta.seed=1"]
SETS = [arg for item in TINY for arg in ("-s", item)]


def checkpoints(trial_dir):
    return sorted(trial_dir.glob("sessions/s*/ckpt/latest.pt"))


def test_stopped_trial_resumes_every_session_and_replays_the_best(tmp_path, capsys):
    """SIGTERM to the trial's process (as a scheduler sends it) reaches its sessions, which checkpoint and stop;
    train@latest then finishes both in their run directories and writes the trial metrics; enjoy@<trial dir>
    replays the session with the best evaluation, enjoy@<trial dir>/sessions/s<i> the one named."""
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), SPEC, *SETS, "--data-dir", str(tmp_path), "--no-progress"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "RL_WARNINGS": "False"}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        trials = list(tmp_path.glob("ppo_cartpole_*"))
        if trials and len(checkpoints(trials[0])) == 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-2000:]
    (trial_dir,) = tmp_path.glob("ppo_cartpole_*")
    stopped = {path.parent.parent.name: load_checkpoint(path)["frame"] for path in checkpoints(trial_dir)}
    if "stopped before every session finished" in out:  # (a slow machine may have finished one session already)
        assert min(stopped.values()) < MAX_FRAME
        assert not (trial_dir / "trial_metrics.json").exists()
    assert main([SPEC, *SETS, "train@latest", "--data-dir", str(tmp_path), "--no-progress"]) == 0
    assert f"resuming trial {trial_dir}" in capsys.readouterr().out
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == [trial_dir]
    for path in checkpoints(trial_dir):
        state = load_checkpoint(path)
        assert state["frame"] == MAX_FRAME
        assert state["evals"]["frames"] == list(range(512, MAX_FRAME + 1, 512))  # one series across the resume
        frames = [int(r["frame"]) for r in read_metrics(path.parent.parent)]
        assert frames == sorted(set(frames)) and frames[-1] == MAX_FRAME
    assert (trial_dir / "trial_metrics.json").is_file()

    best = best_session(trial_dir)
    assert main([SPEC, f"enjoy@{trial_dir}", "--data-dir", str(tmp_path)]) == 0
    assert f"best session of the trial: {best}" in capsys.readouterr().out
    assert main([SPEC, f"enjoy@{trial_dir / 'sessions' / 's1'}", "--data-dir", str(tmp_path)]) == 0
    assert str(trial_dir / "sessions" / "s1") in capsys.readouterr().out
