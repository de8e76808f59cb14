"""Checkpoints: exact resume, kill -9 / SIGTERM, corrupt and malicious files, enjoy@ replay with video."""

import builtins
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import ROOT, SPECS, only_run_dir, read_metrics, run_cli
from zoo.checkpoint import load_replay
from zoo.cli import main
from zoo.components import build
from zoo.enjoy import write_video
from zoo.record import TIMING_COLUMNS, CheckpointError, RunDir, load_checkpoint
from zoo.session import Session
from zoo.spec import load_spec

SPEC = str(SPECS / "dqn_cartpole.yaml")
HALF, FULL, LOG = 512, 1024, 128
SMALL = [f"env.max_frame={FULL}", f"meta.log_frequency={LOG}", "meta.eval_frequency=256", "meta.eval_episodes=2",
         "agent.algorithm.training_start_step=256", "agent.net.hid_layers=[32]", "meta.ckpt_replay=true",
         "meta.seed=5", "env.num_envs=8", "agent.algorithm.training_frequency=64", "agent.algorithm.training_iter=8"]
SETS = [arg for item in SMALL for arg in ("-s", item)]
SHARED_RUNS = pytest.mark.xdist_group("resume_runs")  # one xdist worker builds the `runs` fixture once


def cli(*args: str, data_dir) -> int:
    return main([SPEC, *SETS, *args, "--data-dir", str(data_dir), "--no-progress"])


