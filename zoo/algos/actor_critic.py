"""Actor and critic builders shared by the policy-gradient family (REINFORCE, A2C, PPO).

Action distributions follow `agent.algorithm.action_pdtype` (zoo/distributions.py). By default: `Categorical`
over logits for discrete spaces (`OneHotCategorical` for a one-hot action spec), `MultiCategorical` for
MultiDiscrete, `Bernoulli` for MultiBinary, and for continuous spaces a Gaussian whose log std is a free
parameter (state-independent, the PPO paper's choice) or a second head (`agent.net.state_dependent_std`).
Gaussian actions are rescaled to the env's bounds: the network works in [-1, 1] units and
`loc = center + half_range * mu`, `scale = half_range * std`; `TanhNormal` (or `tanh_squash`) squashes samples
into [low, high] instead (TorchRL's, whose log-prob includes the tanh Jacobian), and `Beta` lives on the box.
Unsquashed Gaussian samples can leave the box; zoo's envs clip them before the gymnasium env steps
(`zoo.envs.ClipBoxAction`), while the stored action, and its log-prob, stay unclipped, as in SB3.

With `agent.net.shared` one trunk feeds both heads (`ActorValueOperator`) and one optimizer trains it;
otherwise actor and critic are separate networks with their own optimizers. A `RecurrentNet` puts a recurrent
torso (one shared, or one each) under the heads: its hidden states live in the TensorDict (`next_values` and
`sequences` below handle them for the learners).
"""

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import distributions as D
from torch import nn
from torch.distributions import Categorical
from torchrl.envs import EnvBase, ExplorationType, exploration_type
from torchrl.modules import (
    ActorValueOperator,
    IndependentNormal,
    OneHotCategorical,
    ProbabilisticActor,
    TanhNormal,
    ValueOperator,
    set_recurrent_mode,
)
from torchrl.objectives.value import GAE, TD1Estimator, ValueEstimatorBase, VTrace
from torchrl.objectives.value.functional import vtrace_advantage_estimate

from zoo.agent import clip_grad, make_optimizer
from zoo.distributions import (
    Argmax,
    Bernoulli,
    Beta,
    GumbelSoftmax,
    MultiCategorical,
    MultivariateNormal,
    beta_concentrations,
    resolve_pdtype,
)
from zoo.envs import env_info
from zoo.nets import (
    ACTIVATIONS,
    build_mlp,
    build_recurrent_torso,
    build_torso,
    init_weights,
    normal_log_prob,
    tanh_normal_log_prob,
)
from zoo.spec import NetSpec, SpecError

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
GAUSSIANS = ("Normal", "TanhNormal", "MultivariateNormal")  # the action_pdtypes with a (log) std


class GaussianHead(nn.Module):
    """features -> (loc, scale) of a diagonal Gaussian, rescaled to the action box unless squashed by tanh."""

    def __init__(self, in_dim: int, action_dim: int, low: torch.Tensor, high: torch.Tensor, *,
                 state_dependent_std: bool, log_std_init: float, tanh_squash: bool):
        super().__init__()
        self.state_dependent_std = state_dependent_std
        self.mean = nn.Linear(in_dim, action_dim)
        if state_dependent_std:
            self.log_std = nn.Linear(in_dim, action_dim)
            nn.init.zeros_(self.log_std.weight)
            nn.init.constant_(self.log_std.bias, log_std_init)
        else:
            self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        # TanhNormal maps to [low, high] itself; otherwise rescale [-1, 1] network units to the box here
        center, half = ((high + low) / 2, (high - low) / 2) if not tanh_squash else (torch.zeros_like(low),
                                                                                      torch.ones_like(low))
        self.register_buffer("center", center)
        self.register_buffer("half_range", half)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = self.mean(features)
        log_std = self.log_std(features) if self.state_dependent_std else self.log_std.expand_as(mu)
        std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        return self.center + self.half_range * mu, self.half_range * std


