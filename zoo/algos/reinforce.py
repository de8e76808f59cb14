"""REINFORCE (Williams 1992): Monte-Carlo policy gradient with an optional mean baseline and entropy bonus.

Each batch is `time_horizon` steps of every env. With `episodic` (the default) the return of step t is the
discounted reward-to-go to the end of its episode (`reward2go`), so a step is learned from once its episode has
ended: the steps of each env's unfinished episode wait in `EpisodeCarry` and join the next batch (SLM-Lab's
`OnPolicyReplay`: train on complete episodes), so every step of every episode enters the gradient once. Waiting
steps were collected by earlier policies (as in SLM-Lab, whose episodes also span updates); an episode that never
ends (no time limit, no termination) waits, and grows, for ever. Returns stop at truncation as well as
termination: without a critic there is nothing to bootstrap from.

`cross_entropy: q` (SLM-Lab's `OnPolicyCrossEntropy` memory, the cross-entropy method) learns only from the
episodes of a batch whose undiscounted return is at or above the batch's q-quantile (linear interpolation, as
`np.percentile`), their returns standardized among themselves.

With `episodic: false` each batch is learned from alone, as SLM-Lab's REINFORCE does with `OnPolicyBatchReplay`
(slm_lab/lib/math_util.py calc_returns over the batch's [T, num_envs] rewards): returns run to the batch's end
(the steps after the last episode end in a row get a cut-off return) and stop only at terminations, so a
time-limit truncation's return flows on into the same env's next episode, SLM-Lab's stand-in for a bootstrap.

Built from TorchRL: `ProbabilisticActor` and `A2CLoss` with `critic_coeff=None`, which computes exactly the
REINFORCE objective `-log pi(a|s) * G` plus the entropy bonus and never calls a critic. `ReinforceLoss` is not
used: it always trains a critic (TypeError without one) and has no entropy term. The collector acts through
`PlainPolicy` (the actor's draw in plain torch, zoo/algos/actor_critic.py).
"""

from dataclasses import dataclass, field

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torchrl.envs import EnvBase
from torchrl.modules import ValueOperator
from torchrl.objectives import A2CLoss
from torchrl.objectives.value.functional import reward2go

from zoo.agent import Agent
from zoo.algos.actor_critic import PlainPolicy, build_actor_critic, build_optimizers, optimizer_step
from zoo.distributions import PDTYPE_CHOICES
from zoo.envs import env_info, learning_keys
from zoo.schedules import Schedule
from zoo.spec import AlgorithmSpec, ScheduleSpec, Spec, SpecError, register_algorithm_spec, spec_field

NAMES = ("Reinforce",)


@register_algorithm_spec(*NAMES, memories=("OnPolicyBatchReplay", "OnPolicyReplay"),
                         nets=("MLPNet", "ConvNet", "StatelessRecurrentNet"), one_hot_actions=True,
                         multi_actions=True, head_gains=True)
@dataclass
class ReinforceAlgorithmSpec(AlgorithmSpec):
    """Hyperparameters of REINFORCE."""

    center_return: bool = spec_field(False, "subtract the batch's mean return (a constant baseline; SLM-Lab's switch)")
    normalize_advantage: bool = spec_field(False, "standardize the returns over each batch (after center_return; "
                                           "SLM-Lab's REINFORCE always does)")
    entropy_coef_spec: ScheduleSpec = spec_field(ScheduleSpec(start_val=0.01), "entropy bonus on the frame clock")
    time_horizon: int = spec_field(500, "steps per env in each batch; an episode is learned from in the batch where "
                                   "it ends, its earlier steps carried over (episodic)", low=1)
    episodic: bool = spec_field(True, "returns to each episode's end, unfinished episodes waiting for a later batch; "
                                "false: each batch alone, returns to the batch's end, cut at terminations only "
                                "(SLM-Lab's OnPolicyBatchReplay)")
    cross_entropy: float | None = spec_field(None, "learn only from each batch's episodes whose return is at or "
                                             "above this quantile of its episodes' (SLM-Lab's OnPolicyCrossEntropy; "
                                             "needs episodic)", low=0.0, high=1.0)
    action_pdtype: str = spec_field("default", "action distribution, SLM-Lab's names (default: Categorical, Normal, "
                                    "MultiCategorical or Bernoulli by action space; see zoo/distributions.py)",
                                    choices=PDTYPE_CHOICES)
    tanh_squash: bool = spec_field(False, "continuous actions: squash the Gaussian with tanh into the bounds "
                                   "(the same as action_pdtype: TanhNormal)")


class NoCritic(nn.Module):
    """A parameter-free stand-in for the critic `A2CLoss` insists on; never called with critic_coeff=None."""

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return observation.new_zeros(*observation.shape[:-1], 1)


def monte_carlo_returns(data: TensorDictBase, gamma: float, done_key: str = "done") -> torch.Tensor:
    """Discounted reward-to-go `[..., T, 1]` of each step to the end of its episode (a done at or after it)."""
    return reward2go(data["next", "reward"], data["next", done_key], gamma, time_dim=-2)


def best_episodes(episodes: TensorDictBase, done_key: str, quantile: float) -> torch.Tensor:
    """Mask `[M]` of the steps of whole episodes (flat, each ending in a done) whose undiscounted return is at or
    above the `quantile` of the episodes' returns."""
    done = episodes["next", done_key].reshape(-1).long()
    episode = torch.cumsum(done, 0) - done  # 0, 0, ..., 1, 1, ...: each step's episode index
    returns = torch.zeros(int(done.sum()), dtype=torch.float64).index_add_(
        0, episode, episodes["next", "reward"].reshape(-1).double())
    return returns[episode] >= torch.quantile(returns, quantile)


