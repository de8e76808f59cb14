"""PPO with the clipped surrogate objective (Schulman et al. 2017).

Each batch is `time_horizon` steps of every env (`[num_envs, T]`). GAE(lambda) runs once per batch on that
layout (as the paper, SB3 and CleanRL; TorchRL's sota script recomputes it every epoch), then
`training_epoch` passes over shuffled minibatches of `minibatch_size`. The clip eps follows `clip_eps_spec`
and the entropy bonus `entropy_coef_spec` on the frame clock; learning rates follow
`agent.net.lr_scheduler_spec`.

Built from TorchRL: `ProbabilisticActor`, `ValueOperator` (or `ActorValueOperator`), `GAE`, `ClipPPOLoss`.
Where TorchRL differs from the paper, and what we chose:
- advantage normalization (`normalize_advantage`) is per minibatch in `ClipPPOLoss`, as in SB3 / OpenAI
  baselines (the paper does not say); kept.
- `clip_value=True` in TorchRL fixes the value-clip range at construction; we refill it with the scheduled
  clip eps every batch, as SB3's `clip_range_vf` would with the same schedule.
- TorchRL's `l2` critic loss has no 1/2 factor; `val_loss_coef` absorbs it (SB3 likewise uses plain MSE).
- target-KL early stopping (`target_kl`, SB3's rule: stop when approx KL > 1.5 x target) is checked after
  each epoch on the epoch's mean KL, not after every minibatch: one host sync per epoch instead of one per
  gradient step.
"""

import math
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from torch import nn
from torch.nn import functional as F
from torchrl.envs import EnvBase
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import ValueEstimatorBase

from zoo.agent import Agent
from zoo.algos.actor_critic import (
    build_actor_critic,
    build_optimizers,
    loss_critic_type,
    make_advantage_module,
    optimizer_step,
)
from zoo.envs import env_info, learning_keys
from zoo.schedules import Schedule
from zoo.spec import AlgorithmSpec, ScheduleSpec, Spec, SpecError, register_algorithm_spec, spec_field

NAMES = ("PPO",)
TRAIN_KEYS = ("observation", "action", "action_log_prob", "advantage", "value_target", "state_value")


@register_algorithm_spec(*NAMES, memories=("OnPolicyBatchReplay", "OnPolicyReplay"), nets=("MLPNet", "ConvNet"),
                         shared=True, split_optims=True)
@dataclass
class PPOAlgorithmSpec(AlgorithmSpec):
    """Hyperparameters of PPO."""

    lam: float = spec_field(0.95, "GAE lambda", low=0.0, high=1.0)
    time_horizon: int = spec_field(128, "steps per env in each batch", low=1)
    minibatch_size: int = spec_field(256, "transitions per gradient step", low=1)
    training_epoch: int = spec_field(10, "passes over each batch", low=1)
    clip_eps_spec: ScheduleSpec = spec_field(ScheduleSpec(start_val=0.2), "policy ratio clip on the frame clock")
    clip_value: bool = spec_field(False, "clip value updates to the (scheduled) clip eps around the old value")
    val_loss_coef: float = spec_field(0.5, "weight of the value loss", low=0.0, low_open=True)
    entropy_coef_spec: ScheduleSpec = spec_field(ScheduleSpec(start_val=0.0), "entropy bonus on the frame clock")
    normalize_advantage: bool = spec_field(True, "standardize advantages in each minibatch")
    target_kl: float | None = spec_field(None, "stop the epochs once the approx KL exceeds 1.5 x this (None: off)",
                                         low=0.0, low_open=True)
    tanh_squash: bool = spec_field(False, "continuous actions: squash the Gaussian with tanh into the bounds")


