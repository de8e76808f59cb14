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
- SLM-Lab's value-loss switches: `normalize_v_targets` (running std of the targets, updated once per batch where
  SLM-Lab updates per minibatch: the same statistics up to how often each target is counted), `symlog`;
  `clip_value` is SLM-Lab's `clip_vloss` (CleanRL's clipped value loss, around the old value).
- `agent.net.type: RecurrentNet` (an LSTM / GRU torso, zoo/nets.py): TorchRL's modules act in the collector,
  carrying each env's hidden state and recording V(obs) for GAE; the batch's rows are cut into sequences of
  `agent.net.seq_len` steps (whole rows by default), each trained from the hidden state stored at its first step
  (TorchRL's recurrent mode, split at episode starts), and minibatches hold `minibatch_size / seq_len` of them.
  SB3's RecurrentPPO does the same; SLM-Lab's RecurrentNet instead re-reads a window of the last seq_len frames.
- `off_policy_correction: vtrace` (IMPALA-style PPO, for the asynchronous batches of `meta.distributed`): V-trace
  advantages and value targets replace GAE (clipped importance ratios learner / behaviour policy, traces cut at
  c = 1, so `lam` is unused), and the clipped ratio is taken against the learner's policy at the start of the
  update instead of the behaviour policy (decoupled PPO, Hilton et al. 2021; RLlib's APPO does the same): the
  behaviour's lag is corrected once, by V-trace, and the clip still bounds how far the epochs move the policy.
- target-KL early stopping (`target_kl`, SB3's rule: stop when approx KL > 1.5 x target) is checked after
  each epoch on the epoch's mean KL, not after every minibatch: one host sync per epoch instead of one per
  gradient step.
"""

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torch.nn import functional as F
from torchrl.envs import EnvBase
from torchrl.modules import ProbabilisticActor
from torchrl.objectives import ClipPPOLoss, ValueEstimators
from torchrl.objectives.value import ValueEstimatorBase

from zoo.agent import Agent, loss_function, regression
from zoo.algos.actor_critic import (
    OFF_POLICY_CORRECTIONS,
    TARGET_LOG_PROB,
    PercentileNormalizer,
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
    symlog,
)
from zoo.distributions import PDTYPE_CHOICES
from zoo.envs import env_info, learning_keys
from zoo.nets import HALF_LOG_2PI, normal_log_prob, tanh_normal_log_prob
from zoo.schedules import Schedule
from zoo.spec import AlgorithmSpec, ScheduleSpec, Spec, SpecError, check_unused, register_algorithm_spec, spec_field

NAMES = ("PPO",)
TRAIN_KEYS = ("observation", "action", "action_log_prob", "advantage", "value_target", "state_value")


@register_algorithm_spec(*NAMES, memories=("OnPolicyBatchReplay", "OnPolicyReplay"),
                         nets=("MLPNet", "ConvNet", "RecurrentNet", "StatelessRecurrentNet"), shared=True,
                         split_optims=True, one_hot_actions=True, multi_actions=True, head_gains=True, distributed=True)
@dataclass
class PPOAlgorithmSpec(AlgorithmSpec):
    """Hyperparameters of PPO."""

    lam: float = spec_field(0.95, "GAE lambda (unused with off_policy_correction vtrace)", low=0.0, high=1.0)
    time_horizon: int = spec_field(128, "steps per env in each batch", low=1)
    minibatch_size: int = spec_field(256, "transitions per gradient step", low=1)
    training_epoch: int = spec_field(10, "passes over each batch", low=1)
    clip_eps_spec: ScheduleSpec = spec_field(ScheduleSpec(start_val=0.2), "policy ratio clip on the frame clock")
    clip_value: bool = spec_field(False, "clip value updates to the (scheduled) clip eps around the old value")
    val_loss_coef: float = spec_field(0.5, "weight of the value loss", low=0.0, low_open=True)
    entropy_coef_spec: ScheduleSpec = spec_field(ScheduleSpec(start_val=0.0), "entropy bonus on the frame clock")
    normalize_advantage: bool = spec_field(True, "normalize advantages in each minibatch (see advantage_normalizer)")
    advantage_normalizer: str = spec_field("standardize", "how normalize_advantage normalizes: standardize (mean 0, "
                                           "std 1) or percentile (divide by max(1, P95 - P5) tracked by an EMA, "
                                           "DreamerV3; SLM-Lab's normalize_advantages)",
                                           choices=("standardize", "percentile"))
    normalize_v_targets: bool = spec_field(False, "value loss on predictions and targets divided by a running std "
                                           "of the targets (SLM-Lab's; the statistics are checkpointed)")
    symlog: bool = spec_field(False, "value loss on symlog-compressed predictions and targets (DreamerV3)")
    target_kl: float | None = spec_field(None, "stop the epochs once the approx KL exceeds 1.5 x this (None: off)",
                                         low=0.0, low_open=True)
    action_pdtype: str = spec_field("default", "action distribution, SLM-Lab's names (default: Categorical, Normal, "
                                    "MultiCategorical or Bernoulli by action space; see zoo/distributions.py)",
                                    choices=PDTYPE_CHOICES)
    tanh_squash: bool = spec_field(False, "continuous actions: squash the Gaussian with tanh into the bounds "
                                   "(the same as action_pdtype: TanhNormal)")
    off_policy_correction: str = spec_field("none", "vtrace: V-trace advantages and value targets (IMPALA) and the "
                                            "ratio clipped against the learner's policy at the update's start, "
                                            "correcting the policy lag of meta.distributed's asynchronous batches; "
                                            "none: GAE on the batch as collected", choices=OFF_POLICY_CORRECTIONS)


def log_prob_and_entropy(nets: PlainNets, features: torch.Tensor,
                         action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(action | features) and the policy's entropy per sample, as TorchRL's distributions compute them.

    By hand for the common three: Categorical from logits; Normal from (loc, scale); TanhNormal squashed into
    [low, high], whose log-prob inverts the squash (clamped as TorchRL's safe atanh) and subtracts the
    log-Jacobian, and whose entropy has no closed form: one reparameterized sample's -log-prob, as `ClipPPOLoss`
    estimates it. The other `action_pdtype`s build their torch distribution (`PlainNets.dist`), still without
    the TensorDict plumbing.
    """
    if nets.distribution == "Categorical":
        log_probs = nets.policy(features).log_softmax(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        if action.shape == log_probs.shape:  # one-hot actions
            return (log_probs * action).sum(-1), entropy
        return log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1), entropy
    if nets.distribution not in ("Normal", "TanhNormal"):
        dist = nets.dist(features)
        return dist.log_prob(action), dist.entropy()
    loc, scale = nets.policy(features)
    if nets.distribution == "Normal":
        return normal_log_prob(action, loc, scale).sum(-1), (0.5 + HALF_LOG_2PI + scale.log()).sum(-1)
    mid, half = (nets.high + nets.low) / 2, (nets.high - nets.low) / 2
    lim = 1.0 - torch.finfo(action.dtype).resolution
    u = ((action - mid) / half).clamp(-lim, lim).atanh()
    sample = loc + scale * torch.randn_like(loc)
    log_prob, sample_log_prob = (tanh_normal_log_prob(x, loc, scale, half) for x in (u, sample))
    return log_prob, -sample_log_prob


class PPOLoss(ClipPPOLoss):
    """TorchRL's `ClipPPOLoss` with its forward in plain torch: the clipped surrogate, value and entropy terms.

    Same inputs, outputs and settings as `ClipPPOLoss` (TensorDict in; `loss_objective`, `loss_critic`,
    `loss_entropy`, `entropy`, `kl_approx`, `clip_fraction` out; `clip_epsilon` / `entropy_coeff` buffers,
    `set_keys`, `make_value_estimator`; advantages computed by its value estimator when the input has none),
    and the same maths (tests/unit/test_policy_gradient.py keeps `ClipPPOLoss.forward` as the oracle):
    advantages standardized per minibatch (unbiased std), ratio clipped to [1 - eps, 1 + eps], value loss =
    coef x (squared or Huber) error without a 1/2 factor, clipped around the old value when `clip_value`,
    kl_approx = mean(old - new log-prob).

    Why not `ClipPPOLoss.forward`: it runs the actor through `ProbabilisticActor` (a distribution object, key
    plumbing, a TensorDict clone per call) and a shared trunk twice, once per head; here the networks run as
    plain modules on the same parameters (`PlainNets`), the trunk once, at about half the cost of a minibatch
    step, which is much of PPO's update on CPU.
    """

    def __init__(self, actor: ProbabilisticActor, critic: TensorDictModule, nets: PlainNets, *, symlog: bool = False,
                 return_normalizer: ReturnNormalizer | None = None, percentile: PercentileNormalizer | None = None,
                 **kwargs):
        super().__init__(actor, critic, functional=False, **kwargs)
        self.__dict__["nets"] = nets  # the actor's and critic's own modules: not registered a second time
        self.symlog = symlog
        self.return_normalizer, self.percentile = return_normalizer, percentile  # their statistics: state_dict

    def value_space(self, values: torch.Tensor) -> torch.Tensor:
        """Values as the value loss compares them: symlog-compressed (`symlog`), then divided by the running std
        of the targets (`return_normalizer`; `PPOAgent.update` feeds it each batch's targets, symlog-compressed
        when `symlog`). Identity by default, as in `ClipPPOLoss`."""
        values = symlog(values) if self.symlog else values
        return self.return_normalizer(values) if self.return_normalizer is not None else values

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        keys, nets = self.tensor_keys, self.nets
        advantage = tensordict.get(keys.advantage, None)
        if advantage is None:
            with torch.no_grad():
                tensordict = self.value_estimator(tensordict.copy())
            advantage = tensordict.get(keys.advantage)
        advantage = advantage.squeeze(-1)
        if self.normalize_advantage and advantage.numel() > 1:
            if self.percentile is not None:
                advantage = self.percentile(advantage)
            else:
                std = advantage.std().clamp_min(torch.finfo(advantage.dtype).resolution)
                advantage = (advantage - advantage.mean()) / std
        features, value_features = nets.features(tensordict)
        log_prob, entropy = log_prob_and_entropy(nets, features, tensordict.get(keys.action))
        log_weight = log_prob - tensordict.get(keys.sample_log_prob).reshape(log_prob.shape)
        clip_eps = self.clip_epsilon
        log_weight_clip = log_weight.clamp(torch.log1p(-clip_eps), torch.log1p(clip_eps))
        gain = torch.min(log_weight.exp() * advantage, log_weight_clip.exp() * advantage)
        value = self.value_space(nets.value(value_features).squeeze(-1))
        target = self.value_space(tensordict.get(keys.value_target).squeeze(-1))
        huber = self.loss_critic_type == "smooth_l1"
        loss_value = regression(value, target, huber)
        if self.clip_value is not None:
            old_value = self.value_space(tensordict.get(keys.value).squeeze(-1))
            clipped = old_value + (value - old_value).clamp(-self.clip_value, self.clip_value)
            loss_value = torch.maximum(loss_value, regression(clipped, target, huber))
        with torch.no_grad():
            kl_approx, clip_fraction = (-log_weight).mean(), (log_weight_clip != log_weight).float().mean()
        return TensorDict({
            "loss_objective": -gain.mean(), "loss_critic": self.critic_coeff * loss_value.mean(),
            "loss_entropy": -self.entropy_coeff * entropy.mean(), "entropy": entropy.detach().mean(),
            "kl_approx": kl_approx, "clip_fraction": clip_fraction})


class GreedyAction(nn.Module):
    """logits -> argmax action (integer, or one-hot): the deterministic eval policy without `ProbabilisticActor`'s
    distribution plumbing (evaluation steps every eval env once per step, so the actor's per-call cost adds up)."""

    def __init__(self, one_hot: bool = False):
        super().__init__()
        self.one_hot = one_hot

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        action = logits.argmax(-1)
        return F.one_hot(action, logits.shape[-1]) if self.one_hot else action


@dataclass(kw_only=True)
class PPOAgent(Agent):
    """GAE on the batch, then epochs of clipped-objective minibatch steps."""

    algo_spec: PPOAlgorithmSpec
    advantage_module: ValueEstimatorBase
    params: list[nn.Parameter]
    recorded_values: bool = False  # the collector's policy records V(obs) (shared trunk, RecurrentNet): GAE reuses them
    clip_grad_val: float | None = None
    seq_len: int | None = None  # RecurrentNet: training sequence length (None: whole batch rows)
    clip_per_net: bool = False  # clip_grad_val bounds actor and critic apart (agent.net.clip_grad_per_net)

    def update(self, data: TensorDictBase, frame: int) -> dict[str, torch.Tensor]:
        spec, loss_module = self.algo_spec, self.loss
        lr = self.set_lr(frame)
        clip_eps, entropy_coef = self.schedules["clip_eps"](frame), self.schedules["entropy_coef"](frame)
        loss_module.clip_epsilon.fill_(clip_eps)
        loss_module.entropy_coeff.fill_(entropy_coef)
        if spec.clip_value:
            loss_module.clip_value.fill_(clip_eps)
        with torch.no_grad():
            if self.recorded_values:
                data["next", "state_value"] = next_values(data, loss_module.nets)
            self.advantage_module(data)
            if spec.off_policy_correction == "vtrace":  # the ratio's reference: the learner's policy (proximal)
                data["action_log_prob"] = data[TARGET_LOG_PROB]
            if loss_module.return_normalizer is not None:
                target = data["value_target"]
                loss_module.return_normalizer.update(symlog(target) if loss_module.symlog else target)
        nets = loss_module.nets
        if nets.recurrent is None:
            flat, rows = data.select(*TRAIN_KEYS).reshape(-1), spec.minibatch_size
        else:  # whole sequences per minibatch, each from its stored hidden state
            flat = sequences(data.select(*TRAIN_KEYS, *nets.feature_in_keys), nets, self.seq_len)
            rows = spec.minibatch_size // flat.shape[1]
        totals, epochs = [], 0
        for _ in range(spec.training_epoch):
            epoch_stats = []
            for index in torch.randperm(flat.shape[0]).split(rows):
                out = loss_module(flat[index])
                loss = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
                optimizer_step(self.optimizers, loss, self.params, self.clip_grad_val, self.clip_per_net)
                epoch_stats.append(torch.stack([loss.detach(), out["loss_critic"].detach(), out["kl_approx"],
                                                out["clip_fraction"], out["entropy"]]))
            totals += epoch_stats
            epochs += 1
            self.num_updates += len(epoch_stats)
            if spec.target_kl is not None and torch.stack(epoch_stats)[:, 2].mean() > 1.5 * spec.target_kl:
                break
        loss, loss_critic, kl, clip_fraction, entropy = torch.stack(totals).mean(0)
        return {"loss": loss, "loss_critic": loss_critic, "kl_approx": kl, "clip_fraction": clip_fraction,
                "entropy": entropy, "epochs": torch.tensor(float(epochs)), "clip_eps": torch.tensor(clip_eps),
                "entropy_coef": torch.tensor(entropy_coef), "lr_factor": torch.tensor(lr)}


def build(spec: Spec, env: EnvBase) -> Agent:
    """Assemble PPO for `env` from the spec."""
    algo_spec, net_spec = spec.agent.algorithm, spec.agent.net
    frames_per_batch = algo_spec.time_horizon * spec.env.num_envs
    if algo_spec.minibatch_size > frames_per_batch:
        raise SpecError("agent.algorithm.minibatch_size", f"{algo_spec.minibatch_size} exceeds the batch of "
                        f"time_horizon x env.num_envs = {frames_per_batch} transitions")
    if algo_spec.advantage_normalizer == "percentile" and not algo_spec.normalize_advantage:
        raise SpecError("agent.algorithm.advantage_normalizer", "percentile needs normalize_advantage: true")
    vtrace = algo_spec.off_policy_correction == "vtrace"
    if vtrace:
        check_unused(algo_spec, (), "agent.algorithm", "with off_policy_correction vtrace (its traces are cut by the "
                     "clipped importance ratio)", ("lam",))
    check_off_policy_correction(algo_spec.off_policy_correction, net_spec)
    recurrent = net_spec.type == "RecurrentNet"
    if recurrent:
        check_sequences(net_spec, algo_spec.time_horizon, algo_spec.minibatch_size)
    actor, critic, module, nets = build_actor_critic(env, net_spec, pdtype=algo_spec.action_pdtype,
                                                  tanh_squash=algo_spec.tanh_squash)
    clip_eps, entropy_coef = Schedule(algo_spec.clip_eps_spec), Schedule(algo_spec.entropy_coef_spec)
    loss = PPOLoss(actor, critic, nets, clip_epsilon=clip_eps(0), entropy_coeff=entropy_coef(0),
                   critic_coeff=algo_spec.val_loss_coef, loss_critic_type=loss_function(net_spec),
                   normalize_advantage=algo_spec.normalize_advantage, clip_value=algo_spec.clip_value,
                   symlog=algo_spec.symlog,
                   return_normalizer=ReturnNormalizer() if algo_spec.normalize_v_targets else None,
                   percentile=PercentileNormalizer() if algo_spec.advantage_normalizer == "percentile" else None)
    keys = learning_keys(env)
    loss.make_value_estimator(ValueEstimators.GAE, gamma=algo_spec.gamma, lmbda=algo_spec.lam)
    loss.value_estimator.set_keys(done=keys[0], terminated=keys[1])
    discrete, shared = nets.distribution == "Categorical", net_spec.shared
    recorded = shared or recurrent
    one_hot = env_info(env)["one_hot"]
    eval_actor = actor
    if recurrent:  # TorchRL's modules act (they carry the hidden states) and record V(obs), for GAE (next_values)
        policy = module if shared else TensorDictSequential(actor, critic)
    else:
        if discrete:  # argmax of the logits, without the distribution plumbing
            eval_actor = TensorDictModule(nn.Sequential(nets.trunk, nets.policy, GreedyAction(one_hot)),
                                          ["observation"], ["action"])
        # plain-torch draws in the collector; with a shared trunk it also records V(obs), for GAE (next_values)
        policy = PlainPolicy(actor, nets, one_hot=one_hot, record_value=shared)
    if vtrace:
        advantage_module = make_vtrace(algo_spec.gamma, actor, critic, keys=keys)
    elif recorded:  # GAE over the values the collector recorded
        advantage_module = make_advantage_module(algo_spec.gamma, algo_spec.lam, None, keys=keys)
    else:
        advantage_module = loss.value_estimator
    return PPOAgent(
        policy=policy, actor=eval_actor, loss=loss,
        optimizers=build_optimizers(net_spec, actor, critic, module),
        frames_per_batch=frames_per_batch, max_frame=spec.env.max_frame,
        schedules={"clip_eps": clip_eps, "entropy_coef": entropy_coef}, lr_scheduler_spec=net_spec.lr_scheduler_spec,
        algo_spec=algo_spec, advantage_module=advantage_module,
        params=list(module.parameters()), recorded_values=recorded and not vtrace,
        clip_grad_val=net_spec.clip_grad_val, seq_len=net_spec.seq_len,
        clip_per_net=net_spec.clip_grad_per_net,
    )