def untimed(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted run of FULL frames, and the same spec and seed stopped at HALF (as after SIGTERM)."""
    root = tmp_path_factory.mktemp("runs")
    assert cli(data_dir=root / "full") == 0
    spec = load_spec(SPEC, None, SMALL)
    components = build(spec)
    run = RunDir.create(spec, root / "half", components.seed, ["test"])
    Session(components, run, progress=False, on_eval=lambda session, row: session.frame >= HALF).run_loop()
    return only_run_dir(root / "full"), run.path


@SHARED_RUNS
def test_resume_equals_uninterrupted(runs, tmp_path):
    """CPU, same seed: FULL frames in one go == HALF frames, then train@<run dir> for the rest.

    Bit-exact (torch.equal), because checkpoints hold the replay buffer, the gymnasium envs' internal
    states, the collector's carry between batches and every RNG state.
    """
    full, half = runs[0], _copy_run(runs[1], tmp_path / runs[1].name)
    assert load_checkpoint(half / "ckpt" / "latest.pt")["frame"] == HALF
    half_rows = read_metrics(half)
    assert cli("train@latest", data_dir=tmp_path) == 0
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == [half]  # continued in the same run directory
    a, b = load_checkpoint(full / "ckpt" / "latest.pt"), load_checkpoint(half / "ckpt" / "latest.pt")
    assert a["frame"] == b["frame"] == FULL
    assert a["agent"]["loss"].keys() == b["agent"]["loss"].keys()
    for key, value in a["agent"]["loss"].items():
        assert torch.equal(value, b["agent"]["loss"][key]), key
    adam_a, adam_b = a["agent"]["optimizers"]["q"]["state"][0], b["agent"]["optimizers"]["q"]["state"][0]
    assert torch.equal(adam_a["exp_avg"], adam_b["exp_avg"]) and torch.equal(adam_a["step"], adam_b["step"])
    rows = read_metrics(half)
    assert rows[:len(half_rows)] == half_rows
    assert untimed(rows) == untimed(read_metrics(full))  # one continuous CSV, identical to the uninterrupted one
    events = EventAccumulator(str(half / "tb"))
    events.Reload()  # TensorBoard honours the resumed writer's purge_step: no step appears twice
    assert [e.step for e in events.Scalars("train/return_ma")] == [int(r["frame"]) for r in rows]


# ---------------------------------------------------------------------------- resume matrix: one case per family
# (spec, overrides, half, full): tiny nets and budgets, an evaluation (and so a checkpoint) at `half`.
TINY = ["meta.eval_episodes=2", "meta.seed=3", "meta.ckpt_replay=true", "agent.net.hid_layers=[16]"]
VECTOR = [*TINY, "meta.log_frequency=128", "meta.eval_frequency=256"]  # 8 or 16 envs
PENDULUM = [*TINY, "meta.log_frequency=50", "meta.eval_frequency=150", "agent.algorithm.training_start_step=100",
            "agent.algorithm.training_frequency=50", "agent.algorithm.training_iter=3", "agent.memory.batch_size=32"]
FAMILIES = {
    "ppo": ("ppo_cartpole", [*VECTOR, "agent.algorithm.training_epoch=2", "agent.algorithm.minibatch_size=64"],
            512, 1024),
    # continuous actions, observation and reward normalization (running statistics, frozen in the eval env)
    "ppo_normalized": ("ppo_pendulum", [*VECTOR, "agent.algorithm.training_epoch=2", "agent.algorithm.time_horizon=32",
                                        "agent.algorithm.minibatch_size=64", "env.normalize_obs=true",
                                        "env.normalize_reward=true"], 512, 1024),
    # running statistics in the loss: the return normalizer and the percentile EMA
    "ppo_switches": ("ppo_cartpole", [*VECTOR, "agent.algorithm.training_epoch=2", "agent.algorithm.minibatch_size=64",
                                      "agent.algorithm.normalize_v_targets=true", "agent.algorithm.symlog=true",
                                      "agent.algorithm.advantage_normalizer=percentile"], 512, 1024),
    # recurrent: the hidden states in flight live in the collector's carry, the training sequences start from them
    "ppo_lstm": ("ppo_lstm_cartpole_novel", [*VECTOR, "env.num_envs=8", "agent.algorithm.training_epoch=2",
                                             "agent.algorithm.time_horizon=32", "agent.algorithm.minibatch_size=64",
                                             "agent.net.fc_hid_layers=[8]", "agent.net.rnn_hidden_size=8",
                                             "agent.net.seq_len=16"], 512, 1024),
    "a2c_gru": ("a2c_gru_cartpole_novel", [*VECTOR, "env.num_envs=8", "agent.net.fc_hid_layers=[8]",
                                           "agent.net.rnn_hidden_size=8"], 512, 1024),
    # DRQN: the replay holds each env's stream with its hidden states, sampled as sequences
    "drqn": ("drqn_cartpole_novel", [*VECTOR, "env.num_envs=8", "agent.net.fc_hid_layers=[8]",
                                     "agent.net.rnn_hidden_size=8", "agent.net.seq_len=8", "agent.algorithm.burn_in=2",
                                     "agent.memory.batch_size=32", "agent.algorithm.training_start_step=128",
                                     "agent.algorithm.training_frequency=64", "agent.algorithm.training_iter=4"],
             512, 1024),
    "a2c": ("a2c_gae_cartpole", [*VECTOR, "env.num_envs=8"], 512, 1024),
    "a2c_normalized": ("a2c_gae_cartpole", [*VECTOR, "env.num_envs=8", "agent.algorithm.normalize_v_targets=true"],
                       512, 1024),
    # the self-imitation replay (prioritized) and the steps of unfinished episodes waiting for their returns
    "sil": ("sil_cartpole", [*VECTOR, "env.num_envs=8", "agent.memory.batch_size=16"], 512, 1024),
    "reinforce": ("reinforce_cartpole", [*VECTOR, "agent.algorithm.time_horizon=32", "agent.algorithm.episodic=true"],
                  512, 1024),
    "sarsa": ("sarsa_cartpole", VECTOR, 512, 1024),
    # combined experience replay's undrawn rows live beside the buffer; several steps on each batch
    "dqn_cer": ("dqn_cartpole", [*VECTOR, "agent.memory.use_cer=true", "agent.memory.batch_size=16",
                                 "agent.algorithm.training_start_step=256", "agent.algorithm.training_frequency=64",
                                 "agent.algorithm.training_iter=2", "agent.algorithm.training_batch_iter=2"],
                512, 1024),
    # 5 training phases of 3 gradient steps before `half`: an odd count, so with policy_delay 2 the delayed
    # actor updates resume out of phase unless the step counter is checkpointed
    "sac": ("sac_pendulum", [*PENDULUM, "agent.algorithm.policy_delay=2"], 300, 600),
    # spectral norm's power-iteration vectors live in the loss
    "sac_switches": ("sac_pendulum", [*PENDULUM, "agent.algorithm.spectral_norm=true",
                                      "agent.algorithm.alpha_lr=0.0003", "agent.algorithm.log_alpha_min=-5",
                                      "agent.algorithm.log_alpha_max=2"], 300, 600),
    "td3": ("td3_pendulum", [*PENDULUM, "agent.algorithm.policy_delay=2"], 300, 600),
    "crossq": ("crossq_pendulum", [*PENDULUM, "agent.algorithm.policy_delay=2", "agent.algorithm.brn_warmup_steps=10"],
               300, 600),
}


def train_interrupted(spec_file: str, overrides: list[str], half: int, root):
    """A run of `spec_file` stopped at its evaluation at `half` frames (as after SIGTERM); (its dir, its buffer)."""
    spec = load_spec(str(SPECS / f"{spec_file}.yaml"), None, overrides)
    components = build(spec)
    run = RunDir.create(spec, root, components.seed, ["test"])
    Session(components, run, progress=False, on_eval=lambda session, row: session.frame >= half).run_loop()
    assert load_checkpoint(run.path / "ckpt" / "latest.pt")["frame"] == half
    return run.path, components.agent.buffer


def assert_same_state(a, b, where: str = "") -> None:
    """Nested checkpoint entries equal: tensors bit for bit, everything else by ==."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("family", FAMILIES)
def test_family_resume_equals_uninterrupted(family, tmp_path):
    """Each algorithm family, CPU, same seed: one uninterrupted run == the run stopped half way and resumed with
    train@latest (metrics rows without timing columns, and the whole agent state: networks, targets,
    optimizers, counters, normalizers, exploration)."""
    spec_file, overrides, half, full = FAMILIES[family]
    overrides = [*overrides, f"env.max_frame={full}"]
    sets = [arg for item in overrides for arg in ("-s", item)]
    spec_path = str(SPECS / f"{spec_file}.yaml")
    assert main([spec_path, *sets, "--data-dir", str(tmp_path / "full"), "--no-progress"]) == 0
    full_run = only_run_dir(tmp_path / "full")
    half_run, _ = train_interrupted(spec_file, overrides, half, tmp_path / "half")
    half_rows = read_metrics(half_run)
    assert main([spec_path, *sets, "train@latest", "--data-dir", str(tmp_path / "half"), "--no-progress"]) == 0
    a, b = load_checkpoint(full_run / "ckpt" / "latest.pt"), load_checkpoint(half_run / "ckpt" / "latest.pt")
    assert a["frame"] == b["frame"] == full
    rows = read_metrics(half_run)
    assert rows[:len(half_rows)] == half_rows
    assert untimed(rows) == untimed(read_metrics(full_run))
    assert_same_state(a["agent"], b["agent"], "agent")
    assert_same_state(a["policy"], b["policy"], "policy")


def test_atari_replay_resumes(tmp_path):
    """DQN Pong with meta.ckpt_replay: the restored FrameStackReplay equals the one saved (rows, counters, final
    frames), and train@latest runs to the end. ALE state cannot be checkpointed: no bit-exact comparison."""
    overrides = [*TINY, "env.num_envs=2", "env.max_t=40", "env.max_frame=192", "meta.log_frequency=32",
                 "meta.eval_frequency=96", "meta.device=cpu", "agent.memory.max_size=300",
                 "agent.memory.batch_size=8", "agent.algorithm.training_start_step=32",
                 "agent.algorithm.training_frequency=16", "agent.algorithm.training_iter=1",
                 "agent.net.conv_hid_layers=[[4, 8, 8]]"]
    run_path, saved = train_interrupted("dqn_pong", overrides, 96, tmp_path)
    assert saved.final_frames and len(saved) == 96  # episodes ended (max_t) and kept their final frames
    spec = load_spec(str(SPECS / "dqn_pong.yaml"), None, overrides)
    components = build(spec)
    Session(components, RunDir(run_path)).load_state_dict(RunDir(run_path).load_resume_state())
    restored = components.agent.buffer
    assert len(restored) == len(saved)
    assert (restored._storage._storage[:len(saved)] == saved._storage._storage[:len(saved)]).all()
    assert_same_state(restored.frame_stack_state(), saved.frame_stack_state(), "frame_stack")
    sets = [arg for item in overrides for arg in ("-s", item)]
    assert main([str(SPECS / "dqn_pong.yaml"), *sets, "train@latest", "--data-dir", str(tmp_path),
                 "--no-progress"]) == 0
    frames = [int(r["frame"]) for r in read_metrics(run_path)]
    assert frames == sorted(set(frames)) and frames[-1] == 192
    assert load_checkpoint(run_path / "ckpt" / "latest.pt")["frame"] == 192


def test_kill_9_then_resume_latest(tmp_path):
    """SIGKILL mid-run; train@latest finishes at max_frame in the same run dir, CSV without gaps or repeats."""
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), SPEC, *SETS, "-s", "env.max_frame=1536",
           "--data-dir", str(tmp_path), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("*/ckpt/latest.pt")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # somewhere in the middle of collecting, updating or writing
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    result = run_cli(SPEC, "train@latest", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    run = only_run_dir(tmp_path)
    frames = [int(r["frame"]) for r in read_metrics(run)]
    assert frames[-1] >= 1536
    assert frames == sorted(set(frames))  # no duplicated rows
    fpb = 64
    assert all(b - a <= LOG + fpb for a, b in zip(frames, frames[1:], strict=False))  # no missing rows
    assert load_checkpoint(run / "ckpt" / "latest.pt")["frame"] == frames[-1]
    events = EventAccumulator(str(run / "tb"))
    events.Reload()  # rows logged after the last checkpoint and before the kill were purged
    assert [e.step for e in events.Scalars("train/return_ma")] == frames


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), SPEC, *SETS, "-s", "env.max_frame=100000",
           "--data-dir", str(tmp_path), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("*/metrics.csv")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "stopped at frame" in out + err
    run = only_run_dir(tmp_path)
    frame = load_checkpoint(run / "ckpt" / "latest.pt")["frame"]
    assert 0 < frame < 100000
    assert int(read_metrics(run)[-1]["frame"]) <= frame


