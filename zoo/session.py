"""The one training loop: collect -> update -> log -> evaluate -> checkpoint. Algorithm-agnostic.

Frames are the clock: `frame` counts env steps summed over the vector envs. Logging, evaluation and
checkpoints fire when the clock crosses multiples of their frequencies. SIGINT / SIGTERM finish the
current batch, write a checkpoint and return; SIGKILL loses at most the frames since the last checkpoint.

A `PhaseTimer` splits the loop's wall time into collect / update / log / eval / checkpoint through lexical
`with timer(phase):` blocks, one `perf_counter` per block boundary (no device syncs: on CUDA, queued kernels
are charged to the phase that next waits on them). Cumulative seconds land in each metrics row as
`time/<phase>`. Metric names are namespaced where they are made (`train/`, `eval/`, `loss/`, `time/`: see
zoo/record.py); the statistics an algorithm's `update()` returns are named by `metric_name`.

With `profile=True`, `torch.profiler` traces a few training batches into `<run>/profile/` (TensorBoard's
profiler plugin or Perfetto); a run too short for the full schedule traces its last batches.
"""

import signal
import time
from collections import deque
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type
from tqdm import tqdm

from zoo.checkpoint import (
    collector_state,
    env_state,
    load_collector_state,
    load_env_state,
    load_replay,
    rng_state,
    set_rng_state,
)
from zoo.components import Components
from zoo.envs import load_transform_state, plain_vector_env, transform_state
from zoo.record import TIME_PHASES, CheckpointError, RunDir

CHECKPOINT_FORMAT = 1
PHASES = tuple(name.removeprefix("time/") for name in TIME_PHASES)  # collect, update, log, eval, checkpoint
OUTSIDE_PHASE = "log"  # where PhaseTimer charges the time outside its blocks
PROFILE_WAIT, PROFILE_WARMUP, PROFILE_ACTIVE = 2, 2, 5  # batches waited, warmed up, traced (after random frames)
RETURN_WINDOW = 100  # episodes in the training-return moving average (as SLM-Lab)
PLOT_INTERVAL = 30.0  # seconds between redraws of the learning curve (matplotlib is slow); always at the end


def evaluate(env: EnvBase, actor, max_steps: int = 1_000_000) -> dict[str, float]:
    """Run the deterministic actor until every eval env finished one episode; raw returns of those episodes."""
    done_returns, done_lengths = episode_returns(env, actor, max_steps)
    if done_returns.numel() == 0:
        return {"eval/return": float("nan"), "eval/return_std": float("nan"), "eval/length": float("nan")}
    return {"eval/return": done_returns.mean().item(), "eval/return_std": done_returns.std(unbiased=False).item(),
            "eval/length": done_lengths.mean().item()}


