"""Replay buffers from the memory spec: TorchRL storages and samplers, uniform or prioritized."""

import torch
from torchrl.data import (
    LazyTensorStorage,
    PrioritizedSampler,
    RandomSampler,
    TensorDictReplayBuffer,
)
from torchrl.envs import Transform

from zoo.spec import MemorySpec

# keys a one-step off-policy learner needs; everything else the collector writes is dropped before storing
TRANSITION_KEYS = ("observation", "action", ("next", "observation"), ("next", "reward"), ("next", "done"),
                   ("next", "terminated"))


def make_replay_buffer(memory_spec: MemorySpec, *, device: torch.device | str = "cpu", ndim: int = 1,
                       transform: Transform | None = None) -> TensorDictReplayBuffer:
    """Uniform (`Replay`) or proportional prioritized (`PrioritizedReplay`) replay over a lazy tensor storage.

    With `ndim=2` the storage keeps the `[num_envs, T]` layout (needed by n-step transforms).
    """
    storage = LazyTensorStorage(memory_spec.max_size, device=device, ndim=ndim)
    if memory_spec.name == "PrioritizedReplay":
        sampler = PrioritizedSampler(memory_spec.max_size, alpha=memory_spec.alpha, beta=memory_spec.beta,
                                     eps=memory_spec.epsilon)
    else:
        sampler = RandomSampler()
    return TensorDictReplayBuffer(storage=storage, sampler=sampler, batch_size=memory_spec.batch_size,
                                  transform=transform)
