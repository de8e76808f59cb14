"""CrossQ (Bhatt et al. 2024): SAC without target networks, made stable by batch renormalization in the critics.

The critics see the current (s, a) and next (s', a' ~ pi(s')) pairs in one joint forward pass, so their
batch statistics are those of the mixture of both distributions; the next-state values are then used
(detached) as the bootstrap target. The actor is updated every `policy_delay` critic steps against the
critics in evaluation mode (running statistics).

Built on TorchRL's `CrossQLoss` and `BatchRenorm1d`, used as they are but for one fix (no plain-torch copy: the
joint pass with batch statistics runs through `CrossQLoss`'s vmap over the twin critics). Checked against the paper:
- same: joint forward of (s, a) and (s', a'), twin critics with the min in the target and in the actor loss,
  no target networks, critics in eval mode for the actor loss, entropy-tuned temperature, policy delay.
- differences: `CrossQLoss` defaults to a smooth-l1 critic loss (we pass l2 by default, as the paper);
  it ignores prioritized-replay weights (so CrossQ accepts uniform Replay only here); the paper's Adam
  beta1 = 0.5 is set in the spec (`optim_spec.betas`); the paper's critics are 2048 wide with BRN
  warm-up 100k steps and momentum 0.99 (here `hid_layers` and `brn_warmup_steps` from the spec; TorchRL's
  momentum 0.01 is the same update written as 1 - 0.99); BRN's input layer normalizes [s, a] as in the
  authors' code (Dense -> activation -> BRN per hidden layer), with their epsilon 1e-3.
- fixed: TorchRL's `BatchRenorm1d` warm-up counter never stops (see `WarmupBatchRenorm1d`).
"""

import math
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.envs import EnvBase
from torchrl.modules import BatchRenorm1d, ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import CrossQLoss, ValueEstimators

from zoo.agent import Agent, loss_function, make_optimizer
from zoo.algos.off_policy import (
    StateActionMLP,
    check_net,
    count_step,
    loss_output,
    optimize,
    target_entropy,
    trained_params,
)
from zoo.envs import env_info
from zoo.memory import ReplayPhase, frames_per_batch, make_replay_buffer, store_transitions
from zoo.nets import ACTIVATIONS, build_mlp
from zoo.spec import AlgorithmSpec, Spec, SpecError, register_algorithm_spec, spec_field

NAMES = ("CrossQ",)
BRN_EPS = 1e-3  # the authors' and sb3-contrib's batch renorm epsilon (TorchRL's default is 1e-5)


@register_algorithm_spec(*NAMES, memories=("Replay",), nets=("MLPNet",), split_optims=True, critic_layers=True)
@dataclass
class CrossQAlgorithmSpec(AlgorithmSpec):
    """Hyperparameters of CrossQ."""

    training_frequency: int = spec_field(1, "frames collected between training phases (a multiple of num_envs)",
                                         low=1)
    training_iter: int = spec_field(1, "gradient steps per training phase", low=1)
    training_start_step: int = spec_field(5000, "frames of uniform random actions before learning starts", low=0)
    policy_delay: int = spec_field(3, "critic steps per actor and temperature step", low=1)
    target_entropy: float | str = spec_field("auto", "entropy the temperature is tuned toward; auto: -action_dim")
    alpha_init: float = spec_field(1.0, "initial temperature", low=0.0, low_open=True)
    fixed_alpha: bool = spec_field(False, "keep the temperature at alpha_init instead of tuning it")
    brn_momentum: float = spec_field(0.01, "batch renormalization running-statistics rate (paper: 1 - 0.99)",
                                     low=0.0, low_open=True, high=1.0)
    brn_warmup_steps: int = spec_field(100000, "critic steps before batch renorm corrects with running stats",
                                       low=0)


