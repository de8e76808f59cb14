"""zoo's lean replay sampling returns what TorchRL's `TensorDictReplayBuffer.sample` returns."""

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, PrioritizedSampler, RandomSampler, TensorDictReplayBuffer

from zoo.memory import LeanPrioritizedSampler, LeanReplayBuffer, gather_rows

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


def test_lean_prioritized_sampler_draws_weighs_and_updates_as_torchrl():
    """Several sample / update rounds from the same numpy seed: the same rows, weights, tree sums and minima and
    max priority as TorchRL's sampler (a row at a new max priority, repeated rows, priorities of shape [n, 1])."""
    storage = LazyTensorStorage(SIZE)
    storage.set(torch.arange(300), transitions(300))
    samplers = [PrioritizedSampler(SIZE, 0.6, 0.4, eps=1e-4), LeanPrioritizedSampler(SIZE, 0.6, 0.4, eps=1e-4)]
    for sampler in samplers:  # as a buffer's extend does: new rows at the default priority (a scalar)
        sampler.extend(torch.arange(300))
        sampler.update_priority(torch.arange(300), sampler.default_priority)
    generator = torch.Generator().manual_seed(0)
    for step in range(6):
        draws = []
        for sampler in samplers:
            np.random.seed(step)
            draws.append(sampler.sample(storage, 64))
        (expected, expected_info), (got, info) = draws
        assert torch.equal(got, expected) and torch.allclose(info["priority_weight"], expected_info["priority_weight"])
        priority = torch.rand(64, generator=generator) * (10.0 if step == 3 else 1.0)
        if step == 4:
            priority = priority[:, None]
        for sampler in samplers:
            sampler.update_priority(expected, priority)
        reference, lean = samplers
        assert lean._sum_tree.query(0, 300) == pytest.approx(reference._sum_tree.query(0, 300))
        assert lean._min_tree.query(0, 300) == pytest.approx(reference._min_tree.query(0, 300))
        assert float(lean._max_priority[0]) == float(reference._max_priority[0])
        assert int(lean._max_priority[1]) == int(reference._max_priority[1])
    assert torch.equal(torch.as_tensor(samplers[1]._sum_tree[torch.arange(300)]),
                       torch.as_tensor(samplers[0]._sum_tree[torch.arange(300)]))
