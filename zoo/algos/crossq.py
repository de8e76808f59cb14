"""CrossQ (Bhatt et al. 2024): SAC without target networks, made stable by batch renormalization in the critics.

Discrete action spaces (as SLM-Lab runs CrossQ on CartPole, LunarLander): `DiscreteCrossQLoss` below, twin
state -> Q(s, .) critics over a Categorical policy, with SLM-Lab's target (the mean of the twin critics' next
values, not their min); with a `ConvNet` (Atari) actor and critics each get a conv torso (the critics' BRN
layers follow it), and the replay stores each frame once (`FrameStackReplay`).

The critics see the current (s, a) and next (s', a' ~ pi(s')) pairs in one joint forward pass, so their
batch statistics are those of the mixture of both distributions; the next-state values are then used
(detached) as the bootstrap target. The actor is updated every `policy_delay` critic steps against the
critics in evaluation mode (running statistics).

Built on TorchRL's `CrossQLoss` and `BatchRenorm1d`: `FastCrossQLoss` is a `CrossQLoss` whose forward runs the same
maths in plain torch (TorchRL's forward is its test oracle). Checked against the paper:
- same: joint forward of (s, a) and (s', a'), twin critics with the min in the target and in the actor loss,
  no target networks, critics in eval mode for the actor loss, entropy-tuned temperature, policy delay.
- differences: `CrossQLoss` defaults to a smooth-l1 critic loss (we pass l2 by default, as the paper);
  TorchRL's ignores prioritized-replay weights (CrossQ accepts uniform Replay only here); the paper's Adam
  beta1 = 0.5 is set in the spec (`optim_spec.betas`); the paper's critics are 2048 wide with BRN
  warm-up 100k steps and momentum 0.99 (here `hid_layers` and `brn_warmup_steps` from the spec; TorchRL's
  momentum 0.01 is the same update written as 1 - 0.99); BRN's input layer normalizes [s, a] as in the
  authors' code (Dense -> activation -> BRN per hidden layer), with their epsilon 1e-3.
- fixed: TorchRL's `BatchRenorm1d` warm-up counter never stops (see `WarmupBatchRenorm1d`).
"""

import dataclasses
import math
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import NormalParamExtractor, TensorDictModule
from tensordict.utils import NestedKey
from torch import nn
from torch.distributions import Categorical
from torchrl.envs import EnvBase
from torchrl.modules import BatchRenorm1d, ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import CrossQLoss, LossModule, ValueEstimators

from zoo.agent import Agent, loss_function, make_optimizer, regression, weighted_mean
from zoo.algos.actor_critic import PlainNets, PlainPolicy
from zoo.algos.off_policy import (
    StateActionMLP,
    check_net,
    count_step,
    loss_output,
    optimize,
    target_entropy,
    trained_params,
    transition_tensors,
)
from zoo.envs import env_info, learning_keys
from zoo.memory import ReplayPhase, frames_per_batch, make_replay_buffer, store_transitions
from zoo.nets import ACTIVATIONS, ConvTorso, build_mlp, build_q_net, tanh_normal_log_prob
from zoo.spec import AlgorithmSpec, Spec, SpecError, register_algorithm_spec, spec_field

NAMES = ("CrossQ",)
BRN_EPS = 1e-3  # the authors' and sb3-contrib's batch renorm epsilon (TorchRL's default is 1e-5)


@register_algorithm_spec(*NAMES, memories=("Replay",), nets=("MLPNet", "ConvNet"), split_optims=True,
                         critic_layers=True)
