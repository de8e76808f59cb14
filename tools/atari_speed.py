"""Atari throughput: env-only frames per second, training frames per second, replay memory per transition.

    python tools/atari_speed.py env [--envs 8] [--steps 500]       # native vs TorchRL-transform preprocessing
    python tools/atari_speed.py train [--frames 4096]               # ppo_pong and dqn_pong through the CLI
    python tools/atari_speed.py memory [--transitions 100000]       # resident memory of a filled FrameStackReplay
    python tools/atari_speed.py sb3 [--frames 4096]                 # SB3 + RL Zoo settings (run with the SB3 venv)

A frame is one agent step of one env (4 emulator frames). `cpu_fps` = frames per CPU-second of the process
(robust on a busy machine). `env` compares native `AtariVectorEnv` alone, the same under `GymWrapper` with
zoo's transform chain, and gymnasium `ALE/Pong-v5` with TorchRL transforms (grayscale from ALE, `F.interpolate`
resize, `CatFrames`; no max-pool, no-op reset or life signal), all with 1 torch thread and random actions.
Figures depend on the machine and its load; BENCHMARK.md records measured ones.
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def env_speed(num_envs: int, steps: int) -> dict[str, float]:
    """Frames per second of random play: raw native env, native under TorchRL, gymnasium + TorchRL transforms."""
    import gymnasium as gym
    import numpy as np
    import torch
    from ale_py.vector_env import AtariVectorEnv
    from gymnasium.vector import AutoresetMode
    from torch.nn import functional as F
    from torchrl.envs import CatFrames, Compose, GymWrapper, RewardSum, StepCounter, Transform, TransformedEnv

    from zoo.envs import make_env
    from zoo.spec import EnvSpec

    torch.set_num_threads(1)
    results = {}
    raw = AtariVectorEnv("pong", num_envs, autoreset_mode=AutoresetMode.SAME_STEP, repeat_action_probability=0.25)
    raw.reset(seed=0)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        raw.step(np.random.randint(0, 6, num_envs))
    results["native_raw"] = rates(steps * num_envs, start, cpu)

    native = make_env(EnvSpec(name="ALE/Pong-v5", num_envs=num_envs, max_frame=1), seed=0)
    native.rollout(10, break_when_any_done=False)
    start, cpu = time.perf_counter(), time.process_time()
    native.rollout(steps, break_when_any_done=False)
    results["native_torchrl"] = rates(steps * num_envs, start, cpu)

    class Resize84(Transform):
        """[.., H, W] uint8 -> [.., 1, 84, 84] uint8 by bilinear `F.interpolate` (torchvision is unusable here)."""

        def _apply_transform(self, obs):
            batch = obs.shape[:-2]
            x = obs.reshape(-1, 1, *obs.shape[-2:]).float()
            x = F.interpolate(x, size=(84, 84), mode="bilinear", align_corners=False)
            return x.round().to(torch.uint8).reshape(*batch, 1, 84, 84)

        def _reset(self, tensordict, tensordict_reset):
            return self._call(tensordict_reset)

        def transform_observation_spec(self, spec):
            from torchrl.data import Bounded
            obs = spec["observation"]
            spec["observation"] = Bounded(0, 255, (*obs.shape[:-2], 1, 84, 84), dtype=torch.uint8, device=obs.device)
            return spec

    vec = gym.make_vec("ALE/Pong-v5", num_envs, vectorization_mode="sync", obs_type="grayscale",
                       vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED})
    transformed = TransformedEnv(GymWrapper(vec, categorical_action_encoding=True), Compose(
        RewardSum(), StepCounter(), Resize84(in_keys=["observation"], out_keys=["observation"]),
        CatFrames(4, dim=-3, in_keys=["observation"])))
    transformed.set_seed(0)
    transformed.rollout(10, break_when_any_done=False)
    start, cpu = time.perf_counter(), time.process_time()
    transformed.rollout(steps, break_when_any_done=False)
    results["gymnasium_torchrl_transforms"] = rates(steps * num_envs, start, cpu)
    return results


def rates(frames: int, start: float, cpu: float) -> dict[str, float]:
    """Frames per wall second and per CPU second of this process (the latter is robust to a busy machine)."""
    return {"fps": frames / (time.perf_counter() - start), "cpu_fps": frames / (time.process_time() - cpu)}


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train_speed(spec: str, frames: int, overrides: list[str]) -> dict[str, float]:
    """Training frames per second of one spec through the CLI (the final evaluation is not counted)."""
    from zoo.record import read_metrics

    with tempfile.TemporaryDirectory() as data_dir:
        cmd = [sys.executable, str(ROOT / "tools" / "train.py"), str(ROOT / "specs" / f"{spec}.yaml"), "train",
               "--data-dir", data_dir, "--no-progress", "--seed", "0", "-s", f"env.max_frame={frames}",
               "-s", f"meta.log_frequency={frames}", "-s", f"meta.eval_frequency={frames}",
               "-s", "meta.eval_episodes=1", *[a for o in overrides for a in ("-s", o)]]
        start, cpu = time.perf_counter(), child_cpu()
        subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
        wall, cpu = time.perf_counter() - start, child_cpu() - cpu
        row = read_metrics(next(Path(data_dir).glob("*/metrics.csv")))[-1]
    frames_done = int(float(row["frame"]))
    return {"spec": spec, "frames": frames_done, "fps": float(row["train/fps"]), "wall_s": wall, "cpu_s": cpu,
            "frames_per_cpu_s_incl_startup_and_eval": frames_done / cpu}


def rss_bytes() -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) * 1024


def memory_per_transition(transitions: int, num_envs: int = 4) -> dict[str, float]:
    """Fill a FrameStackReplay with `transitions` rows of random frames; resident bytes per row."""
    import torch
    from tensordict import TensorDict

    from zoo.memory import FrameStackReplay, make_replay_buffer
    from zoo.spec import MemorySpec

    torch.set_num_threads(1)

    class FakeEnv:  # what make_replay_buffer reads from an Atari env
        observation_spec = {"observation": type("S", (), {"dtype": torch.uint8, "ndim": 4,
                                                           "shape": (num_envs, 4, 84, 84)})()}
        batch_dims, batch_size, device = 1, torch.Size([num_envs]), torch.device("cpu")

    buffer = make_replay_buffer(MemorySpec(max_size=transitions, batch_size=32), env=FakeEnv())
    assert isinstance(buffer, FrameStackReplay)
    steps, before, first = 16, 0, 0  # DQN-sized batches (dqn_pong: 4 envs x 4 steps per phase)
    for chunk in range(transitions // (num_envs * steps)):
        if chunk == 1:  # baseline after one write: the chunk's own temporaries are then counted on both sides
            before, first = rss_bytes(), len(buffer)
        obs = torch.randint(0, 256, (num_envs, steps, 4, 84, 84), dtype=torch.uint8)
        done = torch.rand(num_envs, steps, 1) < 0.001
        data = TensorDict({"observation": obs, "action": torch.zeros(num_envs, steps, dtype=torch.int64),
                           "next": {"observation": obs, "reward": torch.zeros(num_envs, steps, 1),
                                    "terminated": done, "done": done}}, batch_size=[num_envs, steps])
        buffer.extend(data)
    filled = len(buffer)
    per_row = (rss_bytes() - before) / (filled - first)
    buffer.sample(32)
    return {"rows": filled, "rss_gib": rss_bytes() / 2**30, "bytes_per_transition": per_row,
            "extrapolated_1m_gib": per_row * 1e6 / 2**30, "final_frames_kept": len(buffer.final_frames)}


def sb3_speed(algo: str, frames: int, extra: list[str]) -> dict[str, float]:
    """SB3 with RL Zoo's Atari settings through tools/sb3_baseline.py (this interpreter must be the SB3 venv)."""
    cpu = child_cpu()
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "sb3_baseline.py"), "--algo", algo, "--env",
                          "ALE/Pong-v5", "--threshold", "100", "--max-frames", str(frames), "--eval-every",
                          str(frames), "--eval-episodes", "1", *extra], check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.split("sb3_result: ")[-1])
    learn_s = result["train_seconds"] - result["eval_seconds"]
    cpu = child_cpu() - cpu
    return {"algo": algo, "frames": result["frames"], "fps": result["frames"] / learn_s, "learn_s": learn_s,
            "wall_s": result["total_seconds"], "cpu_s": cpu,
            "frames_per_cpu_s_incl_startup_and_eval": result["frames"] / cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("env", "train", "memory", "sb3"))
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--frames", type=int, default=4096)
    parser.add_argument("--transitions", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.setdefault("RL_WARNINGS", "False")
    if args.mode == "env":
        print(json.dumps(env_speed(args.envs, args.steps)))
    elif args.mode == "train":
        print(json.dumps(train_speed("ppo_pong", args.frames, [])))
        # learning from the first batches on: the replay warm-up is not what this measures
        print(json.dumps(train_speed("dqn_pong", args.frames, ["agent.algorithm.training_start_step=512",
                                                               "agent.memory.max_size=100000"])))
    elif args.mode == "memory":
        print(json.dumps(memory_per_transition(args.transitions)))
    else:
        print(json.dumps(sb3_speed("ppo", args.frames, [])))
        print(json.dumps(sb3_speed("dqn", args.frames, ["--hyperparam", "learning_starts=512"])))


if __name__ == "__main__":
    main()
