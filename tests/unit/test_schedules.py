"""Frame-clock schedules and learning-rate factors."""

import pytest

from zoo.agent import lr_factor
from zoo.schedules import Schedule
from zoo.spec import LRSchedulerSpec, ScheduleSpec


def test_linear_decay():
    s = Schedule(ScheduleSpec(name="linear_decay", start_val=1.0, end_val=0.1, start_step=100, end_step=1100))
    assert s(0) == 1.0 and s(100) == 1.0
    assert s(600) == pytest.approx(0.55)
    assert s(1100) == pytest.approx(0.1) and s(10**6) == pytest.approx(0.1)


def test_no_decay_is_constant():
    s = Schedule(ScheduleSpec(start_val=0.3, end_val=0.0, end_step=10))
    assert s(0) == s(5) == s(100) == 0.3


def test_rate_decay_is_geometric():
    s = Schedule(ScheduleSpec(name="rate_decay", start_val=1.0, end_val=0.01, end_step=100))
    assert s(50) == pytest.approx(0.1)
    assert s(200) == pytest.approx(0.01)


def test_periodic_decay_stays_within_envelope():
    s = Schedule(ScheduleSpec(name="periodic_decay", start_val=1.0, end_val=0.0, end_step=1000, frequency=100))
    values = [s(f) for f in range(0, 1200, 10)]
    linear = Schedule(ScheduleSpec(name="linear_decay", start_val=1.0, end_val=0.0, end_step=1000))
    assert all(0.0 <= v <= linear(f) + 1e-9 for v, f in zip(values, range(0, 1200, 10), strict=True))
    assert s(50) < 0.1 and s(100) == pytest.approx(linear(100))
    assert s(1000) == 0.0


def test_lr_factors():
    assert lr_factor(None, 500, 1000) == 1.0
    assert lr_factor(LRSchedulerSpec(name="linear_to_zero"), 250, 1000) == pytest.approx(0.75)
    assert lr_factor(LRSchedulerSpec(name="StepLR", step_size=100, gamma=0.5), 250, 1000) == pytest.approx(0.25)
    assert lr_factor(LRSchedulerSpec(name="CosineAnnealingLR"), 1000, 1000) == pytest.approx(0.0)
