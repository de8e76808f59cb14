"""Exploration modules that anneal the TorchRL way: each has `step(frames)`, called with the frames collected.

TorchRL's own loops step their exploration module after each collected batch (`egreedy.step(data.numel())`);
zoo's loop makes the same call, so a zoo policy dropped into a TorchRL loop explores as it does in zoo.
The value follows the spec's frame-clock schedule (`zoo.schedules.Schedule`: linear, rate, periodic decay),
which `EGreedyModule`'s own linear annealing cannot express, and the frame count is a buffer, so the
module's `state_dict` (and so a checkpoint) holds where the schedule stands.
"""

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import TensorSpec
from torchrl.envs.utils import ExplorationType, exploration_type
from torchrl.modules import AdditiveGaussianModule, EGreedyModule

from zoo.schedules import Schedule


class FrameClock:
    """What the modules below share: `step(frames)` adds to a frame count (a buffer) and sets the buffer named
    `scheduled` (epsilon, sigma, temperature) to the schedule's value at that count."""

    scheduled: str

    def start_clock(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.register_buffer("frames", torch.zeros((), dtype=torch.int64))

    def step(self, frames: int = 1) -> None:
        self.frames += frames
        self.scheduled_value.fill_(self.schedule(int(self.frames)))

    @property
    def scheduled_value(self) -> torch.Tensor:
        """The value the module acts with now (epsilon, noise scale or temperature): the agents log it."""
        return getattr(self, self.scheduled)


def annealing(schedule: Schedule) -> tuple[float, float, int]:
    """(start, lowest, frames) of a schedule, for TorchRL's linear-annealing arguments (informative only)."""
    return float(schedule(0)), float(min(schedule.start, schedule.end)), max(int(schedule.spec.end_step), 1)


class ScheduledEGreedy(FrameClock, EGreedyModule):
    """TorchRL's `EGreedyModule` with epsilon on a zoo schedule: `step(frames)` advances the frame clock.

    Draws stay `EGreedyModule`'s: one independent coin and random action per env, and no exploration under
    `set_exploration_type(DETERMINISTIC)`.
    """

    scheduled = "eps"

    def __init__(self, spec: TensorSpec, schedule: Schedule):
        start, end, frames = annealing(schedule)
        super().__init__(spec, eps_init=start, eps_end=end, annealing_num_steps=frames)
        self.start_clock(schedule)


class ScheduledGaussianNoise(FrameClock, AdditiveGaussianModule):
    """TorchRL's `AdditiveGaussianModule` with sigma on a zoo schedule: `step(frames)` advances the frame clock.

    The noise added to the action is sigma * N(0, std^2) (`std`: the action's scale), projected into the action
    spec; one independent draw per env and action dimension, none under `set_exploration_type(DETERMINISTIC)`.
    """

    scheduled = "sigma"

    def __init__(self, spec: TensorSpec, schedule: Schedule, std: float = 1.0):
        start, end, frames = annealing(schedule)
        super().__init__(spec, sigma_init=start, sigma_end=end, annealing_num_steps=frames, std=std)
        self.start_clock(schedule)


class BoltzmannExploration(FrameClock, TensorDictModuleBase):
    """Samples `action` from softmax(action_value / temperature), one independent draw per env; the temperature
    follows a zoo schedule through `step(frames)`. Under DETERMINISTIC exploration it leaves the greedy action."""

    scheduled = "temperature"

    def __init__(self, schedule: Schedule, action_value_key: str = "action_value", action_key: str = "action"):
        super().__init__()
        self.in_keys, self.out_keys = [action_value_key], [action_key]
        self.register_buffer("temperature", torch.tensor(float(schedule(0))))
        self.start_clock(schedule)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if exploration_type() not in (ExplorationType.RANDOM, None):
            return tensordict
        action_value = tensordict.get(self.in_keys[0])
        probs = torch.softmax(action_value / self.temperature.clamp_min(1e-6), dim=-1)
        action = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).reshape(probs.shape[:-1])
        greedy = tensordict.get(self.out_keys[0], None)
        if greedy is not None and greedy.shape == probs.shape:  # one-hot action spec
            action = torch.nn.functional.one_hot(action, probs.shape[-1]).to(greedy.dtype)
        tensordict.set(self.out_keys[0], action)
        return tensordict