def _copy_run(src, dst):
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    return dst


@SHARED_RUNS
def test_truncated_latest_falls_back_to_previous(runs, tmp_path, capsys):
    run_path = _copy_run(runs[1], tmp_path / "run")
    latest = run_path / "ckpt" / "latest.pt"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    warnings = []
    state = RunDir(run_path).load_resume_state(warn=warnings.append)
    assert state["frame"] == 256 and len(warnings) == 1 and "previous.pt" in warnings[0]
    assert cli(f"train@{run_path}", data_dir=tmp_path) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "Traceback" not in err
    assert load_checkpoint(latest)["frame"] == FULL


@SHARED_RUNS
@pytest.mark.parametrize("damage", ["garbage", "empty", "not_a_dict", "missing"])
def test_unreadable_checkpoints_give_one_line_error(runs, tmp_path, capsys, damage):
    run_path = _copy_run(runs[1], tmp_path / "run")
    for name in ("latest.pt", "previous.pt"):
        path = run_path / "ckpt" / name
        if damage == "garbage":
            path.write_bytes(os.urandom(4096))
        elif damage == "empty":
            path.write_bytes(b"")
        elif damage == "not_a_dict":
            torch.save([1, 2, 3], path)
        else:
            path.unlink()
    assert cli(f"train@{run_path}", data_dir=tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err


class Payload:
    """Unpickling this creates a marker file: what a malicious checkpoint could do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@SHARED_RUNS
def test_malicious_checkpoint_does_not_run(runs, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "frame": 0, "agent": Payload(marker)}, evil)
    torch.load(evil, weights_only=False)["agent"].close()  # the payload is real: a plain unpickling runs it
    assert marker.exists()
    marker.unlink()

    run_path = _copy_run(runs[1], tmp_path / "run")
    for name in ("latest.pt", "previous.pt", "best.pt"):
        (run_path / "ckpt" / name).write_bytes(evil.read_bytes())
    assert cli(f"train@{run_path}", data_dir=tmp_path) == 2
    assert cli(f"enjoy@{run_path}", data_dir=tmp_path) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("error: ") and "unreadable checkpoint" in e for e in errors), errors
    assert not marker.exists()


@SHARED_RUNS
def test_replay_folder_with_pickle_is_refused(runs, tmp_path):
    run_path = _copy_run(runs[1], tmp_path / "run")
    replay = run_path / "ckpt" / RunDir(run_path).load_resume_state()["replay"]
    (replay / "prefetch.pkl").write_bytes(b"\x80\x04N.")
    components = build(load_spec(SPEC, None, SMALL))
    with pytest.raises(ValueError, match="prefetch.pkl"):
        load_replay(components.agent.buffer, replay)
    with pytest.raises(CheckpointError):
        Session(components, RunDir(run_path)).load_state_dict(RunDir(run_path).load_resume_state())


@SHARED_RUNS
def test_enjoy_prints_return_and_records_video(runs, tmp_path, capsys):
    run_path = _copy_run(runs[0], tmp_path / "run")
    assert cli(f"enjoy@{run_path}", "--record", "-s", "meta.eval_episodes=3", data_dir=tmp_path) == 0
    out = capsys.readouterr().out
    assert "3 episodes, return mean" in out and " std " in out
    videos = list(run_path.glob("video_best.*"))
    assert len(videos) == 1 and assert_playable(videos[0]) > 1


def test_video_falls_back_to_gif(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if the optional extra were not installed
    frames = [torch.full((8, 8, 3), 40 * i, dtype=torch.uint8).numpy() for i in range(5)]
    path = write_video(frames, tmp_path / "clip")
    assert path.suffix == ".gif" and assert_playable(path) == 5


@SHARED_RUNS
def test_render_without_display_is_a_clear_error(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert cli(f"enjoy@{runs[0]}", "--render", data_dir=tmp_path) == 2
    assert "needs a display" in capsys.readouterr().err


def assert_playable(path) -> int:
    """Decode the video; returns its number of frames."""
    if path.suffix == ".gif":
        from PIL import Image

        with Image.open(path) as image:
            return image.n_frames
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)  # metadata
    return sum(1 for _ in reader)