@dataclass
class CrossQAlgorithmSpec(AlgorithmSpec):
    """Hyperparameters of CrossQ."""

    training_frequency: int = spec_field(1, "frames collected between training phases (a multiple of num_envs)",
                                         low=1)
    training_iter: int = spec_field(1, "gradient steps per training phase", low=1)
    training_start_step: int = spec_field(5000, "frames of uniform random actions before learning starts", low=0)
    policy_delay: int = spec_field(3, "critic steps per actor and temperature step", low=1)
    target_entropy: float | str = spec_field("auto", "entropy the temperature is tuned toward; auto: -action_dim "
                                             "(discrete: 0.98 log n)")
    alpha_init: float = spec_field(1.0, "initial temperature", low=0.0, low_open=True)
    fixed_alpha: bool = spec_field(False, "keep the temperature at alpha_init instead of tuning it")
    alpha_lr: float | None = spec_field(None, "learning rate of the temperature (None: the actor's)", low=0.0,
                                        low_open=True)
    log_alpha_min: float | None = spec_field(None, "clamp log(temperature) from below after each temperature step "
                                             "(SLM-Lab uses -5; None: no clamp)")
    log_alpha_max: float | None = spec_field(None, "clamp log(temperature) from above after each temperature step "
                                             "(SLM-Lab uses 2; None: no clamp)")
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


def build_brn_critic(in_dim: int, hid_layers: list[int], activation: str, algo_spec: CrossQAlgorithmSpec,
                     out_dim: int = 1, input_norm: bool = True) -> nn.Module:
    """[s, a] -> BRN -> (Linear -> activation -> BRN) per hidden layer -> Linear -> Q (discrete: s -> Q(s, .));
    without `input_norm` (conv features) the first BRN is left out."""
    brn = {"momentum": algo_spec.brn_momentum, "warmup_steps": algo_spec.brn_warmup_steps, "eps": BRN_EPS}
    layers: list[nn.Module] = [WarmupBatchRenorm1d(in_dim, **brn)] if input_norm else []
    for width in hid_layers:
        layers += [nn.Linear(in_dim, width), ACTIVATIONS[activation](), WarmupBatchRenorm1d(width, **brn)]
        in_dim = width
    return nn.Sequential(*layers, nn.Linear(in_dim, out_dim))


class DiscreteCrossQLoss(LossModule):
    """CrossQ for discrete actions, as SLM-Lab computes it (TorchRL's `CrossQLoss` is continuous only).

    Each of the twin critics maps observations to Q(s, .); it sees the current and next observations in one
    joint forward pass (train mode: batch statistics of both), and the next-state values are used detached:
    V(s') = sum_a pi(a|s') (mean_k Q_k(s', a) - alpha log pi(a|s')) (SLM-Lab averages the twins here where
    continuous CrossQ takes their min), target = r + gamma (1 - terminated) V(s'). The actor minimises
    sum_a pi(a|s) (alpha log pi(a|s) - min_k Q_k(s, a)) against that pass's (detached) current values, and the
    temperature is tuned toward `target_entropy`. Parameters live under `actor_network_params` /
    `qvalue_network_params` as in TorchRL's losses; |TD error| of the twins' min goes under `td_error`."""

    @dataclass
    class _AcceptedKeys:
        action: NestedKey = "action"
        reward: NestedKey = "reward"
        terminated: NestedKey = "terminated"
        priority_weight: NestedKey = "priority_weight"
        priority: NestedKey = "td_error"

    actor_network: nn.Module
    qvalue_network: nn.ModuleList
    actor_network_params: TensorDictParams
    qvalue_network_params: TensorDictParams
    target_actor_network_params: TensorDictParams
    target_qvalue_network_params: TensorDictParams

    def __init__(self, actor_net: nn.Module, critics: nn.ModuleList, *, gamma: float, alpha_init: float,
                 fixed_alpha: bool, target_entropy: float, loss_function: str = "l2"):
        super().__init__()
        self.convert_to_functional(actor_net, "actor_network")
        self.convert_to_functional(critics, "qvalue_network")
        self.gamma, self.target_entropy, self.huber = gamma, target_entropy, loss_function == "smooth_l1"
        log_alpha = torch.tensor(math.log(alpha_init))
        if fixed_alpha:
            self.register_buffer("log_alpha", log_alpha)
        else:
            self.log_alpha = nn.Parameter(log_alpha)

    def _critic_pass(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, ...]:
        obs, action, reward, not_terminal, next_obs, weight = transition_tensors(self, tensordict)
        q_cur, q_next = zip(*(q(torch.cat([obs, next_obs])).chunk(2) for q in self.qvalue_network), strict=True)
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_log_probs = torch.log_softmax(self.actor_network(next_obs), -1)
            mean_next = torch.stack(q_next).detach().mean(0)
            v_next = (next_log_probs.exp() * (mean_next - alpha * next_log_probs)).sum(-1)
            target = reward + self.gamma * not_terminal * v_next
        index = action.long().reshape(-1, 1)
        preds = [q.gather(-1, index).squeeze(-1) for q in q_cur]
        loss = sum(weighted_mean(regression(pred, target, self.huber), weight) for pred in preds)
        td_error = (torch.min(*preds) - target).detach().abs()
        return loss, td_error, obs, torch.min(*q_cur).detach(), weight

    def critic_loss(self, tensordict: TensorDictBase) -> TensorDict:
        """`loss_qvalue` alone (the critic-only steps of `policy_delay`); writes `td_error` as `forward` does."""
        loss, td_error, *_ = self._critic_pass(tensordict)
        tensordict.set(self.tensor_keys.priority, td_error)
        return loss_output(loss_qvalue=loss)

    def forward(self, tensordict: TensorDictBase):
        loss_qvalue, td_error, obs, min_q, weight = self._critic_pass(tensordict)
        tensordict.set(self.tensor_keys.priority, td_error)
        log_probs = torch.log_softmax(self.actor_network(obs), -1)
        probs, alpha = log_probs.exp(), self.log_alpha.exp()
        loss_actor = weighted_mean((probs * (alpha.detach() * log_probs - min_q)).sum(-1), weight)
        entropy = -(probs * log_probs).sum(-1).detach()
        loss_alpha = weighted_mean(self.log_alpha * (entropy - self.target_entropy), weight)
        return loss_output(loss_qvalue=loss_qvalue, loss_actor=loss_actor, loss_alpha=loss_alpha,
                           alpha=alpha.detach(), entropy=entropy.mean())


