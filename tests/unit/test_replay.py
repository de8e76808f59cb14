"""zoo's lean replay sampling returns what TorchRL's `TensorDictReplayBuffer.sample` returns."""

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, PrioritizedSampler, RandomSampler, TensorDictReplayBuffer

from zoo.memory import LeanReplayBuffer, gather_rows

SIZE = 500


def transitions(n: int = SIZE) -> TensorDict:
    return TensorDict({"observation": torch.randn(n, 4), "action": torch.randint(0, 2, (n,)),
                       ("next", "observation"): torch.randn(n, 4), ("next", "reward"): torch.randn(n, 1),
                       ("next", "done"): torch.rand(n, 1) < 0.1}, [n])


@pytest.mark.parametrize("make_sampler", [RandomSampler, lambda: PrioritizedSampler(SIZE, 0.6, 0.4)],
                         ids=["uniform", "prioritized"])
def test_lean_sample_equals_torchrl(make_sampler):
    data = transitions()
    torchrl_buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(SIZE), sampler=make_sampler())
    lean_buffer = LeanReplayBuffer(storage=LazyTensorStorage(SIZE), sampler=make_sampler())
    for buffer in (torchrl_buffer, lean_buffer):
        buffer.extend(data)
        if isinstance(buffer.sampler, PrioritizedSampler):
            buffer.update_priority(torch.arange(SIZE), torch.linspace(0.1, 5.0, SIZE))
    torch.manual_seed(0), np.random.seed(0)
    expected, expected_info = torchrl_buffer.sample(64, return_info=True)
    torch.manual_seed(0), np.random.seed(0)
    got, info = lean_buffer.sample(64, return_info=True)
    assert set(got.keys(True, True)) == set(expected.keys(True, True))
    for key in expected.keys(True, True):
        assert got[key].dtype == expected[key].dtype and torch.equal(got[key], expected[key]), key
    assert info.keys() == expected_info.keys()
    assert got.batch_size == expected.batch_size


def test_lean_sample_falls_back_on_2d_storage():
    buffer = LeanReplayBuffer(storage=LazyTensorStorage(SIZE, ndim=2), sampler=RandomSampler())
    buffer.extend(transitions(100).reshape(4, 25))
    batch = buffer.sample(16)
    assert batch.batch_size == torch.Size([16]) and batch["index"].shape == (16, 2)


def test_gather_rows_is_indexing():
    data, index = transitions(50), torch.tensor([3, 3, 0, 49])
    assert (gather_rows(data, index) == data[index]).all()
