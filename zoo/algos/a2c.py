"""A2C (Mnih et al. 2016, synchronous): actor-critic on short rollouts of many envs, one gradient step each.

Advantages come from GAE(lambda) (Schulman et al. 2016) when `lam` is set, else from n-step returns: every
step bootstraps from the critic's value at the end of its `num_step_returns`-step rollout (A3C's scheme, so n
runs from num_step_returns down to 1), which is TorchRL's TD(1) estimator on the `[num_envs, T]` batch.
With `off_policy_correction: vtrace` they come from V-trace instead (IMPALA, Espeholt et al. 2018): the n-step
returns with each step's importance ratio pi / mu clipped at 1, which corrects the policy lag of batches collected
by asynchronous workers (`meta.distributed`); on-policy it equals the n-step returns, hence `lam: null`.

Built from TorchRL: `ProbabilisticActor`, `ValueOperator` (or `ActorValueOperator` for a shared trunk),
`GAE` / `TD1Estimator`, `A2CLoss`. With `agent.net.type: RecurrentNet` the actor and critic both act in the
collector, carrying their hidden states and recording V(obs) (the estimators read it: `next_values`), and the
loss runs over the batch's rows as sequences from their stored hidden states (`agent.net.seq_len`), TorchRL's
recurrent mode; otherwise the collector acts through `PlainPolicy` (the actor's draw in plain torch,
zoo/algos/actor_critic.py). Differences from the paper: TorchRL's `l2` critic loss is
`(V - target)^2` without the 1/2 (we keep it; `val_loss_coef` absorbs the factor), and its `smooth_l1`
default is replaced by the spec's `agent.net.loss_spec` (MSE by default, as the paper).
"""

from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictSequential
from torch import nn
from torchrl.envs import EnvBase
from torchrl.modules import set_recurrent_mode
from torchrl.objectives import A2CLoss, distance_loss
from torchrl.objectives.value import ValueEstimatorBase

from zoo.agent import Agent, loss_function
from zoo.algos.actor_critic import (
    OFF_POLICY_CORRECTIONS,
    PlainNets,
    PlainPolicy,
    ReturnNormalizer,
    build_actor_critic,
    build_optimizers,
    check_off_policy_correction,
    check_sequences,
    make_advantage_module,
    make_vtrace,
    next_values,
    optimizer_step,
    sequences,
)
from zoo.distributions import PDTYPE_CHOICES
from zoo.envs import env_info, learning_keys
from zoo.schedules import Schedule
from zoo.spec import AlgorithmSpec, ScheduleSpec, Spec, SpecError, register_algorithm_spec, spec_field

NAMES = ("A2C",)


@register_algorithm_spec(*NAMES, memories=("OnPolicyBatchReplay", "OnPolicyReplay"),
                         nets=("MLPNet", "ConvNet", "RecurrentNet", "StatelessRecurrentNet"), shared=True,
                         split_optims=True, one_hot_actions=True, multi_actions=True, head_gains=True, distributed=True)
@dataclass
class A2CAlgorithmSpec(AlgorithmSpec):
    """Hyperparameters of A2C."""

    lam: float | None = spec_field(0.95, "GAE lambda (null: n-step returns)", low=0.0, high=1.0)
    num_step_returns: int | None = spec_field(None, "n of n-step returns, also the rollout length (needs lam: null)",
                                              low=1)
    time_horizon: int | None = spec_field(None, "steps per env per update with GAE (default 5)", low=1)
    val_loss_coef: float = spec_field(0.5, "weight of the value loss", low=0.0, low_open=True)
    entropy_coef_spec: ScheduleSpec = spec_field(ScheduleSpec(start_val=0.01), "entropy bonus on the frame clock")
    normalize_advantage: bool = spec_field(False, "standardize advantages over each batch")
    normalize_v_targets: bool = spec_field(False, "value loss on predictions and targets divided by a running std "
                                           "of the targets (SLM-Lab's; the statistics are checkpointed)")
    action_pdtype: str = spec_field("default", "action distribution, SLM-Lab's names (default: Categorical, Normal, "
                                    "MultiCategorical or Bernoulli by action space; see zoo/distributions.py)",
                                    choices=PDTYPE_CHOICES)
    tanh_squash: bool = spec_field(False, "continuous actions: squash the Gaussian with tanh into the bounds "
                                   "(the same as action_pdtype: TanhNormal)")
    off_policy_correction: str = spec_field("none", "vtrace: advantages and value targets by V-trace (IMPALA), "
                                            "correcting the policy lag of meta.distributed's asynchronous batches; "
                                            "n-step (needs lam: null); none: GAE or n-step returns as collected",
                                            choices=OFF_POLICY_CORRECTIONS)


class NormalizedValueA2CLoss(A2CLoss):
    """TorchRL's `A2CLoss` whose value loss compares predictions and targets divided by the running std of the
    targets (`ReturnNormalizer`, a submodule: its statistics are in the loss's state dict). Non-functional (the
    critic runs as the module itself), which `A2CLoss` allows and zoo's A2C otherwise leaves at TorchRL's default."""

    def __init__(self, *args, return_normalizer: ReturnNormalizer, **kwargs):
        super().__init__(*args, functional=False, **kwargs)
        self.return_normalizer = return_normalizer

    def loss_critic(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, None]:
        keys, normalize = self.tensor_keys, self.return_normalizer
        value = self.critic_network(tensordict.select(*self.critic_network.in_keys, strict=False)).get(keys.value)
        loss = distance_loss(normalize(tensordict.get(keys.value_target)), normalize(value), self.loss_critic_type)
        return self.critic_coeff * loss, None