class WarmupBatchRenorm1d(BatchRenorm1d):
    """TorchRL's `BatchRenorm1d` with its step counter held at `warmup_steps`.

    TorchRL 0.14.1 calls the out-of-place `clamp_max` on the counter, so the non-smooth warm-up factor
    `steps // warmup_steps` keeps growing (2, 3, ... after 2x, 3x the warm-up) and scales the corrections
    r - 1 and d past `max_r` / `max_d`. The paper's factor is 1 after the warm-up."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.training:
            self.num_batches_tracked.copy_(self.num_batches_tracked.clamp(max=self.warmup_steps))  # vmap has no clamp_
        return out


def build_brn_critic(in_dim: int, hid_layers: list[int], activation: str, algo_spec: CrossQAlgorithmSpec) -> nn.Module:
    """[s, a] -> BRN -> (Linear -> activation -> BRN) per hidden layer -> Linear -> Q."""
    brn = {"momentum": algo_spec.brn_momentum, "warmup_steps": algo_spec.brn_warmup_steps, "eps": BRN_EPS}
    layers: list[nn.Module] = [WarmupBatchRenorm1d(in_dim, **brn)]
    for width in hid_layers:
        layers += [nn.Linear(in_dim, width), ACTIVATIONS[activation](), WarmupBatchRenorm1d(width, **brn)]
        in_dim = width
    return nn.Sequential(*layers, nn.Linear(in_dim, 1))


# ------------------------------------------------------------------------------------------------ update
@dataclass(kw_only=True)
class CrossQAgent(Agent):
    """Stores each batch, then `training_iter` replayed gradient steps through `CrossQLoss` (no targets)."""

    replay: ReplayPhase
    clip_grad_val: float | None = None

    def __post_init__(self):
        self.params = trained_params(self.loss)

    def update(self, data: TensorDictBase, frame: int) -> dict[str, torch.Tensor]:
        store_transitions(self.buffer, data)
        return self.replay.run(self.buffer, frame, self.gradient_step, self.set_lr)

    def gradient_step(self, batch: TensorDictBase) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Critics every step (`CrossQLoss.qvalue_loss`); critics, actor and temperature every `policy_delay`-th
        (`CrossQLoss.forward`, which writes `td_error`)."""
        if count_step(self, self.replay.policy_delay):
            out = self.loss(batch)
        else:
            loss_qvalue, metadata = self.loss.qvalue_loss(batch)
            out = loss_output(loss_qvalue=loss_qvalue)
            batch.set(self.loss.tensor_keys.priority, metadata["td_error"])
        return optimize(out, self.optimizers, self.params, self.clip_grad_val), batch["td_error"]


def build(spec: Spec, env: EnvBase) -> Agent:
    """Assemble CrossQ: tanh-Gaussian actor, twin batch-renormalized critics in `CrossQLoss`, no targets."""
    check_net(spec)
    algo_spec, net_spec = spec.agent.algorithm, spec.agent.net
    info = env_info(env)
    if info["discrete"]:
        raise SpecError("agent.algorithm.name", f"CrossQ needs continuous actions; {spec.env.name} is discrete")
    if spec.agent.memory.name != "Replay":
        raise SpecError("agent.memory.name", "CrossQ supports Replay only (TorchRL's CrossQLoss ignores importance "
                        "weights)")
    action_spec, obs_dim = info["action_spec"], math.prod(info["obs_shape"])
    low, high = action_spec.space.low, action_spec.space.high
    actor_net = nn.Sequential(build_mlp(obs_dim, 2 * info["action_dim"], net_spec), NormalParamExtractor())
    actor = ProbabilisticActor(TensorDictModule(actor_net, ["observation"], ["loc", "scale"]), in_keys=["loc", "scale"],
                               distribution_class=TanhNormal, distribution_kwargs={"low": low, "high": high},
                               spec=action_spec, return_log_prob=True)
    critic = build_brn_critic(obs_dim + info["action_dim"], net_spec.critic_hid_layers or net_spec.hid_layers,
                              net_spec.hid_layers_activation, algo_spec)
    qnet = ValueOperator(StateActionMLP(critic), in_keys=["observation", "action"])
    loss = CrossQLoss(actor, qnet, num_qvalue_nets=2, action_spec=action_spec,
                      loss_function=loss_function(net_spec),
                      alpha_init=algo_spec.alpha_init, fixed_alpha=algo_spec.fixed_alpha,
                      target_entropy=target_entropy(algo_spec, info))
    loss.make_value_estimator(ValueEstimators.TD0, gamma=algo_spec.gamma)
    actor_optim = net_spec.actor_optim_spec or net_spec.optim_spec
    optimizers = {"actor": make_optimizer(actor_net.parameters(), actor_optim),
                  "critic": make_optimizer(loss.qvalue_network_params.values(True, True),
                                           net_spec.critic_optim_spec or net_spec.optim_spec)}
    if not algo_spec.fixed_alpha:
        optimizers["alpha"] = make_optimizer([loss.log_alpha], actor_optim)
    return CrossQAgent(
        policy=actor, actor=actor, loss=loss, optimizers=optimizers, frames_per_batch=frames_per_batch(spec),
        max_frame=spec.env.max_frame, buffer=make_replay_buffer(spec.agent.memory),
        lr_scheduler_spec=net_spec.lr_scheduler_spec, init_random_frames=algo_spec.training_start_step,
        replay=ReplayPhase.from_spec(spec), clip_grad_val=net_spec.clip_grad_val,
    )