class BetaHead(nn.Module):
    """features -> (concentration1, concentration0) >= 1 of a Beta policy per action dimension (Chou et al. 2017)."""

    def __init__(self, in_dim: int, action_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, 2 * action_dim)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return beta_concentrations(self.linear(features))


class MultivariateNormalHead(nn.Module):
    """features -> (loc, scale_tril): the GaussianHead's diagonal plus learned, state-independent correlations
    (a strictly lower-triangular factor in [-1, 1] network units, rescaled to the action box; zero at init)."""

    def __init__(self, gaussian: GaussianHead, action_dim: int):
        super().__init__()
        self.gaussian = gaussian
        self.lower = nn.Parameter(torch.zeros(action_dim, action_dim))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, scale = self.gaussian(features)
        lower = self.gaussian.half_range.unsqueeze(-1) * self.lower.tril(-1)
        return loc, torch.diag_embed(scale) + lower


class PolicyHead(NamedTuple):
    module: nn.Module  # features -> the distribution's parameters
    param_keys: tuple[str, ...]  # their names, as the distribution class takes them
    dist_class: type
    dist_kwargs: dict


def _policy_head(in_dim: int, info: dict, net_spec: NetSpec, pdtype: str, hid_layers: list[int]) -> PolicyHead:
    """MLP over features ending in the parameters of the `pdtype` distribution (see zoo/distributions.py)."""
    space, kind = info["action_spec"].space, info["action_kind"]
    gain_init, gain = "orthogonal" if net_spec.init_fn == "orthogonal" else "default", 0.01
    if net_spec.actor_init_gain is not None:
        gain_init, gain = net_spec.init_fn, net_spec.actor_init_gain
    if kind != "Box":  # logits: one per action, per component's choice, or per bit
        if kind == "Discrete":
            out_dim, dist_kwargs = info["num_actions"], {}
            dist_class = {"Categorical": OneHotCategorical if info["one_hot"] else Categorical, "Argmax": Argmax,
                          "GumbelSoftmax": GumbelSoftmax}[pdtype]
        elif kind == "MultiDiscrete":
            nvec = (space.high - space.low + 1).tolist()
            out_dim, dist_class, dist_kwargs = sum(nvec), MultiCategorical, {"nvec": nvec, "start": space.low}
        else:
            out_dim, dist_class, dist_kwargs = info["action_dim"], Bernoulli, {"dtype": info["action_spec"].dtype}
        head = build_mlp(in_dim, out_dim, net_spec, hid_layers)
        init_weights(head[-1], gain_init, gain=gain)
        return PolicyHead(head, ("logits",), dist_class, dist_kwargs)
    body = build_mlp(in_dim, hid_layers[-1], net_spec, hid_layers[:-1]) if hid_layers else nn.Identity()
    act = ACTIVATIONS[net_spec.hid_layers_activation]() if hid_layers else nn.Identity()
    feat_dim, action_dim = hid_layers[-1] if hid_layers else in_dim, info["action_dim"]
    if pdtype == "Beta":
        beta = BetaHead(feat_dim, action_dim)
        init_weights(beta, gain_init, gain=gain)
        return PolicyHead(nn.Sequential(body, act, beta), ("concentration1", "concentration0"), Beta,
                          {"low": space.low, "high": space.high})
    tanh_squash = pdtype == "TanhNormal"
    gaussian = GaussianHead(feat_dim, action_dim, space.low, space.high,
                            state_dependent_std=net_spec.state_dependent_std, log_std_init=net_spec.log_std_init,
                            tanh_squash=tanh_squash)
    init_weights(gaussian.mean, gain_init, gain=gain)
    if pdtype == "MultivariateNormal":
        return PolicyHead(nn.Sequential(body, act, MultivariateNormalHead(gaussian, action_dim)),
                          ("loc", "scale_tril"), MultivariateNormal, {})
    dist_class, dist_kwargs = ((TanhNormal, {"low": space.low, "high": space.high}) if tanh_squash
                               else (IndependentNormal, {}))
    return PolicyHead(nn.Sequential(body, act, gaussian), ("loc", "scale"), dist_class, dist_kwargs)


