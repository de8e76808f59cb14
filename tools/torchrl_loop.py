"""zoo's parts in a plain TorchRL training loop (the shape of TorchRL's sota-implementations scripts).

    python tools/torchrl_loop.py dqn            # DQN on CartPole-v1 until greedy return >= 475
    python tools/torchrl_loop.py ppo            # PPO on CartPole-v1 likewise

The script owns the collector, replay buffer, optimizer, exploration annealing (`.step(frames)`), target
updates and evaluation; from `zoo.build` it takes only the env, the exploration policy, the greedy actor, the
loss module, the target updater and the exploration module, exactly as TorchRL's own objects are used.
tests/test_torchrl_loop.py runs both with short budgets and asserts that they learn.
"""

import argparse
import sys
from pathlib import Path

import torch
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, SamplerWithoutReplacement, TensorDictReplayBuffer
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type

import zoo

SPECS = Path(__file__).resolve().parents[1] / "specs"


def greedy_return(env: EnvBase, actor, max_steps: int = 500) -> float:
    """Mean return of the first episode of each of `env`'s copies, acting greedily (TorchRL's rollout)."""
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        rollout = env.rollout(max_steps, actor, break_when_any_done=False)
    done = rollout["next", "done"].squeeze(-1)  # [envs, T]
    first = done.int().cumsum(-1).eq(1) & done  # each copy's first episode end
    return rollout["next", "episode_reward"].squeeze(-1)[first].mean().item()


def train_dqn(max_frames: int = 50_000, target: float = 475.0, seed: int = 0) -> tuple[int, float]:
    """DQN on CartPole with zoo's policy, loss, target updater and exploration; (frames used, last eval)."""
    parts = zoo.build(zoo.load_spec(SPECS / "dqn_cartpole.yaml"), seed=seed)
    eval_env = zoo.make_env("CartPole-v1", seed=seed + 1, num_envs=10)
    collector = Collector(parts.env, parts.policy, frames_per_batch=256, total_frames=-(-max_frames // 256) * 256,
                          init_random_frames=1024)
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(100_000), batch_size=128)
    optimizer = torch.optim.Adam(parts.loss.parameters(), lr=2.3e-3)
    frames, score = 0, float("nan")
    for data in collector:
        frames += data.numel()
        buffer.extend(data.reshape(-1))
        parts.exploration.step(data.numel())  # anneal epsilon by the frames collected
        if frames < 1024:
            continue
        for _ in range(64):
            loss = parts.loss(buffer.sample())["loss"]
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parts.loss.parameters(), 10.0)
            optimizer.step()
            parts.target_updater.step()
        if frames % 2560 < data.numel():
            score = greedy_return(eval_env, parts.actor)
            print(f"dqn frames {frames} greedy return {score:.1f}", flush=True)
            if score >= target:
                break
    collector.shutdown()
    return frames, score


def train_ppo(max_frames: int = 50_000, target: float = 475.0, seed: int = 0) -> tuple[int, float]:
    """PPO on CartPole with zoo's policy, actor and loss (GAE from the loss's value estimator)."""
    parts = zoo.build(zoo.load_spec(SPECS / "ppo_cartpole.yaml"), seed=seed)
    eval_env = zoo.make_env("CartPole-v1", seed=seed + 1, num_envs=10)
    loss = parts.loss
    collector = Collector(parts.env, parts.policy, frames_per_batch=256, total_frames=-(-max_frames // 256) * 256)
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(256), sampler=SamplerWithoutReplacement(),
                                    batch_size=256)
    optimizer = torch.optim.Adam(loss.parameters(), lr=1e-3)
    frames, score = 0, float("nan")
    for data in collector:
        frames += data.numel()
        with torch.no_grad():
            loss.value_estimator(data)  # advantages and value targets on the [envs, T] batch
        buffer.extend(data.reshape(-1))
        for _ in range(20):
            for batch in buffer:
                out = loss(batch)
                total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
                optimizer.zero_grad()
                total.backward()
                torch.nn.utils.clip_grad_norm_(loss.parameters(), 0.5)
                optimizer.step()
        if frames % 2048 < data.numel():
            score = greedy_return(eval_env, parts.actor)
            print(f"ppo frames {frames} greedy return {score:.1f}", flush=True)
            if score >= target:
                break
    collector.shutdown()
    return frames, score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("algorithm", choices=("dqn", "ppo"))
    parser.add_argument("--max-frames", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train = train_dqn if args.algorithm == "dqn" else train_ppo
    frames, score = train(args.max_frames, seed=args.seed)
    print(f"{args.algorithm}: greedy return {score:.1f} after {frames} frames")
    return 0 if score >= 475 else 1


if __name__ == "__main__":
    sys.exit(main())
