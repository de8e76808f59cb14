"""Replay buffers from the memory spec: TorchRL storages and samplers, uniform or prioritized."""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import (
    LazyTensorStorage,
    PrioritizedSampler,
    RandomSampler,
    TensorDictReplayBuffer,
)
from torchrl.envs import EnvBase, MultiStepTransform, Transform

from zoo.schedules import Schedule
from zoo.spec import MemorySpec, ScheduleSpec, Spec, SpecError

FRAME_STACK_FILE = "frame_stack.pt"  # FrameStackReplay's own state, next to what TorchRL's `dumps` writes
CER_FILE = "cer_pending.pt"  # CombinedReplay's rows not yet drawn, likewise
# keys a one-step off-policy learner needs; everything else the collector writes is dropped before storing
TRANSITION_KEYS = ("observation", "action", ("next", "observation"), ("next", "reward"), ("next", "done"),
                   ("next", "terminated"))


class NStepTransform(MultiStepTransform):
    """TorchRL's `MultiStepTransform` with the window's end flags: `("next", "terminated"/"done")` at step t + k.

    TorchRL 0.14.1 gathers every `("next", ...)` entry at the window's last step except the done keys, which it
    leaves at step t: a window of [t, t+k] that ends in a termination then bootstraps from the terminal
    observation (tests/unit/test_nstep.py shows it). We route the flags through helper keys, which the
    transform gathers like observations, and drop what the losses never read.
    """

    END_KEYS = ("terminated", "truncated", "done")

    def _inv_call(self, tensordict):
        tensordict = tensordict.copy()
        keys = [key for key in self.END_KEYS if key in tensordict["next"]]
        for key in keys:
            tensordict["next", f"window_{key}"] = tensordict["next", key]
        out = super()._inv_call(tensordict)
        if out is None:  # fewer frames than the window so far
            return None
        for key in keys:
            out["next", key] = out.pop(("next", f"window_{key}"))
        return out.exclude("gamma", "nonterminal", ("next", "original_reward"))


