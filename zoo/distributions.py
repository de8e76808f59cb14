"""Action distributions of the policy-gradient family (REINFORCE, A2C, PPO), chosen by SLM-Lab's `action_pdtype`.

Each action space kind has its own names (SLM-Lab's `ACTION_PDS`; `default` is the first):
- Discrete: `Categorical` over logits; `Argmax` (all mass on the largest logit, SLM-Lab's deterministic
  stand-in: its log-prob has no gradient, so it does not learn by policy gradient); `GumbelSoftmax` (sampled
  by the Gumbel-max trick, which draws exactly from the Categorical of the same logits, hence its log-prob
  and entropy are the Categorical's).
- Box: `Normal` (diagonal Gaussian, TorchRL's `IndependentNormal`), `TanhNormal` (squashed into the bounds,
  TorchRL's), `Beta` (Chou et al. 2017, on [0, 1] and rescaled to the bounds: actions never leave the box),
  `MultivariateNormal` (full covariance: the diagonal scale plus learned correlations, for Box actions of two
  or more dimensions).
- MultiDiscrete: `MultiCategorical`, one independent Categorical per component.
- MultiBinary: `Bernoulli`, one independent Bernoulli per bit.

The classes below are torch distributions that TorchRL's `ProbabilisticActor` builds from the policy head's
outputs (their `param_keys`), with `log_prob` and `entropy` summed over action dimensions (one value per sample)
and a `deterministic_sample` for greedy evaluation. tests/unit/test_distributions.py checks them against
torch.distributions.
"""

import torch
from torch import distributions as D
from torch.nn import functional as F

ACTION_PDTYPES: dict[str, tuple[str, ...]] = {
    "Discrete": ("Categorical", "Argmax", "GumbelSoftmax"),
    "Box": ("Normal", "Beta", "TanhNormal", "MultivariateNormal"),
    "MultiDiscrete": ("MultiCategorical",),
    "MultiBinary": ("Bernoulli",),
}
NO_SHAPE = torch.Size()  # torch.distributions' default sample_shape
PDTYPE_CHOICES = ("default", *dict.fromkeys(name for names in ACTION_PDTYPES.values() for name in names))


def resolve_pdtype(pdtype: str, action_kind: str, action_dim: int | None = None) -> str:
    """The distribution name for `pdtype` on `action_kind` actions; ValueError naming the allowed ones if none."""
    allowed = ACTION_PDTYPES[action_kind]
    if pdtype == "default":
        return allowed[0]
    if pdtype not in allowed:
        raise ValueError(f"'{pdtype}' does not fit {action_kind} actions; allowed: default, {', '.join(allowed)}")
    if pdtype == "MultivariateNormal" and (action_dim or 0) < 2:
        raise ValueError("'MultivariateNormal' needs Box actions of 2 or more dimensions (these have "
                         f"{action_dim}); use Normal")
    return pdtype


class Argmax(D.Categorical):
    """All probability on the largest logit (ties share it), as SLM-Lab's `Argmax`."""

    def __init__(self, logits: torch.Tensor, validate_args: bool | None = None):
        top = logits == logits.amax(-1, keepdim=True)
        super().__init__(logits=torch.where(top, 0.0, -1e8).to(logits.dtype), validate_args=validate_args)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return self.logits.argmax(-1)


class GumbelSoftmax(D.Categorical):
    """Categorical actions drawn by the Gumbel-max trick: argmax(logits + Gumbel noise), SLM-Lab's hard sample.

    The argmax of Gumbel-perturbed logits follows Categorical(logits) exactly, so log-prob and entropy are the
    Categorical's (SLM-Lab's own `log_prob` is this too)."""

    def sample(self, sample_shape: torch.Size = NO_SHAPE) -> torch.Tensor:
        logits = self.logits.expand(*sample_shape, *self.logits.shape)
        gumbel = -torch.empty_like(logits).exponential_().log()
        return (logits + gumbel).argmax(-1)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return self.logits.argmax(-1)