def _value_head(in_dim: int, net_spec: NetSpec, hid_layers: list[int] | None = None) -> nn.Module:
    """MLP over features ending in V; its output layer initialised with `critic_init_gain` when set."""
    head = build_mlp(in_dim, 1, net_spec, hid_layers)
    if net_spec.critic_init_gain is not None:
        init_weights(head[-1], net_spec.init_fn, gain=net_spec.critic_init_gain)
    return head


def _probabilistic_actor(module: nn.Module, head: PolicyHead, info: dict, in_key: str) -> ProbabilisticActor:
    td_module = TensorDictModule(module, [in_key], list(head.param_keys))
    return ProbabilisticActor(td_module, in_keys=list(head.param_keys), spec=info["action_spec"],
                              distribution_class=head.dist_class, distribution_kwargs=head.dist_kwargs,
                              return_log_prob=True)


def action_pdtype(env: EnvBase, pdtype: str, tanh_squash: bool = False) -> str:
    """The action distribution's name for `env` from `agent.algorithm.action_pdtype` (`tanh_squash` is the same as
    `TanhNormal`); SpecError when it does not fit the env's action space."""
    info = env_info(env)
    if tanh_squash:
        if pdtype not in ("default", "TanhNormal"):
            raise SpecError("agent.algorithm.tanh_squash", f"contradicts action_pdtype: {pdtype}; remove one of them")
        pdtype = "TanhNormal"
    try:
        name = resolve_pdtype(pdtype, info["action_kind"], info["action_dim"])
    except ValueError as err:
        field = "tanh_squash" if tanh_squash else "action_pdtype"
        raise SpecError(f"agent.algorithm.{field}", str(err)) from None
    if info["one_hot"] and name != "Categorical":
        raise SpecError("agent.algorithm.action_pdtype", f"{name} draws integer actions; this env's are one-hot "
                        "(allowed: default, Categorical)")
    return name