def make_replay_buffer(memory_spec: MemorySpec, *, device: torch.device | str | None = None, ndim: int = 1,
                       transform: Transform | None = None, env: EnvBase | None = None) -> TensorDictReplayBuffer:
    """Uniform (`Replay`) or proportional prioritized (`PrioritizedReplay`) replay over a lazy tensor storage.

    Given the `env`, stacked uint8 frames (Atari) get a `FrameStackReplay`, which stores each frame once, and
    the storage lives on the env's device unless `device` says otherwise (default: cpu).

    With `ndim=2` the storage keeps the `[num_envs, T]` layout (needed by n-step transforms). The buffer has no
    batch size of its own: learners draw `memory_spec.batch_size` rows through `replay_updates`.
    """
    obs_spec = None if env is None else env.observation_spec["observation"]
    device = device or (env.device if env is not None and env.device is not None else "cpu")
    frames = obs_spec is not None and obs_spec.dtype == torch.uint8 and obs_spec.ndim - env.batch_dims == 3
    max_size = memory_spec.max_size
    if frames:  # a whole number of steps, so env e's previous step is always num_envs rows back
        max_size = -(-max_size // env.batch_size.numel()) * env.batch_size.numel()
        if transform is not None or ndim != 1:
            raise SpecError("agent.algorithm.n_step", "n-step returns are not supported on stacked-frame replay")
    if frames and memory_spec.use_cer:
        raise SpecError("agent.memory.use_cer", "combined experience replay is not supported on stacked-frame (Atari) "
                        "replay; allowed: false")
    storage = LazyTensorStorage(max_size, device=device, ndim=ndim)
    if memory_spec.name == "PrioritizedReplay":
        sampler = LeanPrioritizedSampler(max_size, alpha=memory_spec.alpha, beta=memory_spec.beta,
                                     eps=memory_spec.epsilon)
    else:
        sampler = RandomSampler()
    if frames:
        return FrameStackReplay(num_envs=env.batch_size.numel(), stack=obs_spec.shape[-3], storage=storage,
                                sampler=sampler)
    if memory_spec.use_cer:
        return CombinedReplay(memory_spec.batch_size, storage=storage, sampler=sampler, transform=transform)
    return LeanReplayBuffer(storage=storage, sampler=sampler, transform=transform)


class LeanPrioritizedSampler(PrioritizedSampler):
    """TorchRL's proportional sampler with lean paths for the common case, CPU segment trees over a flat storage,
    drawn once per gradient step: the same draws (numpy's global RNG, as TorchRL's CPU path), importance weights,
    tree writes and max-priority bookkeeping as `PrioritizedSampler.sample` / `update_priority`
    (torchrl/data/replay_buffers/samplers/prioritized.py), without their general-case conversions, reshapes and
    `-1`-index filtering. Anything else (CUDA trees, a seeded generator, an N-d storage or index, a max priority
    kept within the buffer) takes TorchRL's path."""

    def _lean(self, storage) -> bool:
        return self._device is None and self._rng is None and not self._max_priority_within_buffer and (
            storage is None or storage.ndim == 1)

    def sample(self, storage, batch_size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        size = len(storage)
        if not self._lean(storage) or size == 0:
            return super().sample(storage, batch_size)
        p_sum, p_min = self._sum_tree.query(0, size), self._min_tree.query(0, size)
        if p_sum <= 0 or p_min <= 0:
            return super().sample(storage, batch_size)  # TorchRL's error
        index = torch.as_tensor(self._sum_tree.scan_lower_bound(np.random.uniform(0.0, p_sum, size=batch_size)))
        index = index.reshape(-1).clamp_max_(size - 1)
        weight = torch.as_tensor(self._sum_tree[index])
        zero_weight = weight == 0  # a float-rounding landing past the last positive entry: step back, as TorchRL
        while zero_weight.any():
            index = torch.where(zero_weight, index - 1, index)
            if (index < 0).any():
                raise RuntimeError("Failed to find a suitable index")
            weight = torch.as_tensor(self._sum_tree[index])
            zero_weight = weight == 0
        return index, {"priority_weight": torch.pow(weight / p_min, -self._beta)}

    @torch.no_grad()
    def update_priority(self, index, priority, *, storage=None) -> None:
        lean = (self._lean(storage) and isinstance(index, torch.Tensor) and index.ndim == 1 and index.numel()
                and isinstance(priority, torch.Tensor) and priority.shape == index.shape and not index.is_cuda
                and not priority.is_cuda and index.dtype == torch.long)
        if not lean or index.min() < 0:
            return super().update_priority(index, priority, storage=storage)
        priority = priority.detach()
        max_p, max_at = priority.max(dim=0)
        current = self._max_priority[0]
        if current is None or max_p > current:
            self._max_priority = (max_p, index[max_at])
        priority = torch.pow(priority + self._eps, self._alpha)
        self._sum_tree[index] = priority
        self._min_tree[index] = priority


def gather_rows(data: TensorDictBase, index: torch.Tensor, extra: dict[str, torch.Tensor] | None = None) -> TensorDict:
    """`data[index]` for a 1-D integer `index`, leaf by leaf, plus the `extra` entries (one value per row): a
    fraction of `TensorDict.__getitem__`'s cost. The rows come from a storage TorchRL already validated, so the
    result is built without re-validating each leaf (`TensorDict._new_unsafe`, what tensordict's own indexing
    uses)."""
    rows = {key: gather_rows(value, index) if isinstance(value, TensorDictBase) else value[index]
            for key, value in data.items()}
    return TensorDict._new_unsafe({**rows, **(extra or {})}, batch_size=index.shape, device=data.device)


class LeanReplayBuffer(TensorDictReplayBuffer):
    """TorchRL's `TensorDictReplayBuffer` with a lean `sample` for the common case: a flat (`ndim=1`) storage on
    the sampler's device, no transform, sample unit or generation tracking, one thread. Prioritized replay draws
    one small batch per gradient step, and TorchRL's general path (locks, `_storage_index`, the storage's
    `TensorDict.__getitem__`, the info loop in `TensorDictReplayBuffer.sample`) costs several times the
    sampler's own draw there (torchrl/data/replay_buffers/replay_buffers/tensordict.py, `sample` and `_sample`).
    The output is TorchRL's: the rows with `index` and, when prioritized, `priority_weight`. Anything else takes
    TorchRL's path."""

    def sample(self, batch_size: int | None = None, return_info: bool = False, **kwargs):
        storage = self._storage
        lean = (batch_size is not None and not kwargs and storage.ndim == 1 and self._sample_unit is None
                and not (self._transform is not None and len(self._transform))
                and not self._writer.tracks_generations and isinstance(storage, LazyTensorStorage)
                and storage.initialized and len(storage) > 0)
        if not lean:
            return super().sample(batch_size, return_info=return_info, **kwargs)
        index, info = self._sampler.sample(storage, batch_size)
        info["index"] = index
        data = gather_rows(storage._storage, index.to(storage.device),
                           {key: torch.as_tensor(value, device=storage.device) for key, value in info.items()})
        return (data, info) if return_info else data

    def update_priority(self, index, priority) -> None:
        """TorchRL's, straight to the sampler for a flat storage's 1-D index (no locks: one thread)."""
        if self._storage.ndim != 1 or not isinstance(index, torch.Tensor) or index.ndim != 1:
            return super().update_priority(index, priority)
        self._sampler.update_priority(index, priority)


class CombinedReplay(LeanReplayBuffer):
    """Combined experience replay (Zhang & Sutton 2017), as SLM-Lab's `use_cer`: the rows stored since the last
    draw replace the end of the next drawn batch, oldest first, at most one batch's worth (the rest wait for the
    next draw; `replay_batches` draws one batch at a time). The rows not
    yet drawn travel with `dumps` / `loads` as `cer_pending.pt` and with `state_dict` under `_cer_pending`."""

    def __init__(self, batch_size: int, **kwargs):
        super().__init__(**kwargs)
        self.cer_batch_size = batch_size
        self.pending = torch.empty(0, dtype=torch.int64)  # storage rows not yet drawn, oldest first

    def extend(self, data: TensorDictBase, *args, **kwargs) -> torch.Tensor:
        index = super().extend(data, *args, **kwargs)
        self.pending = torch.cat([self.pending, index.reshape(-1).cpu().to(torch.int64)])[-self._storage.max_size:]
        return index

    def sample(self, batch_size: int | None = None, return_info: bool = False, **kwargs):
        out = super().sample(batch_size, return_info=return_info, **kwargs)
        batch = out[0] if return_info else out
        end = min(self.cer_batch_size, batch.shape[0])
        fresh, self.pending = self.pending[:end], self.pending[end:]
        if fresh.numel():
            rows = slice(end - fresh.numel(), end)
            newest = self._storage[fresh.to(self._storage.device)].to(batch.device)
            for key in newest.keys(True, True):
                batch.get(key)[rows] = newest.get(key)
            batch.get("index")[rows] = fresh.to(batch.device)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "_cer_pending": self.pending.clone()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.pending = state_dict.pop("_cer_pending").clone()
        super().load_state_dict(state_dict)

    def dumps(self, path) -> None:
        super().dumps(path)
        torch.save(self.pending.clone(), Path(path) / CER_FILE)

    def loads(self, path) -> None:
        pending = torch.load(Path(path) / CER_FILE, map_location="cpu", weights_only=True)
        super().loads(path)
        self.pending = pending


def store_transitions(buffer: TensorDictReplayBuffer, data: TensorDictBase, terminated_key: str = "terminated",
                      nstep: NStepTransform | None = None) -> None:
    """Store a collected `[num_envs, T]` batch as flat one-step (or n-step) transitions.

    Keeps only `TRANSITION_KEYS`; with `terminated_key` set (Atari end of life, from `zoo.envs.learning_keys`)
    that flag stops bootstrapping in place of the env's own termination. An n-step transform holds back each
    env's last n - 1 steps until their windows are complete.
    """
    transitions = data.select(*TRANSITION_KEYS)
    if terminated_key != "terminated":  # learn as if each lost life ended the episode
        transitions["next", "terminated"] = data["next", terminated_key]
    if nstep is not None:  # per-env windows; None until the first n frames have arrived
        transitions = nstep.inv(transitions)
    if transitions is not None:
        buffer.extend(transitions.reshape(-1))


def replay_batches(buffer: TensorDictReplayBuffer, batch_size: int, steps: int) -> Iterator[TensorDictBase]:
    """The batches of `steps` consecutive gradient steps. Prioritized replay draws each batch lazily, after the
    previous step updated the priorities, and combined replay too (each draw takes its share of the newest rows,
    as SLM-Lab's); uniform replay (with replacement) draws all of them in one call, the same distribution at a
    fraction of the cost."""
    if isinstance(buffer.sampler, PrioritizedSampler) or isinstance(buffer, CombinedReplay):
        return (buffer.sample(batch_size) for _ in range(steps))
    return iter(buffer.sample(batch_size * steps).split(batch_size))


def replay_updates(buffer: TensorDictReplayBuffer, batch_size: int, steps: int, beta: float | None,
                   gradient_step: Callable[[TensorDictBase], tuple[Any, torch.Tensor]], reuse: int = 1) -> list[Any]:
    """Run `reuse` gradient steps on each of `steps` replayed batches; `gradient_step(batch)` returns (its result,
    per-sample |TD error|). Prioritized replay anneals the sampler's importance-sampling exponent to `beta` first
    (the batches carry `priority_weight`) and makes each step's |TD error| its rows' new priorities."""
    prioritized = isinstance(buffer.sampler, PrioritizedSampler)
    if prioritized and beta is not None:
        buffer.sampler.beta = beta
    results = []
    for batch in replay_batches(buffer, batch_size, steps):
        for _ in range(reuse):
            result, td_error = gradient_step(batch)
            if prioritized:
                buffer.update_priority(batch["index"], td_error)
            results.append(result)
    return results


def frames_per_batch(spec: Spec) -> int:
    """Frames collected between training phases: `training_frequency` rounded up to whole vector-env steps."""
    n = spec.env.num_envs
    return max(n, -(-spec.agent.algorithm.training_frequency // n) * n)


def priority_beta(spec: Spec) -> Schedule | None:
    """Importance-sampling exponent annealed to 1 over the run (Schaul et al. 2016), for prioritized replay."""
    mem_spec = spec.agent.memory
    if mem_spec.name != "PrioritizedReplay":
        return None
    return Schedule(ScheduleSpec(name="linear_decay", start_val=mem_spec.beta, end_val=1.0,
                                 end_step=spec.env.max_frame))




@dataclass
class ReplayPhase:
    """When and how much an off-policy agent learns: `iters` replayed batches of `batch_size` after each collected
    batch, `batch_iter` gradient steps on each, from frame `start`, the actor every `policy_delay`-th step;
    prioritized replay anneals its exponent on `beta`."""

    batch_size: int
    iters: int
    start: int
    policy_delay: int = 1
    beta: Schedule | None = None
    batch_iter: int = 1

    @classmethod
    def from_spec(cls, spec: Spec) -> "ReplayPhase":
        algo_spec = spec.agent.algorithm
        return cls(spec.agent.memory.batch_size, algo_spec.training_iter, algo_spec.training_start_step,
                   getattr(algo_spec, "policy_delay", 1), priority_beta(spec),
                   getattr(algo_spec, "training_batch_iter", 1))

    def run(self, buffer: TensorDictReplayBuffer, frame: int,
            gradient_step: Callable[[TensorDictBase], tuple[dict[str, torch.Tensor], torch.Tensor]],
            set_lr: Callable[[int], float]) -> dict[str, torch.Tensor]:
        """The training phase after a batch is stored: nothing before frame `start`; then the learning rate for
        `frame` (`set_lr`, the agent's) and `iters` x `batch_iter` gradient steps through `replay_updates`.
        Returns each step's metrics averaged over the steps that have them (actor metrics: every
        `policy_delay`-th step), `lr_factor` and `time/updates_per_s`."""
        if frame < self.start:
            return {}
        lr = set_lr(frame)
        start = time.perf_counter()
        beta = None if self.beta is None else self.beta(frame)
        steps = replay_updates(buffer, self.batch_size, self.iters, beta, gradient_step, self.batch_iter)
        metrics = {key: torch.stack([s[key] for s in steps if key in s]).mean()
                   for key in dict.fromkeys(k for step in steps for k in step)}
        metrics["time/updates_per_s"] = torch.tensor(len(steps) / (time.perf_counter() - start))
        metrics["lr_factor"] = torch.tensor(lr)
        return metrics


class FrameStackReplay(TensorDictReplayBuffer):
    """Replay for stacked uint8 frames (Atari) that stores each frame once and rebuilds stacks on sampling.

    A 1M-transition Atari replay with both stacks stored takes 56 KB per transition (53 GiB); here a row holds
    only the newest frame of its observation (7 KB), so 1M rows fit in about 6.6 GiB. TorchRL has no such
    storage, so this subclass of `TensorDictReplayBuffer` keeps TorchRL's storage, writer and (prioritized)
    samplers and only changes what a row holds. Rows are written time-major (every env at step t, then t + 1),
    so env e's previous step sits `num_envs` rows back; frames before an episode's first step are zeros, as
    the env's own reset stack. The last frame of each finished episode (needed when it was truncated) is kept
    aside. A row whose neighbours are not (or no longer) stored is redrawn: the newest and oldest few rows.

    An episode cut outside the batches (the envs reset at a resume: ALE state cannot be checkpointed) is seen
    at the next `extend`, whose first observation is not the last one's next observation: its last row becomes
    a truncation (`done`, with its real next frame kept aside) and the env's next episode starts from zeros.

    State beyond TorchRL's storage, sampler and writer (`next_step`, `episode_step`, `final_frames`, the last
    batch's end) travels with `dumps` / `loads` as one more file, `frame_stack.pt` (tensors only, read with
    `torch.load(weights_only=True)`), and with `state_dict` / `load_state_dict` under `_frame_stack`.
    """

    def __init__(self, *, num_envs: int, stack: int, storage: LazyTensorStorage, sampler):
        super().__init__(storage=storage, sampler=sampler)
        self.num_envs, self.stack = num_envs, stack
        self.next_step = 0
        self.episode_step = torch.zeros(num_envs, dtype=torch.int64)
        self.final_frames: dict[int, torch.Tensor] = {}
        self.last_rows: torch.Tensor | None = None  # row of each env's latest transition
        self.last_frame: torch.Tensor | None = None  # newest frame of each env's latest next observation

    def extend(self, data: TensorDictBase) -> torch.Tensor:
        """Store a collector batch `[num_envs, T]` (or its env-major flattening) as one row per transition."""
        data = data.reshape(self.num_envs, -1)
        n, steps = data.shape
        if self.last_frame is not None:
            self._end_cut_episodes(data["observation"][:, 0, -1])
        done = data["next", "done"].reshape(n, steps).cpu()
        episode_step = torch.empty(n, steps, dtype=torch.int64)
        for t in range(steps):
            episode_step[:, t] = self.episode_step
            self.episode_step = torch.where(done[:, t], 0, self.episode_step + 1)
        rows = TensorDict({
            "frame": data["observation"][..., -1, :, :], "action": data["action"],
            "step": (self.next_step + torch.arange(steps)).expand(n, steps), "episode_step": episode_step,
            "next": data["next"].select("reward", "terminated", "done"),
        }, batch_size=[n, steps]).transpose(0, 1).reshape(-1)
        self.next_step += steps
        index = super().extend(rows)
        if self.final_frames:
            for i in index.tolist():
                self.final_frames.pop(i, None)
        final = data["next", "observation"][..., -1, :, :].transpose(0, 1).reshape(-1, *rows["frame"].shape[1:])
        for i in rows["next", "done"].reshape(-1).nonzero().squeeze(-1).tolist():
            self.final_frames[int(index[i])] = final[i].clone()
        self.last_rows, self.last_frame = index[-n:].cpu(), final[-n:].clone()  # time-major: the last step
        return index

    def _end_cut_episodes(self, first_frame: torch.Tensor) -> None:
        """Make each env's latest transition a truncation where its episode did not continue into this batch."""
        cut = ((first_frame != self.last_frame).flatten(1).any(1).cpu() & (self.episode_step > 0))
        if not cut.any():
            return
        rows = self.last_rows[cut]
        self._storage._storage["next", "done"][rows.to(self._storage.device)] = True
        for env, row in zip(cut.nonzero().squeeze(-1).tolist(), rows.tolist(), strict=True):
            self.final_frames[row] = self.last_frame[env].clone()
        self.episode_step = torch.where(cut, 0, self.episode_step)

    # ------------------------------------------------------------------------------------------- state
    def frame_stack_state(self) -> dict[str, torch.Tensor]:
        """What this buffer keeps outside TorchRL's storage, as tensors."""
        index = sorted(self.final_frames)
        state = {"next_step": torch.tensor(self.next_step), "episode_step": self.episode_step.clone(),
                 "final_index": torch.tensor(index, dtype=torch.int64)}
        if index:
            state["final_frames"] = torch.stack([self.final_frames[i] for i in index])
        if self.last_frame is not None:
            state.update(last_rows=self.last_rows, last_frame=self.last_frame)
        return state

    def load_frame_stack_state(self, state: dict[str, torch.Tensor]) -> None:
        if state["episode_step"].shape != self.episode_step.shape:
            raise ValueError(f"FrameStackReplay state for {state['episode_step'].numel()} envs, not {self.num_envs}")
        device = self._storage.device
        self.next_step = int(state["next_step"])
        self.episode_step = state["episode_step"].cpu().clone()
        frames = state.get("final_frames", ())
        self.final_frames = {int(i): f.to(device).clone() for i, f in zip(state["final_index"], frames, strict=True)}
        self.last_rows = state["last_rows"].cpu().clone() if "last_rows" in state else None
        self.last_frame = state["last_frame"].to(device).clone() if "last_frame" in state else None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "_frame_stack": self.frame_stack_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.load_frame_stack_state(state_dict["_frame_stack"])

    def dumps(self, path) -> None:
        super().dumps(path)
        torch.save(self.frame_stack_state(), Path(path) / FRAME_STACK_FILE)

    def loads(self, path) -> None:
        state = torch.load(Path(path) / FRAME_STACK_FILE, map_location="cpu", weights_only=True)
        super().loads(path)
        self.load_frame_stack_state(state)

    def sample(self, batch_size: int, return_info: bool = False) -> TensorDictBase | tuple[TensorDictBase, dict]:
        """Sampled transitions with `observation` / `("next", "observation")` stacks rebuilt (uint8); with
        `return_info`, also TorchRL's info dict (`index`, and `priority_weight` when prioritized)."""
        batch, valid = self._restack(super().sample(batch_size))
        for _ in range(100):
            if valid.all():
                break
            extra, extra_valid = self._restack(super().sample(batch_size))
            batch = torch.cat([batch[valid], extra[extra_valid], extra[~extra_valid]])[:batch_size]
            valid = torch.cat([valid[valid], extra_valid[extra_valid], extra_valid[~extra_valid]])[:batch_size]
        else:
            raise RuntimeError("FrameStackReplay: too few complete transitions stored to sample from")
        batch = batch.exclude("frame", "step", "episode_step")
        if not return_info:
            return batch
        info = {key: batch.get(key, None) for key in ("index", "priority_weight")}
        return batch, {key: value for key, value in info.items() if value is not None}

    def _restack(self, batch: TensorDictBase) -> tuple[TensorDictBase, torch.Tensor]:
        store, size, n = self._storage._storage, len(self._storage), self.num_envs
        step, episode_step = batch["step"], batch["episode_step"]
        index = batch["index"].to(step.device)
        offsets = torch.arange(self.stack - 1, -1, -1, device=step.device)
        in_episode = offsets <= episode_step.unsqueeze(-1)  # [B, stack]: frames since the episode began
        rows = (index.unsqueeze(-1) - offsets * n) % self._storage.max_size
        valid = ((store["step"][rows] == step.unsqueeze(-1) - offsets) | ~in_episode).all(-1)
        stack = store["frame"][rows] * in_episode[..., None, None]
        next_rows = (index + n) % self._storage.max_size
        done = batch["next", "done"].reshape(-1)
        valid &= done | ((next_rows < size) & (store["step"][next_rows] == step + 1))
        next_frame = store["frame"][next_rows]
        for i in done.nonzero().squeeze(-1).tolist():
            next_frame[i] = self.final_frames[int(index[i])]
        batch["observation"] = stack
        batch["next", "observation"] = torch.cat([stack[:, 1:], next_frame.unsqueeze(1)], dim=1)
        return batch, valid