class MultiCategorical(D.Distribution):
    """Independent Categoricals over the components of a MultiDiscrete action, from concatenated logits.

    `nvec` holds each component's number of choices and `start` their lowest values (gymnasium's
    `MultiDiscrete(nvec, start)`); actions are `[..., len(nvec)]` integers."""

    arg_constraints = {}
    has_rsample = False

    def __init__(self, logits: torch.Tensor, nvec: list[int], start: torch.Tensor | None = None,
                 validate_args: bool | None = None):
        self.nvec = list(nvec)
        self.start = torch.zeros(len(self.nvec), dtype=torch.long, device=logits.device) if start is None else start
        self.parts = [D.Categorical(logits=part) for part in logits.split(self.nvec, -1)]
        super().__init__(logits.shape[:-1], torch.Size([len(self.nvec)]), validate_args=False)

    def sample(self, sample_shape: torch.Size = NO_SHAPE) -> torch.Tensor:
        return torch.stack([part.sample(sample_shape) for part in self.parts], -1) + self.start

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        index = (value - self.start).long()
        return sum(part.log_prob(index[..., i]) for i, part in enumerate(self.parts))

    def entropy(self) -> torch.Tensor:
        return sum(part.entropy() for part in self.parts)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return torch.stack([part.logits.argmax(-1) for part in self.parts], -1) + self.start

    @property
    def mode(self) -> torch.Tensor:
        return self.deterministic_sample


class Bernoulli(D.Independent):
    """Independent Bernoulli bits of a MultiBinary action from logits; samples in the action spec's `dtype`."""

    def __init__(self, logits: torch.Tensor, dtype: torch.dtype = torch.int8, validate_args: bool | None = None):
        super().__init__(D.Bernoulli(logits=logits), 1, validate_args=False)
        self.action_dtype = dtype

    def sample(self, sample_shape: torch.Size = NO_SHAPE) -> torch.Tensor:
        return super().sample(sample_shape).to(self.action_dtype)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return super().log_prob(value.to(self.base_dist.logits.dtype))

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return (self.base_dist.logits > 0).to(self.action_dtype)

    @property
    def mode(self) -> torch.Tensor:
        return self.deterministic_sample


class Beta(D.Distribution):
    """Independent Beta(concentration1, concentration0) per action dimension, rescaled from [0, 1] to [low, high].

    log-prob and entropy include the rescale (-sum log(high - low), +sum log(high - low)); samples are kept a
    float32 resolution inside the box so that their log-prob stays finite. Greedy action: the mean."""

    arg_constraints = {}
    has_rsample = True

    def __init__(self, concentration1: torch.Tensor, concentration0: torch.Tensor, low: torch.Tensor,
                 high: torch.Tensor, validate_args: bool | None = None):
        self.beta = D.Beta(concentration1, concentration0)
        self.low, self.range = low, high - low
        super().__init__(concentration1.shape[:-1], concentration1.shape[-1:], validate_args=False)

    def _to_box(self, unit: torch.Tensor) -> torch.Tensor:
        eps = torch.finfo(unit.dtype).resolution
        return self.low + self.range * unit.clamp(eps, 1 - eps)

    def rsample(self, sample_shape: torch.Size = NO_SHAPE) -> torch.Tensor:
        return self._to_box(self.beta.rsample(sample_shape))

    def sample(self, sample_shape: torch.Size = NO_SHAPE) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        eps = torch.finfo(value.dtype).resolution
        unit = ((value - self.low) / self.range).clamp(eps, 1 - eps)
        return (self.beta.log_prob(unit) - self.range.log()).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (self.beta.entropy() + self.range.log()).sum(-1)

    @property
    def mean(self) -> torch.Tensor:
        return self.low + self.range * self.beta.mean

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return self.mean


class MultivariateNormal(D.MultivariateNormal):
    """torch's full-covariance Gaussian from (loc, scale_tril), with its mean as the greedy action."""

    def __init__(self, loc: torch.Tensor, scale_tril: torch.Tensor, validate_args: bool | None = None):
        super().__init__(loc, scale_tril=scale_tril, validate_args=False)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return self.mean


def beta_concentrations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Head outputs `[..., 2 * action_dim]` -> (concentration1, concentration0) >= 1: unimodal Betas (Chou et al.)."""
    alpha, beta = (1.0 + F.softplus(part) for part in x.chunk(2, -1))
    return alpha, beta

