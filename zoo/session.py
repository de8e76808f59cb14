"""The one training loop: collect -> update -> log -> evaluate -> checkpoint. Algorithm-agnostic.

Frames are the clock: `frame` counts env steps summed over the vector envs. Logging, evaluation and
checkpoints fire when the clock crosses multiples of their frequencies. SIGINT / SIGTERM finish the
current batch, write a checkpoint and return; SIGKILL loses at most the frames since the last checkpoint.
"""

import random
import signal
import time
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type
from tqdm import tqdm

from zoo.components import Components
from zoo.record import RunDir

CHECKPOINT_FORMAT = 1
RETURN_WINDOW = 100  # episodes in the training-return moving average (as SLM-Lab)


def evaluate(env: EnvBase, actor, max_steps: int = 1_000_000) -> dict[str, float]:
    """Run the deterministic actor until every eval env finished one episode; raw returns of those episodes."""
    n = env.batch_size.numel()
    returns, lengths = torch.full((n,), float("nan")), torch.full((n,), float("nan"))
    finished = torch.zeros(n, dtype=torch.bool)
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        td = env.reset()
        for _ in range(max_steps):
            td, next_td = env.step_and_maybe_reset(actor(td))
            done = td["next", "done"].reshape(n)
            first = done & ~finished
            if first.any():
                returns[first] = td["next", "episode_reward"].reshape(n)[first]
                lengths[first] = td["next", "step_count"].reshape(n)[first].float()
                finished |= done
                if finished.all():
                    break
            td = next_td
    done_returns = returns[finished]
    if done_returns.numel() == 0:
        return {"eval_return": float("nan"), "eval_return_std": float("nan"), "eval_length": float("nan")}
    return {"eval_return": done_returns.mean().item(), "eval_return_std": done_returns.std(unbiased=False).item(),
            "eval_length": lengths[finished].mean().item()}


def rng_state() -> dict:
    """Python, numpy and torch RNG states in a form `torch.load(weights_only=True)` accepts."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()),
                                                       *np_state[2:]], "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


@contextmanager
def stop_on_signals():
    """Turn SIGINT / SIGTERM into a flag the loop checks between batches."""
    flag = {"stop": False}

    def handler(signum, frame):
        flag["stop"] = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Session:
    """Runs one seed of a spec into a run directory."""

    def __init__(self, components: Components, run: RunDir, *, progress: bool = True, verbose: bool = False,
                 on_eval: Callable[["Session", dict[str, float]], bool] | None = None):
        self.c, self.run, self.progress, self.verbose = components, run, progress, verbose
        self.on_eval = on_eval  # called after each evaluation with the logged row; True stops the run (pruning)
        self.frame = 0
        self.best_eval = -float("inf")
        self.episodes = 0
        self.recent_returns: deque[float] = deque(maxlen=RETURN_WINDOW)
        self.last_eval: dict[str, float] = {}

    # --------------------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "frame": self.frame, "seed": self.c.seed,
                "best_eval": self.best_eval, "episodes": self.episodes,
                "recent_returns": list(self.recent_returns), "agent": self.c.agent.state_dict(),
                "rng": rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.frame, self.best_eval, self.episodes = state["frame"], state["best_eval"], state["episodes"]
        self.recent_returns.extend(state["recent_returns"])
        self.c.agent.load_state_dict(state["agent"])
        set_rng_state(state["rng"])

    def checkpoint(self, best: bool = False) -> None:
        self.run.save(self.state_dict(), best=best)

    # ---------------------------------------------------------------------------------------------- loop
    def run_loop(self) -> dict[str, float]:
        """Train to `env.max_frame`; returns the last logged row."""
        spec, agent = self.c.spec, self.c.agent
        meta, max_frame = spec.meta, spec.env.max_frame
        next_log = (self.frame // meta.log_frequency + 1) * meta.log_frequency
        next_eval = (self.frame // meta.eval_frequency + 1) * meta.eval_frequency
        start_time, last_time, last_frame = time.perf_counter(), time.perf_counter(), self.frame
        batch_returns: list[float] = []
        batch_lengths: list[float] = []
        row: dict[str, float] = {}
        metrics: dict[str, torch.Tensor] = {}
        bar = tqdm(total=max_frame, initial=self.frame, unit="frame", disable=not self.progress, dynamic_ncols=True,
                   desc=spec.name)
        with stop_on_signals() as signals:
            for data in self.c.collector:
                self.frame += data.numel()
                metrics = agent.update(data, self.frame) or metrics
                done = data["next", "done"]
                if done.any():
                    returns = data["next", "episode_reward"][done].tolist()
                    batch_returns += returns
                    batch_lengths += data["next", "step_count"][done].float().tolist()
                    self.recent_returns.extend(returns)
                    self.episodes += len(returns)
                bar.update(data.numel())
                evaluating = self.frame >= next_eval or self.frame >= max_frame
                if self.frame >= next_log or evaluating:
                    now = time.perf_counter()
                    row = {"frame": self.frame, "wall_time": now - start_time,
                           "fps": (self.frame - last_frame) / max(now - last_time, 1e-9), "episodes": self.episodes,
                           "train_return": _mean(batch_returns), "train_return_ma": _mean(self.recent_returns),
                           "train_length": _mean(batch_lengths),
                           **{k: float(v) for k, v in metrics.items()}}
                    last_time, last_frame, batch_returns, batch_lengths = now, self.frame, [], []
                    if evaluating:
                        row.update(self.evaluate())
                    self.run.log(row)
                    bar.set_postfix(ret=f"{row['train_return_ma']:.1f}",
                                    ev=f"{self.last_eval.get('eval_return', float('nan')):.1f}")
                    if self.verbose:
                        tqdm.write(_format_row(row))
                    next_log = (self.frame // meta.log_frequency + 1) * meta.log_frequency
                if evaluating:
                    improved = row["eval_return"] > self.best_eval
                    self.best_eval = max(self.best_eval, row["eval_return"])
                    self.checkpoint(best=improved)
                    self.run.plot()
                    next_eval = (self.frame // meta.eval_frequency + 1) * meta.eval_frequency
                    if self.on_eval is not None and self.on_eval(self, row):
                        break
                if signals["stop"]:
                    self.checkpoint()
                    tqdm.write(f"stopped at frame {self.frame}; resume with train@{self.run.path}")
                    break
                if self.frame >= max_frame:
                    break
        bar.close()
        self.c.collector.shutdown()
        self.run.close()
        return row

    def evaluate(self) -> dict[str, float]:
        self.last_eval = evaluate(self.c.eval_env, self.c.agent.actor)
        return self.last_eval


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _format_row(row: dict[str, float]) -> str:
    keys = ("frame", "fps", "train_return_ma", "eval_return", "loss", "explore_var")
    return "  ".join(f"{k}={row[k]:.4g}" for k in keys if k in row and row[k] == row[k])