@dataclass
class EpisodeCarry:
    """The steps of each env's unfinished episode, held until a later batch ends it.

    `complete(batch)` joins each env's waiting steps to its `[T]` row of the batch and returns, flat `[M]`, every
    step up to the env's last done (whole episodes, each ending in a done); the steps after it wait. Only the
    keys REINFORCE learns from are kept. The waiting steps are part of the agent's state (`state_dict`): an
    exact resume continues their episodes."""

    done_key: str = "done"
    waiting: list[TensorDictBase] = field(default_factory=list)  # one [L_i] TensorDict per env

    def keys(self) -> tuple:
        return "observation", "action", ("next", "reward"), ("next", self.done_key)

    def complete(self, data: TensorDictBase) -> TensorDictBase:
        steps = data.select(*self.keys())
        num_envs, horizon = steps.shape
        if not self.waiting:
            self.waiting = [steps[i, :0] for i in range(num_envs)]
        done = steps["next", self.done_key].reshape(num_envs, horizon)
        # 1 + index of each env's last done in this batch, 0 without one (one host sync for all envs)
        ends = (done * torch.arange(1, horizon + 1, device=done.device)).amax(-1).tolist()
        finished = []
        for i, end in enumerate(ends):
            if end:
                finished += [self.waiting[i], steps[i, :end]]
                self.waiting[i] = steps[i, end:]
            else:
                self.waiting[i] = torch.cat([self.waiting[i], steps[i]], 0)
        return torch.cat(finished, 0) if finished else steps[0, :0]

    def state_dict(self) -> list[dict]:
        return [row.to_dict() for row in self.waiting]

    def load_state_dict(self, state: list[dict]) -> None:
        self.waiting = [TensorDict(row, batch_size=[len(row["observation"])]) for row in state]


@dataclass(kw_only=True)
class ReinforceAgent(Agent):
    """One gradient step per batch on the episodes that ended in it (their earlier steps carried over)."""

    algo_spec: ReinforceAlgorithmSpec
    params: list[nn.Parameter]
    carry: EpisodeCarry
    terminated_key: str = "terminated"
    clip_grad_val: float | None = None

    def update(self, data: TensorDictBase, frame: int) -> dict[str, torch.Tensor]:
        if self.algo_spec.episodic:
            episodes = self.carry.complete(data)
            if episodes.shape[0] == 0:  # no episode ended yet: nothing has a return
                return {}
            with torch.no_grad():
                returns = monte_carlo_returns(episodes, self.algo_spec.gamma, self.carry.done_key)
            if self.algo_spec.cross_entropy is not None:
                keep = best_episodes(episodes, self.carry.done_key, self.algo_spec.cross_entropy)
                episodes, returns = episodes[keep], returns[keep]
        else:
            episodes = data.select(*self.carry.keys()[:3])
            with torch.no_grad():
                returns = monte_carlo_returns(data, self.algo_spec.gamma, self.terminated_key).reshape(-1, 1)
            episodes = episodes.reshape(-1)
        lr = self.set_lr(frame)
        entropy_coef = self.schedules["entropy_coef"](frame)
        self.loss.entropy_coeff.fill_(entropy_coef)
        with torch.no_grad():
            if self.algo_spec.center_return:
                returns = returns - returns.mean()
            if self.algo_spec.normalize_advantage and returns.numel() > 1:
                returns = (returns - returns.mean()) / (returns.std() + 1e-8)
            episodes["advantage"] = returns
        out = self.loss(episodes)
        loss = out["loss_objective"] + out["loss_entropy"]
        optimizer_step(self.optimizers, loss, self.params, self.clip_grad_val)
        self.num_updates += 1
        return {"loss": loss.detach(), "entropy": out["entropy"], "entropy_coef": torch.tensor(entropy_coef),
                "lr_factor": torch.tensor(lr), "learned_steps": torch.tensor(float(episodes.shape[0]))}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "waiting_steps": self.carry.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.carry.load_state_dict(state["waiting_steps"])


def build(spec: Spec, env: EnvBase) -> Agent:
    """Assemble REINFORCE for `env` from the spec."""
    algo_spec, net_spec = spec.agent.algorithm, spec.agent.net
    if algo_spec.cross_entropy is not None and not algo_spec.episodic:
        raise SpecError("agent.algorithm.cross_entropy", "keeps a batch's best whole episodes, which needs episodic: "
                        "true")
    actor, _, module, nets = build_actor_critic(env, net_spec, pdtype=algo_spec.action_pdtype,
                                             tanh_squash=algo_spec.tanh_squash, critic=False)
    entropy_coef = Schedule(algo_spec.entropy_coef_spec)
    # entropy_coeff=1.0 only switches the term on (a zero coefficient would drop it); update() sets the value
    loss = A2CLoss(actor, ValueOperator(NoCritic(), in_keys=["observation"]), critic_coeff=None, entropy_coeff=1.0)
    return ReinforceAgent(
        policy=PlainPolicy(actor, nets, one_hot=env_info(env)["one_hot"]), actor=actor, loss=loss,
        optimizers=build_optimizers(net_spec, actor, None, module),
        frames_per_batch=algo_spec.time_horizon * spec.env.num_envs, max_frame=spec.env.max_frame,
        schedules={"entropy_coef": entropy_coef}, lr_scheduler_spec=net_spec.lr_scheduler_spec,
        algo_spec=algo_spec, params=list(module.parameters()), carry=EpisodeCarry(learning_keys(env)[0]),
        terminated_key=learning_keys(env)[1],
        clip_grad_val=net_spec.clip_grad_val,
    )