def episode_returns(env: EnvBase, actor, max_steps: int = 1_000_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw returns and lengths of the first episode of each env copy (those finished within `max_steps`)."""
    vector_env = plain_vector_env(env)
    if vector_env is not None:
        return vector_episode_returns(vector_env, actor, env.observation_spec["observation"].dtype, env.device,
                                      max_steps)
    return torchrl_episode_returns(env, actor, max_steps)


def torchrl_episode_returns(env: EnvBase, actor, max_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`episode_returns` through TorchRL's stepping, transforms (frozen normalizers, Atari stacks) included."""
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
    return returns[finished], lengths[finished]


def vector_episode_returns(vector_env: gym.vector.VectorEnv, actor, obs_dtype: torch.dtype, device: torch.device,
                           max_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`episode_returns` on the gymnasium vector env itself, for envs whose TorchRL transforms only count returns.

    Hand-written because TorchRL's per-step TensorDict bookkeeping (`step_and_maybe_reset`) costs many times
    the step of a small classic-control env, so evaluations would take a large share of a short run.
    Same episodes and RNG use as the TorchRL path: finished copies are reset through `reset_mask`, as
    TorchRL does with autoreset disabled (gymnasium envs must not be stepped past their end).
    """
    n = vector_env.num_envs
    returns, lengths = np.zeros(n), np.zeros(n)
    finished = np.zeros(n, dtype=bool)
    obs, _ = vector_env.reset()
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        for _ in range(max_steps):
            observation = torch.as_tensor(obs, dtype=obs_dtype, device=device)
            action = actor(TensorDict({"observation": observation}, batch_size=[n], device=device))["action"]
            obs, reward, terminated, truncated, _ = vector_env.step(action.cpu().numpy())
            running = ~finished
            returns[running] += reward[running]
            lengths[running] += 1
            done = terminated | truncated
            finished |= done
            if done.any():  # before the stop check, as step_and_maybe_reset: the next evaluation sees the same RNG
                obs, _ = vector_env.reset(options={"reset_mask": done})
            if finished.all():
                break
    return torch.as_tensor(returns[finished]), torch.as_tensor(lengths[finished])


class PhaseTimer:
    """Wall time per loop phase, charged by lexical blocks: `with timer("update"): ...` (as TorchRL's `timeit`).

    Time outside every block (the loop's own bookkeeping: episode counts, metrics rows, the progress bar) is
    charged to `log`, so the phases always sum to the loop's wall time. Blocks do not nest.
    """

    def __init__(self):
        self.totals = dict.fromkeys(PHASES, 0.0)
        self.last = time.perf_counter()

    @contextmanager
    def __call__(self, phase: str):
        self._charge(OUTSIDE_PHASE)
        try:
            yield
        finally:
            self._charge(phase)

    def _charge(self, phase: str) -> None:
        now = time.perf_counter()
        self.totals[phase] += now - self.last
        self.last = now

    def row(self) -> dict[str, float]:
        """Cumulative seconds per phase up to now as metrics (`time/collect`, ...); they sum to the wall time."""
        self._charge(OUTSIDE_PHASE)
        return {f"time/{phase}": seconds for phase, seconds in self.totals.items()}


def profile_schedule(skip_batches: int, total_batches: int) -> dict[str, int]:
    """`torch.profiler.schedule` arguments whose trace ends within a run of `total_batches` (>= 1) batches.

    The full schedule skips `skip_batches` (the random-action batches before learning starts), then waits
    PROFILE_WAIT, warms up PROFILE_WARMUP and traces PROFILE_ACTIVE batches. A shorter run shrinks the wait,
    then the warm-up (to one batch), then the trace, and skips fewer batches only to keep one warm-up and one
    traced batch: a run that reaches its budget always writes a trace, of its last batches.
    """
    skip = min(skip_batches, max(total_batches - 2, 0))
    room = total_batches - skip
    warmup = min(PROFILE_WARMUP, max(room - PROFILE_ACTIVE, min(room - 1, 1)))
    active = min(PROFILE_ACTIVE, room - warmup)
    wait = min(PROFILE_WAIT, room - warmup - active)
    return {"skip_first": skip, "wait": wait, "warmup": warmup, "active": active}


def make_profiler(path: Path, schedule: dict[str, int], on_trace: Callable[[], None]) -> torch.profiler.profile:
    """A torch.profiler tracing once, on `schedule`, into TensorBoard files at `path`; `on_trace` after writing."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    write = torch.profiler.tensorboard_trace_handler(str(path))

    def on_trace_ready(profiler):
        write(profiler)
        on_trace()

    return torch.profiler.profile(activities=activities, schedule=torch.profiler.schedule(**schedule, repeat=1),
                                  record_shapes=True, on_trace_ready=on_trace_ready)


@contextmanager
def stop_on_signals():
    """Turn SIGINT / SIGTERM into a flag the loop checks between batches. A Python handler installed before (a
    tool that runs sessions one after another) is called too, so it can stop after this session."""
    flag = {"stop": False}

    def handler(signum, frame):
        flag["stop"] = True
        chained = previous.get(signum)
        if callable(chained) and chained is not signal.default_int_handler:
            chained(signum, frame)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Session:
    """Runs one seed of a spec into a run directory."""

    def __init__(self, components: Components, run: RunDir, *, progress: bool = True, verbose: bool = False,
                 profile: bool = False, target_return: float | None = None,
                 on_eval: Callable[["Session", dict[str, float]], bool] | None = None):
        self.c, self.run, self.progress, self.verbose = components, run, progress, verbose
        self.on_eval = on_eval  # called after each evaluation with the logged row; True stops the run (pruning)
        self.profile, self.target_return = profile, target_return
        self.frame = 0
        self.best_eval = -float("inf")
        self.episodes = 0
        self.recent_returns: deque[float] = deque(maxlen=RETURN_WINDOW)
        self.last_eval: dict[str, float] = {}
        # one entry per evaluation (a trial's metrics are computed on them, see zoo.metrics); checkpointed
        self.evals: dict[str, list] = {"frames": [], "opt_steps": [], "returns": []}
        self.wall_time = 0.0  # seconds of training before this process (resumed runs continue the clock)
        self.timer = PhaseTimer()
        self.profile_schedule: dict[str, int] | None = None  # with `profile`: the torch.profiler schedule used
        self.profile_trace: Path | None = None  # with `profile`: the folder holding the trace, once written

    # --------------------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        """Everything to continue exactly (taken between batches); the replay buffer goes to its own folder."""
        c = self.c
        return {"format": CHECKPOINT_FORMAT, "frame": self.frame, "seed": c.seed,
                "best_eval": self.best_eval, "episodes": self.episodes, "wall_time": self.wall_time,
                "recent_returns": list(self.recent_returns), "evals": self.evals, "agent": c.agent.state_dict(),
                "policy": c.agent.policy.state_dict(),  # exploration state (epsilon, noise scale) lives here
                "env_transform": transform_state(c.env), "eval_env_transform": transform_state(c.eval_env),
                "env": env_state(c.env), "eval_env": env_state(c.eval_env), "collector": collector_state(c.collector),
                "metrics_csv": self.run.metrics_text(), "rng": rng_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore a checkpoint into freshly built components; CheckpointError if it does not fit the spec."""
        c = self.c
        try:
            c.agent.load_state_dict(state["agent"])
            c.agent.policy.load_state_dict(state["policy"])
            load_transform_state(c.env, state["env_transform"])
            load_transform_state(c.eval_env, state["eval_env_transform"])
            load_env_state(c.eval_env, state["eval_env"])
            load_env_state(c.env, state["env"])
            if c.spec.env.collector != "sync":  # the workers' fresh envs start new episodes from new seeds
                c.push_policy_weights()  # workers acting with a copy (meta.distributed synced, ray) get the loaded one
                tqdm.write(f"note: env.collector {c.spec.env.collector}: the episodes in flight in the worker "
                           "processes at the checkpoint were dropped (resume is not bit-exact)")
            elif state["env"]["exact"]:
                load_collector_state(c.collector, state["collector"])
            else:
                c.collector.reset()  # env internals could not be saved: start new episodes from the restored RNGs
                tqdm.write(f"note: {c.spec.env.name} state cannot be checkpointed; the episodes in flight at the "
                           "checkpoint were dropped (resume is not bit-exact)")
            if "replay" in state and c.agent.buffer is not None:
                load_replay(c.agent.buffer, self.run.ckpt_dir / state["replay"])
        except (KeyError, RuntimeError, ValueError, TypeError, OSError) as err:
            reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"checkpoint does not fit this spec ({type(err).__name__}: {reason})") from None
        self.frame, self.best_eval, self.episodes = state["frame"], state["best_eval"], state["episodes"]
        self.wall_time = state["wall_time"]
        self.recent_returns.extend(state["recent_returns"])
        self.evals = state.get("evals", self.evals)  # absent from checkpoints of zoo <= 0.4
        set_rng_state(state["rng"])

    def resume(self, state: dict) -> None:
        """Continue from checkpoint `state` in this session's run directory: its metrics and TensorBoard rows go
        back to the checkpoint's frame (anything logged after it is dropped), then `load_state_dict`."""
        self.run.restore_metrics(state["metrics_csv"])
        self.run.purge_step = state["frame"] + 1
        self.load_state_dict(state)

    def checkpoint(self, best: bool = False) -> None:
        self.wall_time = time.perf_counter() - self._clock_start
        buffer = self.c.agent.buffer if self.c.spec.meta.ckpt_replay else None
        self.run.save(self.state_dict(), best=best, buffer=buffer, actor=self.c.agent.actor.state_dict())

    # ---------------------------------------------------------------------------------------------- loop
    def run_loop(self) -> dict[str, float]:
        """Train to `env.max_frame`; returns the last logged row."""
        spec, max_frame = self.c.spec, self.c.spec.env.max_frame
        self._start_clocks()
        self.bar = tqdm(total=max_frame, initial=self.frame, unit="frame", disable=not self.progress,
                        dynamic_ncols=True, desc=spec.name)
        try:
            self._loop(max_frame)
        finally:  # on errors too: a multi-process collector's workers must not outlive the run
            self.c.close()
        if self.row:
            self.run.plot()
        self.bar.close()
        self.run.close()
        return self.row

    def _loop(self, max_frame: int) -> None:
        """Each batch: update (and push the weights to the collector's workers), log, evaluate, checkpoint."""
        agent = self.c.agent
        with stop_on_signals() as signals, self.profiling() as profiler_step:
            for data in self.batches():
                self.frame += data.numel()
                with self.timer("update"):
                    self.metrics = agent.update(data, self.frame) or self.metrics
                    self.c.push_policy_weights()
                self.count_episodes(data)
                self.bar.update(data.numel())
                evaluating = self.frame >= self.next_eval or self.frame >= max_frame
                if evaluating or self.frame >= self.next_log:
                    self.log_row(evaluate=evaluating)
                if evaluating and self.checkpoint_evaluation():
                    break
                profiler_step()
                if signals["stop"]:
                    if not evaluating:  # an evaluation already checkpointed this frame
                        self.checkpoint()
                    tqdm.write(f"stopped at frame {self.frame}; resume with train@{self.run.path}")
                    break
                if self.frame >= max_frame:
                    break

    def _start_clocks(self) -> None:
        """Frame and wall clocks of the loop's logging, evaluation, redraws and timers (resumed runs continue)."""
        meta = self.c.spec.meta
        self.next_log = (self.frame // meta.log_frequency + 1) * meta.log_frequency
        self.next_eval = (self.frame // meta.eval_frequency + 1) * meta.eval_frequency
        now = time.perf_counter()
        self._clock_start, self.last_log_time, self.last_log_frame = now - self.wall_time, now, self.frame
        self.last_plot = now  # first redraw after PLOT_INTERVAL: short runs draw once, at the end
        self.batch_returns, self.batch_lengths = [], []  # episodes finished since the last row
        self.row, self.metrics = {}, {}
        self.timer = PhaseTimer()

    def batches(self):
        """The collector's batches; the time spent waiting for each is charged to `collect`."""
        batches = iter(self.c.collector)
        while True:
            with self.timer("collect"):
                data = next(batches, None)
            if data is None:
                return
            yield data

    def count_episodes(self, data: TensorDict) -> None:
        done = data["next", "done"]
        if done.any():
            returns = data["next", "episode_reward"][done].tolist()
            self.batch_returns += returns
            self.batch_lengths += data["next", "step_count"][done].float().tolist()
            self.recent_returns.extend(returns)
            self.episodes += len(returns)

    def log_row(self, evaluate: bool) -> None:
        """One metrics row: training statistics since the last row, the evaluation when `evaluate`, the timers."""
        now = time.perf_counter()
        row = {"frame": self.frame, "time/wall": now - self._clock_start,
               "train/fps": (self.frame - self.last_log_frame) / max(now - self.last_log_time, 1e-9),
               "train/episodes": self.episodes, "train/return": _mean(self.batch_returns),
               "train/return_ma": _mean(self.recent_returns), "train/length": _mean(self.batch_lengths),
               **{metric_name(k): float(v) for k, v in self.metrics.items()}}
        self.last_log_time, self.last_log_frame, self.batch_returns, self.batch_lengths = now, self.frame, [], []
        if evaluate:
            with self.timer("eval"):
                row.update(self.evaluate())
        row.update(self.timer.row())
        self.run.log(row)
        self.bar.set_postfix(ret=f"{row['train/return_ma']:.1f}",
                             ev=f"{self.last_eval.get('eval/return', float('nan')):.1f}")
        if self.verbose:
            tqdm.write(_format_row(row))
        log_frequency = self.c.spec.meta.log_frequency
        self.next_log = (self.frame // log_frequency + 1) * log_frequency
        self.row = row

    def checkpoint_evaluation(self) -> bool:
        """Checkpoint after an evaluation (best.pt when it improved); True when the run stops here."""
        eval_return, eval_frequency = self.row["eval/return"], self.c.spec.meta.eval_frequency
        with self.timer("checkpoint"):
            improved = eval_return > self.best_eval
            for key, value in (("frames", self.frame), ("opt_steps", self.c.agent.num_updates),
                               ("returns", eval_return)):
                self.evals[key].append(value)
            self.best_eval = max(self.best_eval, eval_return)
            self.checkpoint(best=improved)
            if time.perf_counter() - self.last_plot >= PLOT_INTERVAL:
                self.run.plot()
                self.last_plot = time.perf_counter()
            self.next_eval = (self.frame // eval_frequency + 1) * eval_frequency
        if self.target_return is not None and eval_return >= self.target_return:
            tqdm.write(f"eval return {eval_return:.2f} >= target {self.target_return:g} at frame {self.frame}: "
                       "stopping")
            return True
        return self.on_eval is not None and self.on_eval(self, self.row)

    @contextmanager
    def profiling(self):
        """With `profile`: torch.profiler over the batches, fitted to the run's length; yields its `step`."""
        agent, frames_left = self.c.agent, self.c.spec.env.max_frame - self.frame
        if not self.profile or frames_left <= 0:
            yield lambda: None
            return
        fpb = agent.frames_per_batch
        random_batches = -(-max(agent.init_random_frames - self.frame, 0) // fpb)
        self.profile_schedule = profile_schedule(random_batches, -(-frames_left // fpb))
        path = self.run.path / "profile"
        profiler = make_profiler(path, self.profile_schedule, on_trace=lambda: setattr(self, "profile_trace", path))
        profiler.start()
        try:
            yield profiler.step
        finally:
            profiler.stop()

    def evaluate(self) -> dict[str, float]:
        self.c.sync_eval_env()
        self.last_eval = evaluate(self.c.eval_env, self.c.agent.actor)
        return self.last_eval


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def metric_name(key: str) -> str:
    """The logged name of a metric an algorithm's `update()` returns: its own when namespaced (has a `/`).

    Un-namespaced keys are the algorithm's: `loss` -> `loss/main`, `loss_<part>` -> `loss/<part>` and any other
    statistic (`kl_approx`, `explore_var`, `alpha`, ...) -> `train/<key>`. An algorithm may emit namespaced keys
    itself; they pass through unchanged.
    """
    if "/" in key:
        return key
    if key == "loss":
        return "loss/main"
    if key.startswith("loss_"):
        return f"loss/{key.removeprefix('loss_')}"
    return f"train/{key}"


def _format_row(row: dict[str, float]) -> str:
    keys = ("frame", "train/fps", "train/return_ma", "eval/return", "loss/main", "train/explore_var")
    return "  ".join(f"{k}={row[k]:.4g}" for k in keys if k in row and row[k] == row[k])