@dataclass
class PlainNets:
    """The actor's and critic's networks as plain torch modules, the very parameters of the TorchRL modules.

    `trunk` maps observations to features (identity unless `agent.net.shared`); `policy` maps features to the
    parameters (`param_keys`) of the action distribution `distribution` (an `action_pdtype` name: Categorical
    logits, (loc, scale) of a Normal, or of a TanhNormal squashed into [low, high] as TorchRL's, ...), built as
    `dist_class(**params, **dist_kwargs)`; `value` maps features to V. Losses that compute in plain torch (PPO)
    run these instead of the TensorDict modules: the same functions of the same parameters, without the
    per-call TensorDict and distribution plumbing.
    """

    trunk: nn.Module
    policy: nn.Module
    value: nn.Module | None
    distribution: str
    param_keys: tuple[str, ...] = ("logits",)
    dist_class: type = Categorical
    dist_kwargs: dict = field(default_factory=dict)
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None
    recurrent: TensorDictModuleBase | None = None  # RecurrentNet: TensorDict -> feature_keys (replaces `trunk`)
    feature_keys: tuple[str, str] = ("features", "features")  # the policy's and the value's features

    @property
    def feature_in_keys(self) -> list:
        """The keys `features` reads."""
        return ["observation"] if self.recurrent is None else list(self.recurrent.in_keys)

    @property
    def state_keys(self) -> list:
        """The recurrent torsos' hidden-state keys (none for feed-forward nets)."""
        return [key for key in self.feature_in_keys if key not in ("observation", "is_init")]

    def features(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        """(policy features, value features) of a batch. A recurrent torso runs a `[batch, time]` TensorDict as
        sequences from their stored initial states (TorchRL's recurrent mode), a `[batch]` one as one step."""
        if self.recurrent is None:
            features = self.trunk(tensordict.get("observation"))
            return features, features
        with set_recurrent_mode(tensordict.ndim >= 2):
            out = self.recurrent(tensordict.select(*self.feature_in_keys, strict=False))
        return out.get(self.feature_keys[0]), out.get(self.feature_keys[1])

    def dist(self, features: torch.Tensor) -> D.Distribution:
        """The action distribution at `features`, as the actor builds it."""
        return self.dist_from(self.policy(features))

    def dist_from(self, params: torch.Tensor | tuple[torch.Tensor, ...]) -> D.Distribution:
        """The action distribution of the policy head's outputs `params`."""
        params = params if isinstance(params, tuple) else (params,)
        return self.dist_class(**dict(zip(self.param_keys, params, strict=True)), **self.dist_kwargs)


class PlainPolicy(TensorDictModuleBase):
    """The collector's policy: the `ProbabilisticActor`'s draw in one plain-torch pass over its own networks.

    Same parameters, distribution and draws as `actor` (Categorical through `torch.multinomial`, Gaussians
    through `torch.normal`, as torch's distributions sample), writing `action` and `action_log_prob` (and, with
    a shared trunk, `state_value`, which spares GAE a critic pass) as plain tensors. Why: per collector step
    the actor's TensorDictModule / distribution plumbing costs more than a CartPole-sized MLP, and
    tensordict 0.14 routes every `TensorDictModule` output through `TensorDictBase.from_any`, which calls
    `importlib.util.find_spec("pandas")` (tensordict/base.py, `from_any`): file-system probes on every call
    where pandas is not installed. Outside `ExplorationType.RANDOM` it defers to `actor` (greedy or mean
    actions exactly as TorchRL defines them).
    """

    def __init__(self, actor: ProbabilisticActor, nets: "PlainNets", *, one_hot: bool = False,
                 record_value: bool = False):
        super().__init__()
        # the actor's parameters under the actor's own names, so the state dict is the actor's; the networks
        # are the same modules, held unregistered (a tuple) so that they are not counted twice
        self.module = actor.module
        self.deferred, self.nets = (actor,), (nets.trunk, nets.policy, nets.value if record_value else None)
        self.distribution, self.one_hot, self.dist_from = nets.distribution, one_hot, nets.dist_from
        if nets.distribution == "TanhNormal":
            self.register_buffer("action_mid", (nets.high + nets.low) / 2, persistent=False)
            self.register_buffer("action_half", (nets.high - nets.low) / 2, persistent=False)
        self.in_keys = ["observation"]
        self.out_keys = ["action", "action_log_prob"] + (["state_value"] if record_value else [])

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if exploration_type() not in (ExplorationType.RANDOM, None):
            return self.deferred[0](tensordict)
        trunk, policy_head, value_head = self.nets
        features = trunk(tensordict.get("observation"))
        out = policy_head(features)
        if self.distribution not in ("Categorical", "Normal", "TanhNormal"):  # the rarer action_pdtypes
            dist = self.dist_from(out)
            action = dist.sample()  # as ProbabilisticActor's draw: sample, or rsample (no grad here) where it has one
            log_prob = dist.log_prob(action)
        elif self.distribution == "Categorical":
            log_probs = out.log_softmax(-1)
            flat = log_probs.reshape(-1, log_probs.shape[-1]).exp()
            index = torch.multinomial(flat, 1, True).reshape(log_probs.shape[:-1])
            log_prob = log_probs.gather(-1, index.unsqueeze(-1)).squeeze(-1)
            action = F.one_hot(index, log_probs.shape[-1]) if self.one_hot else index
        else:
            loc, scale = out
            u = torch.normal(loc, scale)
            if self.distribution == "Normal":
                action, log_prob = u, normal_log_prob(u, loc, scale).sum(-1)
            else:
                action = self.action_mid + self.action_half * u.tanh()
                log_prob = tanh_normal_log_prob(u, loc, scale, self.action_half)
        tensordict.set("action", action)
        tensordict.set("action_log_prob", log_prob)
        if value_head is not None:
            tensordict.set("state_value", value_head(features))
        return tensordict


class ActorCritic(NamedTuple):
    actor: ProbabilisticActor  # TorchRL's: acts in collectors, log-probs under "action_log_prob"
    critic: TensorDictModule | None  # writes "state_value"
    module: nn.Module  # holds every parameter once (for optimizers and checkpoints)
    nets: PlainNets


def build_actor_critic(env: EnvBase, net_spec: NetSpec, *, pdtype: str = "default", tanh_squash: bool = False,
                       critic: bool = True) -> ActorCritic:
    """Actor, critic and the module holding every parameter for `env`; shared trunk when `net_spec.shared`.

    `pdtype` / `tanh_squash`: `agent.algorithm.action_pdtype` / `tanh_squash` (see `action_pdtype`)."""
    info = env_info(env)
    distribution = action_pdtype(env, pdtype, tanh_squash)
    if distribution not in GAUSSIANS:
        for key in ("state_dependent_std", "log_std_init"):
            if getattr(net_spec, key) != getattr(NetSpec(), key):
                raise SpecError(f"agent.net.{key}", f"is not used by a {distribution} policy (Gaussian ones only: "
                                f"{', '.join(GAUSSIANS)}); remove it")
    space = info["action_spec"].space
    bounds = {"low": space.low, "high": space.high} if distribution == "TanhNormal" else {}
    if net_spec.type == "RecurrentNet":  # actor-critics only (REINFORCE does not declare RecurrentNet)
        return _recurrent_actor_critic(info, net_spec, distribution, bounds)
    torso, feat_dim = build_torso(info["obs_shape"], net_spec)

    if net_spec.shared and critic:
        widths = net_spec.hid_layers  # none: the torso alone is the trunk (StatelessRecurrentNet, as SLM-Lab's)
        trunk = nn.Sequential(torso, build_mlp(feat_dim, widths[-1], net_spec, widths[:-1]),
                              ACTIVATIONS[net_spec.hid_layers_activation]()) if widths else torso
        head = _policy_head(widths[-1] if widths else feat_dim, info, net_spec, distribution, [])
        value_head = _value_head(widths[-1] if widths else feat_dim, net_spec, [])
        common = TensorDictModule(trunk, ["observation"], ["hidden"])
        operator = ActorValueOperator(common, _probabilistic_actor(head.module, head, info, "hidden"),
                                      ValueOperator(value_head, in_keys=["hidden"]))
        nets = PlainNets(trunk, head.module, value_head, distribution, head.param_keys, head.dist_class,
                         head.dist_kwargs, **bounds)
        return ActorCritic(operator.get_policy_operator(), operator.get_value_operator(), operator, nets)
    head = _policy_head(feat_dim, info, net_spec, distribution, net_spec.hid_layers)
    actor_module = nn.Sequential(torso, head.module)
    actor = _probabilistic_actor(actor_module, head, info, "observation")
    value_net = None
    if critic:
        critic_torso, _ = build_torso(info["obs_shape"], net_spec)
        value_net = nn.Sequential(critic_torso, _value_head(feat_dim, net_spec))
    nets = PlainNets(nn.Identity(), actor_module, value_net, distribution, head.param_keys, head.dist_class,
                     head.dist_kwargs, **bounds)
    if not critic:
        return ActorCritic(actor, None, actor, nets)
    value = ValueOperator(value_net, in_keys=["observation"])
    return ActorCritic(actor, value, nn.ModuleList([actor, value]), nets)


def _recurrent_actor_critic(info: dict, net_spec: NetSpec, distribution: str, bounds: dict) -> ActorCritic:
    """RecurrentNet actor and critic: a recurrent torso (`build_recurrent_torso`) under each, or one shared,
    and the heads' `hid_layers` MLPs after it. The actor and critic returned include their torsos, so each is a
    whole TorchRL policy / value module; `PlainNets.recurrent` runs the torsos alone, for the losses."""
    if len(info["obs_shape"]) != 1:
        raise SpecError("agent.net.type", f"RecurrentNet reads 1-D observations; these have shape "
                        f"{list(info['obs_shape'])}")
    obs_dim, width = info["obs_shape"][0], net_spec.rnn_hidden_size
    prefix = "recurrent_state" if net_spec.shared else "actor_state"
    torso = build_recurrent_torso(obs_dim, net_spec, prefix)
    policy_key = f"{prefix}_features"
    value_key = policy_key if net_spec.shared else "critic_state_features"
    head = _policy_head(width, info, net_spec, distribution, net_spec.hid_layers)
    value_head = _value_head(width, net_spec)
    nets = PlainNets(nn.Identity(), head.module, value_head, distribution, head.param_keys, head.dist_class,
                     head.dist_kwargs, **bounds, recurrent=torso, feature_keys=(policy_key, value_key))
    value = ValueOperator(value_head, in_keys=[value_key])
    if net_spec.shared:
        operator = ActorValueOperator(torso, _probabilistic_actor(head.module, head, info, policy_key), value)
        return ActorCritic(operator.get_policy_operator(), operator.get_value_operator(), operator, nets)
    critic_torso = build_recurrent_torso(obs_dim, net_spec, "critic_state")
    nets.recurrent = TensorDictSequential(torso, critic_torso)
    actor = ProbabilisticActor(
        TensorDictSequential(torso, TensorDictModule(head.module, [policy_key], list(head.param_keys))),
        in_keys=list(head.param_keys), spec=info["action_spec"], distribution_class=head.dist_class,
        distribution_kwargs=head.dist_kwargs, return_log_prob=True)
    critic_operator = TensorDictSequential(critic_torso, value)
    return ActorCritic(actor, critic_operator, nn.ModuleList([actor, critic_operator]), nets)


class ReturnNormalizer(nn.Module):
    """Running statistics of value targets, by whose std the value loss sees predictions and targets (SLM-Lab's
    `normalize_v_targets`, after SB3's RunningMeanStd): `x / max(std, 1)`, clamped to [-clip, clip].

    The critic still predicts returns in the env's units (GAE reads them); only its loss is rescaled, so large
    returns do not make large value gradients. Statistics are buffers: they are checkpointed with the loss."""

    def __init__(self, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = clip, eps
        for name, value in (("mean", 0.0), ("var", 1.0), ("count", 0.0), ("m2", 0.0)):
            self.register_buffer(name, torch.tensor(value))

    @torch.no_grad()
    def update(self, targets: torch.Tensor) -> None:
        """Merge a batch of targets into the running mean and variance (Chan et al.'s parallel update)."""
        batch = targets.flatten().to(self.mean.dtype)
        n, batch_mean = batch.numel(), batch.mean()
        batch_var = batch.var(correction=0) if n > 1 else torch.zeros_like(batch_mean)
        delta, total = batch_mean - self.mean, self.count + n
        self.m2.add_(batch_var * n + delta.pow(2) * self.count * n / total)
        self.mean.add_(delta * n / total)
        self.count.copy_(total)
        if total > 1:
            self.var.copy_(self.m2 / total)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        std = (self.var + self.eps).sqrt().clamp_min(1.0)
        return (values / std).clamp(-self.clip, self.clip)


class PercentileNormalizer(nn.Module):
    """Advantages divided by max(1, P95 - P5), the percentiles tracked by an EMA over minibatches (DreamerV3's
    return normalization, SLM-Lab's `normalize_advantages: percentile`): not centered, and small advantages are
    left as they are. The EMA is a buffer, checkpointed with the loss."""

    def __init__(self, decay: float = 0.99):
        super().__init__()
        self.decay = decay
        self.register_buffer("low", torch.tensor(0.0))
        self.register_buffer("high", torch.tensor(0.0))

    def forward(self, advantage: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            quantiles = torch.quantile(advantage.detach().float(), torch.tensor([0.05, 0.95]))
            self.low.lerp_(quantiles[0], 1 - self.decay)
            self.high.lerp_(quantiles[1], 1 - self.decay)
        return advantage / (self.high - self.low).clamp_min(1.0)


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) log(1 + |x|): DreamerV3's compression of value targets (and predictions) before the value loss."""
    return torch.sign(x) * torch.log1p(x.abs())


def next_values(data: TensorDictBase, nets: PlainNets) -> torch.Tensor:
    """V(next obs) `[num_envs, T, 1]` from the values the collector recorded (`state_value`): the next step's, or
    the critic's on the true next observation after an env reset (done) and at the batch's end (as SB3's
    rollout buffer); a recurrent critic takes that one step from the hidden state after the step.

    Hand-written: TorchRL's GAE runs the critic on every obs and next obs though the collector already
    computed V(obs); with a conv trunk that doubles the update's forward passes, and a recurrent critic would
    need its sequences twice."""
    value = data["state_value"]
    next_value = torch.cat([value[:, 1:], value[:, -1:]], 1)
    recompute = data["next", "done"].squeeze(-1).clone()
    recompute[:, -1] = True
    after = data["next"].select(*nets.feature_in_keys, strict=False)[recompute]
    next_value[recompute] = nets.value(nets.features(after)[1])
    return next_value


def check_sequences(net_spec: NetSpec, time_horizon: int, minibatch_size: int) -> None:
    """SpecError unless `seq_len` cuts each batch row (`time_horizon` steps) and each minibatch into whole
    sequences."""
    seq_len = net_spec.seq_len or time_horizon
    if time_horizon % seq_len:
        raise SpecError("agent.net.seq_len", f"{seq_len} does not divide time_horizon {time_horizon}; allowed: a "
                        "divisor of it (each batch row is cut into sequences)")
    if minibatch_size % seq_len:
        raise SpecError("agent.algorithm.minibatch_size", f"{minibatch_size} is not a multiple of the training "
                        f"sequence length {seq_len} (agent.net.seq_len, default time_horizon): minibatches hold "
                        "whole sequences")


def sequences(data: TensorDictBase, nets: PlainNets, seq_len: int | None) -> TensorDictBase:
    """A `[num_envs, T]` batch as training rows for a recurrent net: cut into `[num_envs * T / seq_len, seq_len]`
    (whole rows without `seq_len`), the stored hidden states zeroed at episode starts (`is_init`), where the
    recurrent modules zeroed them while acting, so that each row replays exactly the steps collection took."""
    start = data["is_init"].unsqueeze(-1)
    for key in nets.state_keys:
        data[key] = data[key].masked_fill(start, 0.0)
    return data.reshape(-1, seq_len or data.shape[1])


def build_optimizers(net_spec: NetSpec, actor: nn.Module, critic: nn.Module | None,
                     all_params: nn.Module) -> dict[str, torch.optim.Optimizer]:
    """One optimizer over a shared net (or an actor alone); separate actor / critic optimizers otherwise."""
    if net_spec.shared or critic is None:
        return {"net": make_optimizer(all_params.parameters(), net_spec.optim_spec)}
    return {"actor": make_optimizer(actor.parameters(), net_spec.actor_optim_spec or net_spec.optim_spec),
            "critic": make_optimizer(critic.parameters(), net_spec.critic_optim_spec or net_spec.optim_spec)}


def optimizer_step(optimizers: dict[str, torch.optim.Optimizer], loss: torch.Tensor, params: list[nn.Parameter],
                   max_norm: float | None, per_net: bool = False) -> None:
    """Backward `loss` (actor and critic terms summed: their parameters are disjoint or shared) and step all,
    clipping the global gradient norm of `params`, or with `per_net` each optimizer's own (SLM-Lab's)."""
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    loss.backward()
    if per_net:
        for opt in optimizers.values():
            clip_grad([p for group in opt.param_groups for p in group["params"]], max_norm)
    else:
        clip_grad(params, max_norm)
    for opt in optimizers.values():
        opt.step()


OFF_POLICY_CORRECTIONS = ("none", "vtrace")
TARGET_LOG_PROB = "target_log_prob"  # VTraceAdvantage's log pi(a_t | x_t) under the learner's current policy


class VTraceAdvantage(VTrace):
    """TorchRL's `VTrace` estimator (IMPALA, Espeholt et al. 2018) whose importance ratio compares the learner's
    and the behaviour policy's log-probabilities of the action the batch took.

    Why not `VTrace.forward`: in TorchRL 0.14 it takes log pi from `_call_actor_net`, which draws a fresh action
    from the current policy (its mode outside RANDOM exploration) and returns that action's log-prob, so the
    ratio pi / mu compares two different actions. Here log pi(a_t | x_t) comes from the actor's distribution at
    the stored `action`, and TorchRL's functional `vtrace_advantage_estimate` does the rest: rho and c clipped at
    1, traces cut at `done`, bootstrapping stopped at `terminated` only (truncated steps bootstrap from the critic's
    value of the true final observation). Writes `advantage` (rho-weighted, for the policy gradient),
    `value_target` (v_s), `state_value` and `target_log_prob` (log pi, PPO's proximal policy)."""

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys, critic, actor = self.tensor_keys, self.value_network, self.actor_network
        with torch.no_grad():
            value = critic(tensordict.select(*critic.in_keys, strict=False)).get(keys.value)
            next_value = critic(tensordict["next"].select(*critic.in_keys, strict=False)).get(keys.value)
            dist = actor.get_dist(tensordict.select(*actor.in_keys, strict=False))
            log_pi = dist.log_prob(tensordict.get("action")).reshape(value.shape)
            stored = tensordict.get(keys.sample_log_prob)
            log_mu = stored.reshape(value.shape)
            nxt = tensordict["next"]
            advantage, value_target = vtrace_advantage_estimate(
                self.gamma, log_pi, log_mu, value, next_value, nxt.get(keys.reward), nxt.get(keys.done),
                nxt.get(keys.terminated), rho_thresh=self.rho_thresh, c_thresh=self.c_thresh, time_dim=-2)
        tensordict.set(keys.advantage, advantage)
        tensordict.set(keys.value_target, value_target)
        tensordict.set(keys.value, value)
        tensordict.set(TARGET_LOG_PROB, log_pi.reshape(stored.shape))
        return tensordict


def make_vtrace(gamma: float, actor: ProbabilisticActor, critic: TensorDictModule,
                keys: tuple[str, str] = ("done", "terminated")) -> VTraceAdvantage:
    """`agent.algorithm.off_policy_correction: vtrace`: V-trace on the `[num_envs, T]` batch; `keys` as
    `make_advantage_module`'s."""
    estimator = VTraceAdvantage(gamma=gamma, actor_network=actor, value_network=critic)
    estimator.set_keys(done=keys[0], terminated=keys[1], sample_log_prob="action_log_prob")
    return estimator


def check_off_policy_correction(correction: str, net_spec: NetSpec) -> None:
    """SpecError where `off_policy_correction: vtrace` cannot run (recurrent nets would need stored hidden states
    for the critic's and actor's passes over the batch)."""
    if correction == "vtrace" and net_spec.type == "RecurrentNet":
        raise SpecError("agent.algorithm.off_policy_correction", "vtrace re-evaluates the batch without hidden "
                        "states; allowed with RecurrentNet: none")


def make_advantage_module(gamma: float, lam: float | None, critic: TensorDictModule | None,
                          keys: tuple[str, str] = ("done", "terminated")) -> ValueEstimatorBase:
    """GAE(lambda) when `lam` is set, else TD(1): discounted rewards to the rollout's end, bootstrapped there.

    Both run on the `[num_envs, T]` batch (time last), stop at `("next", "terminated")` and bootstrap through
    truncation from the true final observation, and write `advantage`, `value_target` and `state_value`.
    `keys` = (done, terminated) to read instead, from `zoo.envs.learning_keys(env)` (Atari end of life).
    Without a `critic` they read `state_value` and `("next", "state_value")` from the batch.
    """
    if lam is None:
        estimator = TD1Estimator(gamma=gamma, value_network=critic)
    else:
        estimator = GAE(gamma=gamma, lmbda=lam, value_network=critic)
    estimator.set_keys(done=keys[0], terminated=keys[1])
    return estimator