# -------------------------------------------------------------------------------------------------- loss
class FastCrossQLoss(CrossQLoss):
    """TorchRL's `CrossQLoss` with its forward in plain torch: the same inputs, outputs, parameters, buffers and
    maths (tests/unit/test_td3.py keeps `CrossQLoss.forward` as the oracle, values, gradients and the batch
    renorm statistics), but for importance weights, which enter as mean(w * loss) as in zoo's other losses.

    Why: per step `CrossQLoss` builds TensorDicts for every network input and output, constructs `TanhNormal`
    distributions and runs the twin critics through vmap over functional parameters, several times the cost
    of the maths on CPU. Here the twin critics run as batched matmuls over TorchRL's stacked parameters, with
    the batch renorm layers written out on the stacked statistics (`BatchRenorm1d.forward`'s maths, the running
    statistics updated in place, the warm-up counter held as `WarmupBatchRenorm1d` holds it). `critic_loss(td)`
    is the critic term alone, for the critic-only steps of `policy_delay`.
    """

    def __init__(self, actor: ProbabilisticActor, qvalue: TensorDictModule, *, actor_net: nn.Module,
                 activation: nn.Module, **kwargs):
        super().__init__(actor, qvalue, **kwargs)
        params = self.qvalue_network_params["module", "mlp"]
        layers = []  # ("brn" | "linear" | "act", stacked parameters or the activation, the module)
        for index, module in enumerate(self.qvalue_network.module.mlp):
            kind = ("brn" if isinstance(module, BatchRenorm1d) else "linear" if isinstance(module, nn.Linear)
                    else "act")
            layers.append((kind, params[str(index)] if kind != "act" else activation, module))
        space = kwargs["action_spec"].space
        # plain attributes, not submodules: the actor's module is registered once, inside `actor_network`
        self.__dict__.update(actor_net=actor_net, q_layers=layers)
        self.register_buffer("action_mid", (space.high + space.low) / 2, persistent=False)
        self.register_buffer("action_half", (space.high - space.low) / 2, persistent=False)

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        critic, actor, alpha_loss, td_error, entropy = self.losses(*transition_tensors(self, tensordict), True)
        tensordict.set(self.tensor_keys.priority, td_error)
        return loss_output(loss_actor=actor, loss_qvalue=critic, loss_alpha=alpha_loss, alpha=self._alpha,
                           entropy=entropy)

    def critic_loss(self, tensordict: TensorDictBase) -> TensorDict:
        """`loss_qvalue` alone (no actor pass); writes `td_error` as `forward` does."""
        critic, *_, td_error, _ = self.losses(*transition_tensors(self, tensordict), False)
        tensordict.set(self.tensor_keys.priority, td_error)
        return loss_output(loss_qvalue=critic)

    def q_values(self, x: torch.Tensor, train: bool, detach: bool = False) -> torch.Tensor:
        """Twin Q of `[B, obs + action]` -> `[2, B]`; `train`: batch statistics (updating the running ones)."""
        x = x.expand(2, *x.shape)
        for kind, p, module in self.q_layers:
            if kind == "act":
                x = p(x)
                continue
            weight, bias = (p["weight"].detach(), p["bias"].detach()) if detach else (p["weight"], p["bias"])
            if kind == "linear":
                x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
                continue
            x = self.batch_renorm(x, p, module, train, weight, bias)
        return x.squeeze(-1)

    @staticmethod
    def batch_renorm(x: torch.Tensor, p: TensorDictBase, module: BatchRenorm1d, train: bool, weight: torch.Tensor,
                     bias: torch.Tensor) -> torch.Tensor:
        """`BatchRenorm1d` of `[2, B, F]` on the stacked statistics, affine part included. The per-feature factors
        (`r / std * weight`, `d * weight + bias`) are combined on `[2, F]` first, so the batch-sized tensor
        sees one centring and one `addcmul` instead of six element-wise passes (CPU cost scales with those)."""
        running_mean, running_var, steps = p["running_mean"], p["running_var"], p["num_batches_tracked"]
        running_std = (running_var + module.eps).sqrt()
        if not train:
            scale = weight / running_std
            return torch.addcmul((bias - running_mean * scale).unsqueeze(1), x, scale.unsqueeze(1))
        b_mean = x.mean(1)
        centered = x - b_mean.unsqueeze(1)
        b_var = centered.pow(2).mean(1)  # Tensor.var over the batch dim of [2, B, F] is ~10x slower on CPU
        b_std = (b_var + module.eps).sqrt()
        r = torch.clamp(b_std.detach() / running_std, 1 / module.max_r, module.max_r)
        d = torch.clamp((b_mean.detach() - running_mean) / running_std, -module.max_d, module.max_d)
        if module.warmup_steps > 0:
            warmup = (steps / module.warmup_steps if module.smooth else steps // module.warmup_steps).unsqueeze(-1)
            r, d = 1.0 + (r - 1.0) * warmup, d * warmup
        out = torch.addcmul((d * weight + bias).unsqueeze(1), centered, (r / b_std * weight).unsqueeze(1))
        with torch.no_grad():
            batch = x.shape[1]
            running_var += module.momentum * (b_var.detach() * batch / (batch - 1) - running_var)
            running_mean += module.momentum * (b_mean - running_mean)
            steps.copy_((steps + 1).clamp(max=module.warmup_steps))  # WarmupBatchRenorm1d's stop
        return out

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterized tanh-Gaussian action and its log-prob (TorchRL's `TanhNormal`, by hand)."""
        loc, scale = self.actor_net(obs)
        u = loc + scale * torch.randn_like(loc)
        log_prob = tanh_normal_log_prob(u, loc, scale, self.action_half)
        return self.action_mid + self.action_half * torch.tanh(u), log_prob

    def losses(self, obs, action, reward, not_terminal, next_obs, weight, update_actor: bool):
        """(critic loss, actor loss, alpha loss, |TD error|, entropy), the actor's None without `update_actor`.
        The critics see (s, a) and (s', a') in one pass in train mode; the actor loss, the critics in eval mode."""
        alpha, huber = self._alpha, self.loss_function == "smooth_l1"
        with torch.no_grad():
            next_action, next_log_prob = self.act(next_obs)
        both = torch.cat([torch.cat([obs, action], -1), torch.cat([next_obs, next_action], -1)])
        q, next_q = self.q_values(both, train=True).split(obs.shape[0], dim=1)
        next_value = (next_q.min(0).values - alpha * next_log_prob).detach()
        target = reward + self.value_estimator.gamma * not_terminal * next_value
        critic_loss = weighted_mean(regression(q, target.expand_as(q), huber).sum(0), weight)
        td_error = (q - target).detach().abs().max(0).values
        if not update_actor:
            return critic_loss, None, None, td_error, None
        new_action, log_prob = self.act(obs)
        min_q = self.q_values(torch.cat([obs, new_action], -1), train=False, detach=True).min(0).values
        actor_loss = weighted_mean(alpha * log_prob - min_q, weight)
        log_prob = log_prob.detach()
        alpha_loss = weighted_mean(-self.log_alpha * (log_prob + self.target_entropy), weight)
        return critic_loss, actor_loss, alpha_loss, td_error, -log_prob.mean()


# ------------------------------------------------------------------------------------------------ update
@dataclass(kw_only=True)
class CrossQAgent(Agent):
    """Stores each batch, then `training_iter` replayed gradient steps through `CrossQLoss` (no targets)."""

    replay: ReplayPhase
    clip_grad_val: float | None = None
    log_alpha_range: tuple[float | None, float | None] = (None, None)  # the temperature's clamp (log_alpha_min, max)
    terminated_key: str = "terminated"  # ("next", key) that stops bootstrapping (Atari: also a lost life)

    def __post_init__(self):
        self.params = trained_params(self.loss)

    def update(self, data: TensorDictBase, frame: int) -> dict[str, torch.Tensor]:
        store_transitions(self.buffer, data, self.terminated_key)
        return self.replay.run(self.buffer, frame, self.gradient_step, self.set_lr)

    def gradient_step(self, batch: TensorDictBase) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Critics every step (`CrossQLoss.qvalue_loss`); critics, actor and temperature every `policy_delay`-th
        (`CrossQLoss.forward`, which writes `td_error`); the temperature is clamped after its steps."""
        out = self.loss(batch) if count_step(self, self.replay.policy_delay) else self.loss.critic_loss(batch)
        metrics = optimize(out, self.optimizers, self.params, self.clip_grad_val)
        if "loss_actor" in out and self.log_alpha_range != (None, None):
            with torch.no_grad():
                self.loss.log_alpha.clamp_(*self.log_alpha_range)
        return metrics, batch["td_error"]


def build(spec: Spec, env: EnvBase) -> Agent:
    """Assemble CrossQ: tanh-Gaussian actor, twin batch-renormalized critics in `CrossQLoss`, no targets."""
    info = env_info(env)
    check_net(spec, conv=info["discrete"])
    algo_spec, net_spec = spec.agent.algorithm, spec.agent.net
    if spec.agent.memory.name != "Replay":
        raise SpecError("agent.memory.name", "CrossQ supports Replay only (TorchRL's CrossQLoss ignores importance "
                        "weights)")
    for key in ("log_alpha_min", "log_alpha_max"):
        if algo_spec.fixed_alpha and getattr(algo_spec, key) is not None:
            raise SpecError(f"agent.algorithm.{key}", "has no effect with fixed_alpha: true; remove it")
    if None not in (algo_spec.log_alpha_min, algo_spec.log_alpha_max) and \
            algo_spec.log_alpha_min >= algo_spec.log_alpha_max:
        raise SpecError("agent.algorithm.log_alpha_min", f"{algo_spec.log_alpha_min} must be below log_alpha_max "
                        f"{algo_spec.log_alpha_max}")
    action_spec, obs_dim = info["action_spec"], math.prod(info["obs_shape"])
    critic_layers = net_spec.critic_hid_layers or net_spec.hid_layers
    if info["discrete"]:
        n, act = info["num_actions"], net_spec.hid_layers_activation

        def make_critic() -> nn.Module:  # observation -> Q(s, .); pixels: conv torso, then the BRN layers
            if net_spec.type != "ConvNet":
                return build_brn_critic(obs_dim, critic_layers, act, algo_spec, out_dim=n)
            torso = ConvTorso(info["obs_shape"], net_spec)
            return nn.Sequential(torso, build_brn_critic(torso.out_dim, critic_layers, act, algo_spec, out_dim=n,
                                                         input_norm=False))

        actor_net = build_q_net(info["obs_shape"], n, net_spec)  # logits over actions (conv torso for pixels)
        actor = ProbabilisticActor(TensorDictModule(actor_net, ["observation"], ["logits"]), in_keys=["logits"],
                                   distribution_class=Categorical, spec=action_spec, return_log_prob=True)
        critics = nn.ModuleList(make_critic() for _ in range(2))
        loss = DiscreteCrossQLoss(actor_net, critics, gamma=algo_spec.gamma, alpha_init=algo_spec.alpha_init,
                                  fixed_alpha=algo_spec.fixed_alpha, target_entropy=target_entropy(algo_spec, info),
                                  loss_function=loss_function(net_spec))
        return _agent(spec, env, actor, actor_net, loss, loss.qvalue_network_params.values(True, True))
    low, high = action_spec.space.low, action_spec.space.high
    actor_net = nn.Sequential(build_mlp(obs_dim, 2 * info["action_dim"], net_spec), NormalParamExtractor())
    actor = ProbabilisticActor(TensorDictModule(actor_net, ["observation"], ["loc", "scale"]), in_keys=["loc", "scale"],
                               distribution_class=TanhNormal, distribution_kwargs={"low": low, "high": high},
                               spec=action_spec, return_log_prob=True)
    critic = build_brn_critic(obs_dim + info["action_dim"], critic_layers, net_spec.hid_layers_activation, algo_spec)
    qnet = ValueOperator(StateActionMLP(critic), in_keys=["observation", "action"])
    loss = FastCrossQLoss(actor, qnet, num_qvalue_nets=2, action_spec=action_spec, actor_net=actor_net,
                          activation=ACTIVATIONS[net_spec.hid_layers_activation](),
                          loss_function=loss_function(net_spec), alpha_init=algo_spec.alpha_init,
                          fixed_alpha=algo_spec.fixed_alpha, target_entropy=target_entropy(algo_spec, info))
    loss.make_value_estimator(ValueEstimators.TD0, gamma=algo_spec.gamma)
    return _agent(spec, env, actor, actor_net, loss, loss.qvalue_network_params.values(True, True))


def _agent(spec: Spec, env: EnvBase, actor: ProbabilisticActor, actor_net: nn.Module, loss: LossModule,
           critic_params) -> Agent:
    """The CrossQ agent around its loss: actor, critic and (tuned) temperature optimizers, uniform replay (stacked
    frames stored once each)."""
    algo_spec, net_spec = spec.agent.algorithm, spec.agent.net
    actor_optim = net_spec.actor_optim_spec or net_spec.optim_spec
    optimizers = {"actor": make_optimizer(actor_net.parameters(), actor_optim),
                  "critic": make_optimizer(critic_params, net_spec.critic_optim_spec or net_spec.optim_spec)}
    if not algo_spec.fixed_alpha:
        alpha_optim = actor_optim if algo_spec.alpha_lr is None else dataclasses.replace(actor_optim,
                                                                                         lr=algo_spec.alpha_lr)
        optimizers["alpha"] = make_optimizer([loss.log_alpha], alpha_optim)
    if isinstance(loss, DiscreteCrossQLoss):
        nets = PlainNets(nn.Identity(), actor_net, None, "Categorical")
    else:
        space = actor.spec["action"].space
        low, high = space.low, space.high
        nets = PlainNets(nn.Identity(), actor_net, None, "TanhNormal", ("loc", "scale"), TanhNormal,
                         {"low": low, "high": high}, low=low, high=high)
    return CrossQAgent(
        policy=PlainPolicy(actor, nets), actor=actor, loss=loss, optimizers=optimizers,
        frames_per_batch=frames_per_batch(spec),
        max_frame=spec.env.max_frame, buffer=make_replay_buffer(spec.agent.memory, env=env),
        lr_scheduler_spec=net_spec.lr_scheduler_spec, init_random_frames=algo_spec.training_start_step,
        replay=ReplayPhase.from_spec(spec), clip_grad_val=net_spec.clip_grad_val,
        log_alpha_range=(algo_spec.log_alpha_min, algo_spec.log_alpha_max), terminated_key=learning_keys(env)[1],
    )
