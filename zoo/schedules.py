"""Frame-clock schedules: a value that is a pure function of the frame count.

Being pure functions of `frame`, schedules need no state in checkpoints: resuming at frame F gives the
same value as an uninterrupted run at F.
"""

import math

from zoo.spec import ScheduleSpec


class Schedule:
    """`schedule(frame) -> float` for a `ScheduleSpec` (no_decay, linear_decay, rate_decay, periodic_decay)."""

    def __init__(self, spec: ScheduleSpec):
        self.spec = spec
        self.start = spec.start_val
        self.end = spec.start_val if spec.end_val is None else spec.end_val

    def progress(self, frame: int) -> float:
        """Fraction of the annealing window that `frame` has covered, in [0, 1]."""
        s = self.spec
        if s.name == "no_decay" or frame <= s.start_step:
            return 0.0
        if s.end_step <= s.start_step or frame >= s.end_step:
            return 1.0
        return (frame - s.start_step) / (s.end_step - s.start_step)

    def __call__(self, frame: int) -> float:
        p = self.progress(frame)
        name = self.spec.name
        if name == "no_decay":
            return self.start
        if name == "rate_decay":  # geometric interpolation: the same ratio per frame
            if self.start > 0 and self.end > 0:
                return self.start * (self.end / self.start) ** p
            return self.start + (self.end - self.start) * p
        linear = self.start + (self.end - self.start) * p
        if name == "periodic_decay":  # a cosine wave under the linear envelope
            phase = (frame - self.spec.start_step) / self.spec.frequency
            return self.end + (linear - self.end) * 0.5 * (1 + math.cos(2 * math.pi * phase)) if p < 1 else self.end
        return linear

    def __repr__(self) -> str:
        s = self.spec
        if s.name == "no_decay":
            return f"constant({self.start})"
        return f"{s.name}({self.start} -> {self.end}, frames {s.start_step}..{s.end_step})"


def constant(value: float) -> Schedule:
    """A schedule that always returns `value`."""
    return Schedule(ScheduleSpec(start_val=value))