def clip_ppo_loss(policy_net: nn.Module, value_net: nn.Module, batch: dict[str, torch.Tensor], clip_eps: float,
                  entropy_coef: float, val_loss_coef: float, normalize_advantage: bool, clip_value: bool,
                  huber: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped-surrogate + value + entropy loss of a Categorical policy; (loss, [critic, kl, clip frac, entropy]).

    Same maths as TorchRL's `ClipPPOLoss` (tests check they agree): advantages standardized per minibatch
    (unbiased std), ratio clipped to [1 - eps, 1 + eps], value loss = coef x (squared or Huber) error without a
    1/2 factor, clipped around the old value to +-eps when `clip_value`, kl_approx = mean(old - new log-prob).
    Written in plain torch because a gradient step on a 256-sample minibatch (forward, backward, both Adam
    steps) costs ~5.9 ms with `ClipPPOLoss` against ~3.1 ms with this function (2-core CPU, 64x64 MLPs): the
    TensorDict plumbing, not the maths. CartPole's loop to eval 475 went from 15.1 s to 11.9 s (tools/speed.py).
    """
    obs, advantage = batch["observation"], batch["advantage"].squeeze(-1)
    if normalize_advantage and advantage.numel() > 1:
        advantage = (advantage - advantage.mean()) / advantage.std().clamp_min(torch.finfo(torch.float).resolution)
    log_probs = policy_net(obs).log_softmax(-1)  # Categorical's maths without its argument checks (~2x cheaper)
    log_prob = log_probs.gather(-1, batch["action"].unsqueeze(-1)).squeeze(-1)
    log_weight = log_prob - batch["action_log_prob"]
    log_bounds = math.log1p(-clip_eps), math.log1p(clip_eps)
    log_weight_clip = log_weight.clamp(*log_bounds)
    loss_objective = -torch.min(log_weight.exp() * advantage, log_weight_clip.exp() * advantage).mean()
    entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
    value, target = value_net(obs).squeeze(-1), batch["value_target"].squeeze(-1)
    distance = F.smooth_l1_loss if huber else F.mse_loss
    loss_value = distance(value, target, reduction="none")
    if clip_value:
        old_value = batch["state_value"].squeeze(-1)
        clipped = old_value + (value - old_value).clamp(-clip_eps, clip_eps)
        loss_value = torch.maximum(loss_value, distance(clipped, target, reduction="none"))
    loss_critic = val_loss_coef * loss_value.mean()
    loss = loss_objective + loss_critic - entropy_coef * entropy
    with torch.no_grad():
        stats = torch.stack([loss_critic, (-log_weight).mean(), (log_weight_clip != log_weight).float().mean(),
                             entropy])
    return loss, stats


class GreedyAction(nn.Module):
    """logits -> argmax action: the deterministic eval policy without `ProbabilisticActor`'s distribution plumbing
    (~210 us against ~490 us per call for 10 eval envs on a 2-core CPU; an eval env step costs ~1.8 ms)."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(-1)


class SharedCategoricalPolicy(nn.Module):
    """obs -> (sampled action, its log-prob, V(obs)) through a shared trunk: the collector's policy, in plain torch.

    Stands for the `ActorValueOperator` with a Categorical `ProbabilisticActor` (same modules, same draws), whose
    TensorDict plumbing per module cost ~0.45 CPU-s per 1024-frame ppo_pong batch (cProfile): collection went
    from ~2.4 to ~1.9 CPU-s a batch, 1 thread."""

    def __init__(self, trunk: nn.Module, policy_head: nn.Module, value_head: nn.Module):
        super().__init__()
        self.trunk, self.policy_head, self.value_head = trunk, policy_head, value_head

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.trunk(observation)
        log_probs = self.policy_head(features).log_softmax(-1)
        flat = log_probs.reshape(-1, log_probs.shape[-1]).exp()
        action = torch.multinomial(flat, 1, True).reshape(log_probs.shape[:-1])  # as Categorical.sample
        return action, log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1), self.value_head(features)


@dataclass(kw_only=True)
class PPOAgent(Agent):
    """GAE on the batch, then epochs of clipped-objective minibatch steps."""

    algo_spec: PPOAlgorithmSpec
    advantage_module: ValueEstimatorBase
    params: list[nn.Parameter]
    fast_nets: tuple[nn.Module, nn.Module] | None = None  # (obs -> logits, obs -> value): clip_ppo_loss path
    trunk: nn.Module | None = None  # shared trunk (agent.net.shared): obs -> features that fast_nets read
    clip_grad_val: float | None = None

    def update(self, data: TensorDictBase, frame: int) -> dict[str, torch.Tensor]:
        spec = self.algo_spec
        lr = self.set_lr(frame)
        clip_eps, entropy_coef = self.schedules["clip_eps"](frame), self.schedules["entropy_coef"](frame)
        self.loss.clip_epsilon.fill_(clip_eps)
        self.loss.entropy_coeff.fill_(entropy_coef)
        if spec.clip_value:
            self.loss.clip_value.fill_(clip_eps)
        with torch.no_grad():
            if self.trunk is not None:  # the collector recorded V(obs_t); the estimator reads them, no value net
                data["next", "state_value"] = self.next_values(data)
            self.advantage_module(data)
        flat = data.select(*TRAIN_KEYS).reshape(-1)
        tensors = {key: flat[key] for key in TRAIN_KEYS} if self.fast_nets is not None else None
        totals, epochs = [], 0
        for _ in range(spec.training_epoch):
            epoch_stats = []
            for index in torch.randperm(flat.shape[0]).split(spec.minibatch_size):
                if tensors is not None:
                    minibatch = {key: value[index] for key, value in tensors.items()}
                    if self.trunk is not None:  # once for both heads; ClipPPOLoss runs a shared trunk twice
                        minibatch["observation"] = self.trunk(minibatch["observation"])
                    loss, stats = clip_ppo_loss(*self.fast_nets, minibatch,
                                                clip_eps, entropy_coef, spec.val_loss_coef, spec.normalize_advantage,
                                                spec.clip_value, self.loss.loss_critic_type == "smooth_l1")
                else:
                    out = self.loss(flat[index])
                    loss = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
                    stats = torch.stack([out["loss_critic"].detach(), out["kl_approx"], out["clip_fraction"],
                                         out["entropy"].detach()])
                optimizer_step(self.optimizers, loss, self.params, self.clip_grad_val)
                epoch_stats.append(torch.cat([loss.detach().unsqueeze(0), stats]))
            totals += epoch_stats
            epochs += 1
            self.num_updates += len(epoch_stats)
            if spec.target_kl is not None and torch.stack(epoch_stats)[:, 2].mean() > 1.5 * spec.target_kl:
                break
        loss, loss_critic, kl, clip_fraction, entropy = torch.stack(totals).mean(0)
        return {"loss": loss, "loss_critic": loss_critic, "kl_approx": kl, "clip_fraction": clip_fraction,
                "entropy": entropy, "epochs": torch.tensor(float(epochs)), "clip_eps": torch.tensor(clip_eps),
                "entropy_coef": torch.tensor(entropy_coef), "lr_factor": torch.tensor(lr)}

    def next_values(self, data: TensorDictBase) -> torch.Tensor:
        """V(next obs) `[num_envs, T, 1]`: the next step's recorded value, or the critic's on the true next
        observation after an env reset (done) and at the batch's end (as SB3's rollout buffer).

        Hand-written: TorchRL's GAE runs the critic on every obs and next obs (2 x 1024 Pong frames a batch)
        though the collector already computed V(obs); ppo_pong's update went from 6.7 to 5.9 CPU-s a batch."""
        value = data["state_value"]
        next_value = torch.cat([value[:, 1:], value[:, -1:]], 1)
        recompute = data["next", "done"].squeeze(-1).clone()
        recompute[:, -1] = True
        next_value[recompute] = self.fast_nets[1](self.trunk(data["next", "observation"][recompute]))
        return next_value