def rollout_length(algo_spec: A2CAlgorithmSpec) -> int:
    """Steps per env per update; rejects contradictory return settings."""
    if algo_spec.lam is not None and algo_spec.num_step_returns is not None:
        raise SpecError("agent.algorithm.num_step_returns", "set either lam (GAE) or num_step_returns, not both")
    if algo_spec.off_policy_correction == "vtrace" and algo_spec.lam is not None:
        raise SpecError("agent.algorithm.lam", f"{algo_spec.lam}: off_policy_correction vtrace cuts its traces by the "
                        "clipped importance ratio, not by GAE's lambda; allowed: null (with num_step_returns)")
    if algo_spec.lam is None:
        n = algo_spec.num_step_returns
        if n is None:
            raise SpecError("agent.algorithm.num_step_returns", "required when lam is null (n-step returns)")
        if algo_spec.time_horizon not in (None, n):
            raise SpecError("agent.algorithm.time_horizon", f"must equal num_step_returns ({n}) or be omitted")
        return n
    return algo_spec.time_horizon or 5


@dataclass(kw_only=True)
class A2CAgent(Agent):
    """Advantages on the `[num_envs, T]` batch, then one gradient step on actor and critic."""

    algo_spec: A2CAlgorithmSpec
    advantage_module: ValueEstimatorBase
    params: list[nn.Parameter]
    clip_grad_val: float | None = None
    nets: PlainNets | None = None  # RecurrentNet: the torsos, for the recorded values and training sequences
    seq_len: int | None = None
    clip_per_net: bool = False  # clip_grad_val bounds actor and critic apart (agent.net.clip_grad_per_net)

    def update(self, data: TensorDictBase, frame: int) -> dict[str, torch.Tensor]:
        lr = self.set_lr(frame)
        entropy_coef = self.schedules["entropy_coef"](frame)
        self.loss.entropy_coeff.fill_(entropy_coef)
        with torch.no_grad():
            if self.nets is not None:
                data["next", "state_value"] = next_values(data, self.nets)
            self.advantage_module(data)
            if self.algo_spec.normalize_v_targets:
                self.loss.return_normalizer.update(data["value_target"])
            if self.algo_spec.normalize_advantage:
                advantage = data["advantage"]
                data["advantage"] = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
        if self.nets is None:
            out = self.loss(data)
        else:  # sequences from their stored hidden states, through TorchRL's recurrent mode
            with set_recurrent_mode(True):
                out = self.loss(sequences(data, self.nets, self.seq_len))
        loss = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
        optimizer_step(self.optimizers, loss, self.params, self.clip_grad_val, self.clip_per_net)
        self.num_updates += 1
        return {"loss": loss.detach(), "loss_critic": out["loss_critic"].detach(), "entropy": out["entropy"],
                "entropy_coef": torch.tensor(entropy_coef), "lr_factor": torch.tensor(lr)}


def build(spec: Spec, env: EnvBase) -> Agent:
    """Assemble A2C for `env` from the spec."""
    algo_spec, net_spec = spec.agent.algorithm, spec.agent.net
    horizon = rollout_length(algo_spec)
    if algo_spec.normalize_advantage and horizon * spec.env.num_envs < 2:
        raise SpecError("agent.algorithm.normalize_advantage", "standardizes the advantages of a batch, which needs "
                        f"time_horizon x env.num_envs >= 2 transitions (here {horizon * spec.env.num_envs}); "
                        "allowed: false, or a longer time_horizon")
    recurrent = net_spec.type == "RecurrentNet"
    check_off_policy_correction(algo_spec.off_policy_correction, net_spec)
    if recurrent:
        check_sequences(net_spec, horizon, horizon)
    actor, critic, module, nets = build_actor_critic(env, net_spec, pdtype=algo_spec.action_pdtype,
                                                     tanh_squash=algo_spec.tanh_squash)
    entropy_coef = Schedule(algo_spec.entropy_coef_spec)
    advantage_module = (make_vtrace(algo_spec.gamma, actor, critic, keys=learning_keys(env))
                        if algo_spec.off_policy_correction == "vtrace" else
                        make_advantage_module(algo_spec.gamma, algo_spec.lam, None if recurrent else critic,
                                              keys=learning_keys(env)))
    # entropy_coeff=1.0 only switches the term on (a zero coefficient would drop it); update() sets the value
    settings = dict(entropy_coeff=1.0, critic_coeff=algo_spec.val_loss_coef, loss_critic_type=loss_function(net_spec))
    loss = (NormalizedValueA2CLoss(actor, critic, return_normalizer=ReturnNormalizer(), **settings)
            if algo_spec.normalize_v_targets else A2CLoss(actor, critic, **settings))
    # a recurrent actor and critic both act in the collector (each carries its hidden state), recording V(obs)
    policy = ((module if net_spec.shared else TensorDictSequential(actor, critic)) if recurrent else
              PlainPolicy(actor, nets, one_hot=env_info(env)["one_hot"]))
    return A2CAgent(
        policy=policy, actor=actor, loss=loss, optimizers=build_optimizers(net_spec, actor, critic, module),
        frames_per_batch=horizon * spec.env.num_envs, max_frame=spec.env.max_frame,
        schedules={"entropy_coef": entropy_coef}, lr_scheduler_spec=net_spec.lr_scheduler_spec,
        algo_spec=algo_spec, advantage_module=advantage_module,
        params=list(module.parameters()), clip_grad_val=net_spec.clip_grad_val, nets=nets if recurrent else None,
        seq_len=net_spec.seq_len, clip_per_net=net_spec.clip_grad_per_net,
    )
