"""What every algorithm builds, and the optimizer plumbing they share.

An algorithm's `build(spec, env)` returns an `Agent`: plain TorchRL / torch objects (exploration policy,
greedy actor, loss module, replay buffer, target updater, exploration module, optimizers) plus an
`update(data, frame)` that learns from one collected batch. The session loop only calls `update`;
checkpoints use `state_dict`.
"""

import math
from dataclasses import dataclass, field

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn
from torch.nn import functional as F
from torchrl.data import ReplayBuffer
from torchrl.objectives import LossModule, TargetNetUpdater

from zoo.schedules import Schedule
from zoo.spec import LRSchedulerSpec, NetSpec, OptimSpec


@dataclass
class Agent:
    """Components of one algorithm instance. Subclasses implement `update` and nothing else of the loop."""

    policy: TensorDictModuleBase  # acts in the collector (explores)
    actor: TensorDictModuleBase  # acts in evaluation (greedy / deterministic)
    loss: LossModule | None  # None: nothing is learned (Random)
    optimizers: dict[str, torch.optim.Optimizer]
    frames_per_batch: int
    max_frame: int
    buffer: ReplayBuffer | None = None
    target_updater: TargetNetUpdater | None = None
    exploration: nn.Module | None = None  # annealed by `step(frames)` after each collected batch (TorchRL's way)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    lr_scheduler_spec: LRSchedulerSpec | None = None
    init_random_frames: int = 0
    num_updates: int = 0
    normalizers: nn.Module | None = None  # the train env's normalization statistics (set by components.build)

    def update(self, data: TensorDictBase, frame: int) -> dict[str, torch.Tensor]:
        """Learn from one collected batch `[num_envs, T]`; return scalar metrics (tensors, no host sync)."""
        raise NotImplementedError

    def set_lr(self, frame: int) -> float:
        """Apply the learning-rate schedule for `frame` to every optimizer; returns the factor."""
        factor = lr_factor(self.lr_scheduler_spec, frame, self.max_frame)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * factor
        return factor

    def state_dict(self) -> dict:
        """Everything needed to continue learning (the replay buffer is saved separately)."""
        state = {
            "loss": self.loss.state_dict() if self.loss is not None else {},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "num_updates": self.num_updates,
        }
        if self.target_updater is not None and hasattr(self.target_updater, "counter"):
            state["target_counter"] = self.target_updater.counter
        if self.normalizers is not None:
            state["normalizers"] = self.normalizers.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.loss is not None:
            self.loss.load_state_dict(state["loss"])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        self.num_updates = state["num_updates"]
        if "target_counter" in state:
            self.target_updater.counter = state["target_counter"]
        if "normalizers" in state:
            self.normalizers.load_state_dict(state["normalizers"])


def make_optimizer(params, optim_spec: OptimSpec) -> torch.optim.Optimizer:
    """torch.optim optimizer from an `OptimSpec`; records `initial_lr` for frame-clock lr schedules."""
    s = optim_spec
    if s.name in ("Adam", "AdamW"):  # fused: one kernel for all parameters, ~4x faster steps on CPU
        betas = tuple(s.betas) if s.betas is not None else (0.9, 0.999)
        opt = getattr(torch.optim, s.name)(params, lr=s.lr, betas=betas, eps=s.eps, weight_decay=s.weight_decay,
                                           fused=True)
    elif s.name == "RMSprop":
        opt = torch.optim.RMSprop(params, lr=s.lr, eps=s.eps, alpha=s.alpha, momentum=s.momentum,
                                  weight_decay=s.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return opt


def lr_factor(spec: LRSchedulerSpec | None, frame: int, max_frame: int) -> float:
    """Learning-rate multiplier at `frame`: the torch scheduler of that name, counted in frames."""
    if spec is None:
        return 1.0
    progress = min(frame / max_frame, 1.0)
    if spec.name in ("linear_to_zero", "LinearLR"):
        return 1.0 + (spec.end_factor - 1.0) * progress
    if spec.name == "StepLR":
        return spec.gamma ** (frame // spec.step_size)
    if spec.name == "ExponentialLR":
        return spec.gamma ** (frame / spec.step_size)
    # CosineAnnealingLR over the whole run, down to end_factor
    return spec.end_factor + (1 - spec.end_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def clip_grad(params, max_norm: float | None) -> torch.Tensor | None:
    """Clip the global gradient norm when `max_norm` is set; returns the pre-clip norm (a tensor)."""
    if max_norm is None:
        return None
    return nn.utils.clip_grad_norm_(params, max_norm)


# ------------------------------------------------------------------------------------ loss maths zoo's losses share
def loss_function(net_spec: NetSpec) -> str:
    """TorchRL's name (`loss_function`, `loss_critic_type`) for the regression loss `agent.net.loss_spec` names."""
    return "smooth_l1" if net_spec.loss_spec.name == "SmoothL1Loss" else "l2"


def regression(pred: torch.Tensor, target: torch.Tensor, huber: bool) -> torch.Tensor:
    """Elementwise l2 or smooth-l1 distance (TorchRL `distance_loss`)."""
    return F.smooth_l1_loss(pred, target, reduction="none") if huber else (pred - target).pow(2)


def weighted_mean(x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """mean(w * x): prioritized replay's importance weights as Schaul et al. 2016 (TorchRL divides by sum(w))."""
    return x.mean() if weight is None else (x * weight).mean()