def build(spec: Spec, env: EnvBase) -> Agent:
    """Assemble PPO for `env` from the spec."""
    algo_spec, net_spec = spec.agent.algorithm, spec.agent.net
    frames_per_batch = algo_spec.time_horizon * spec.env.num_envs
    if algo_spec.minibatch_size > frames_per_batch:
        raise SpecError("agent.algorithm.minibatch_size", f"{algo_spec.minibatch_size} exceeds the batch of "
                        f"time_horizon x env.num_envs = {frames_per_batch} transitions")
    actor, critic, module = build_actor_critic(env, net_spec, tanh_squash=algo_spec.tanh_squash)
    info = env_info(env)
    # discrete actions take the plain-torch clip_ppo_loss (same parameters); continuous ones ClipPPOLoss.
    # Shared trunk (Atari): ppo_pong's update (GAE + 16 minibatches of 256, 1 thread) went from 13.2 to 9.0
    # CPU-s per 1024-frame batch, as ClipPPOLoss runs the conv trunk in the actor and again in the critic.
    fast_nets, trunk = None, None
    if info["discrete"] and net_spec.shared:
        trunk, fast_nets = actor.module[0].module, (actor.module[1].module, critic.module[1].module)
    elif info["discrete"]:
        fast_nets = (actor.module[0].module, critic.module)
    eval_actor = actor if fast_nets is None else TensorDictModule(
        nn.Sequential(trunk if trunk is not None else nn.Identity(), fast_nets[0], GreedyAction()), ["observation"],
        ["action"])
    clip_eps, entropy_coef = Schedule(algo_spec.clip_eps_spec), Schedule(algo_spec.entropy_coef_spec)
    loss = ClipPPOLoss(actor, critic, clip_epsilon=clip_eps(0), entropy_coeff=entropy_coef(0),
                       critic_coeff=algo_spec.val_loss_coef, loss_critic_type=loss_critic_type(net_spec),
                       normalize_advantage=algo_spec.normalize_advantage, clip_value=algo_spec.clip_value)
    policy = actor if trunk is None else TensorDictModule(  # also records state_value, for GAE
        SharedCategoricalPolicy(trunk, *fast_nets), ["observation"], ["action", "action_log_prob", "state_value"])
    return PPOAgent(
        policy=policy, actor=eval_actor, loss=loss,
        optimizers=build_optimizers(net_spec, actor, critic, module),
        frames_per_batch=frames_per_batch, max_frame=spec.env.max_frame,
        schedules={"clip_eps": clip_eps, "entropy_coef": entropy_coef}, lr_scheduler_spec=net_spec.lr_scheduler_spec,
        algo_spec=algo_spec, advantage_module=make_advantage_module(
            algo_spec.gamma, algo_spec.lam, critic if trunk is None else None, keys=learning_keys(env)),
        params=list(module.parameters()), fast_nets=fast_nets, trunk=trunk, clip_grad_val=net_spec.clip_grad_val,
    )
