"""Spec files: schema, loading, templating, dotted overrides and validation.

A spec file (YAML or JSON) holds one spec (top-level `agent`, `env`, `meta`, optional `search`) or several
named specs (`name: {agent, env, meta, search}`). Every section is a dataclass below; each field carries a
default and a one-line doc (`field_doc`). The algorithm section is polymorphic: its `name` picks the
dataclass that each algorithm file registers with `register_algorithm_spec`.

Every problem is reported as one `SpecError` naming the file, the dotted field and what is allowed.
"""

import dataclasses
import difflib
import importlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REQUIRED = object()
TEMPLATE = re.compile(r"\$\{(\w+)\}")
# A dotted override prefixed `source.` sets a field of a foreign spec file (SLM-Lab's) before it is translated,
# with that format's meaning: how a search over a field that does not map to one zoo field runs its trials
SOURCE_PREFIX = "source."
ACTIVATIONS = ("relu", "tanh", "elu", "leaky_relu", "sigmoid", "selu", "gelu", "silu", "identity")
INIT_FNS = ("default", "orthogonal", "xavier_uniform", "kaiming_uniform")
SCHEDULES = ("no_decay", "linear_decay", "rate_decay", "periodic_decay")
OPTIMIZERS = ("Adam", "AdamW", "RMSprop", "SGD")
LR_SCHEDULERS = ("linear_to_zero", "StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR")
NET_TYPES = ("MLPNet", "DuelingMLPNet", "ConvNet", "DuelingConvNet", "RecurrentNet", "StatelessRecurrentNet")
CELL_TYPES = ("LSTM", "GRU")
MEMORY_NAMES = ("Replay", "PrioritizedReplay", "OnPolicyReplay", "OnPolicyBatchReplay")
TARGET_UPDATES = ("replace", "polyak")
COLLECTORS = ("sync", "multi_sync", "multi_async", "ray")
DISTRIBUTED = (False, "synced", "shared")


class SpecError(ValueError):
    """A spec problem, printed as one line: `<file>: <dotted.field>: <what is wrong and what is allowed>`."""

    def __init__(self, where: str, message: str, file: str | None = None):
        self.where, self.message, self.file = where, message, file
        super().__init__(self.line())

    def line(self) -> str:
        parts = [p for p in (self.file, self.where) if p]
        return ": ".join([*parts, self.message])


def spec_field(
    default: Any = REQUIRED,
    doc: str = "",
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: tuple[str, ...] | None = None,
    length: int | tuple[int, ...] | None = None,
    min_len: int | None = None,
    max_len: int | None = None,
    item: dict[str, Any] | None = None,
    positions: tuple[dict[str, Any], ...] | None = None,
    form: str | None = None,
) -> Any:
    """A dataclass field with a one-line doc and optional constraints, checked whenever a spec is loaded.

    Scalar constraints (`low` / `high`, closed unless `low_open` / `high_open`, and `choices`) bound the value,
    or every element of a list at any depth. Size constraints bound a list: `length` (one size, or a tuple of
    allowed sizes), `min_len`, `max_len`. The elements of a list of lists get their own constraints from `item`
    (made with `check`), and `positions` constrains element i of a list with `positions[i]` (a `check` that may
    carry a `name`, e.g. the `stride` of a conv layer); `form` describes the expected shape in size errors."""
    meta = {"doc": doc, **check(low=low, high=high, low_open=low_open, high_open=high_open, choices=choices,
                                length=length, min_len=min_len, max_len=max_len, item=item, positions=positions,
                                form=form)}
    if default is REQUIRED:
        return field(default=None, metadata={**meta, "required": True})
    if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: _copy(default), metadata=meta)
    return field(default=default, metadata=meta)


SCALAR_CHECKS = ("low", "high", "low_open", "high_open", "choices")


def check(*, name: str | None = None, **constraints: Any) -> dict[str, Any]:
    """Constraints as `spec_field` takes them (see there), for `item` and `positions`; `name` labels a position."""
    meta = {k: v for k, v in constraints.items() if v is not None and v is not False}
    if name is not None:
        meta["name"] = name
    return meta


def _copy(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value)
    return json.loads(json.dumps(value))


# ---------------------------------------------------------------------------------------------- sections
CONV_LAYER = check(length=(3, 5), form="([out_channels, kernel, stride] or SLM-Lab's [out_channels, kernel, stride, "
                   "padding, dilation])", positions=(
                       check(low=1, name="out_channels"), check(low=1, name="kernel"), check(low=1, name="stride"),
                       check(low=0, name="padding"), check(low=1, name="dilation")))


@dataclass
class ScheduleSpec:
    """A value on the frame clock: constant, or annealed between `start_step` and `end_step` frames."""

    name: str = spec_field("no_decay", "shape of the schedule", choices=SCHEDULES)
    start_val: float = spec_field(1.0, "value at and before start_step")
    end_val: float | None = spec_field(None, "value at and after end_step (default: start_val)")
    start_step: int = spec_field(0, "frame at which annealing starts", low=0)
    end_step: int = spec_field(0, "frame at which annealing ends", low=0)
    frequency: int = spec_field(20000, "period in frames, for periodic_decay", low=1)


@dataclass
class OptimSpec:
    """A torch optimizer."""

    name: str = spec_field("Adam", "torch.optim class", choices=OPTIMIZERS)
    lr: float = spec_field(1e-3, "learning rate", low=0.0, low_open=True)
    eps: float = spec_field(1e-8, "denominator epsilon (Adam, AdamW, RMSprop)", low=0.0, low_open=True)
    weight_decay: float = spec_field(0.0, "L2 penalty / decoupled weight decay", low=0.0)
    momentum: float = spec_field(0.0, "momentum (SGD, RMSprop)", low=0.0, high=1.0)
    alpha: float = spec_field(0.99, "smoothing constant (RMSprop)", low=0.0, high=1.0)
    betas: list[float] | None = spec_field(None, "Adam/AdamW moment decay rates [beta1, beta2] (None: torch's "
                                           "[0.9, 0.999])", low=0.0, high=1.0, high_open=True, length=2)


@dataclass
class LRSchedulerSpec:
    """A learning-rate schedule stepped on the frame clock (once per update)."""

    name: str = spec_field("linear_to_zero", "linear_to_zero, or a torch.optim.lr_scheduler class",
                           choices=LR_SCHEDULERS)
    step_size: int = spec_field(100000, "frames between decays (StepLR)", low=1)
    gamma: float = spec_field(0.9, "decay factor (StepLR, ExponentialLR)", low=0.0, low_open=True, high=1.0)
    end_factor: float = spec_field(0.0, "final lr factor (linear_to_zero, LinearLR)", low=0.0, high=1.0)


@dataclass
class LossSpec:
    """A regression loss for value functions."""

    name: str = spec_field("MSELoss", "value loss", choices=("MSELoss", "SmoothL1Loss"))


@dataclass
class AlgorithmSpec:
    """Fields every algorithm has; each algorithm file subclasses this with its own hyperparameters."""

    name: str = spec_field(REQUIRED, "algorithm name")
    gamma: float = spec_field(0.99, "discount factor", low=0.0, low_open=True, high=1.0)


@dataclass
class MemorySpec:
    """Where experience is kept between collection and learning."""

    name: str = spec_field("Replay", "memory type; when omitted, the algorithm's first accepted one (see "
                           "agent.algorithm[NAME]; the OnPolicy* names: learn from each batch, no replay)",
                           choices=MEMORY_NAMES)
    max_size: int = spec_field(100000, "capacity in transitions (off-policy)", low=1)
    batch_size: int = spec_field(64, "transitions sampled per gradient step (off-policy)", low=1)
    alpha: float = spec_field(0.6, "prioritization exponent (PrioritizedReplay)", low=0.0, high=1.0)
    beta: float = spec_field(0.4, "initial importance-sampling exponent, annealed to 1 (PrioritizedReplay)",
                             low=0.0, high=1.0)
    epsilon: float = spec_field(1e-6, "added to |TD error| so every priority is positive", low=0.0, low_open=True)
    sil_replay_name: str | None = spec_field(None, "SIL / PPOSIL: the self-imitation replay of past episodes with "
                                             "their returns, drawn with max_size, batch_size (and alpha, beta, "
                                             "epsilon when prioritized by the clipped advantage); None: Replay",
                                             choices=("Replay", "PrioritizedReplay"))
    use_cer: bool = spec_field(False, "combined experience replay (Zhang & Sutton 2017): the transitions stored since "
                               "the last draw join the next batch (Replay, PrioritizedReplay; not stacked frames)")


@dataclass
class NetSpec:
    """Networks, their optimizers and target updates."""

    type: str = spec_field("MLPNet", "network type (StatelessRecurrentNet: SLM-Lab's RecurrentNet, an RNN over seq_len "
                           "copies of the current observation from a zero state, no memory between steps)",
                           choices=NET_TYPES)
    hid_layers: list[int] = spec_field([64, 64], "hidden layer widths of the MLP (after the conv trunk if any)",
                                       low=1)
    hid_layers_activation: str = spec_field("relu", "activation between layers", choices=ACTIVATIONS)
    layer_norm: bool = spec_field(False, "LayerNorm after each hidden Linear of the MLPs, before its activation (as "
                                  "SLM-Lab's layer_norm; not in CrossQ's batch-renormalized critics)")
    critic_hid_layers: list[int] | None = spec_field(None, "hidden widths of the critics when they differ from "
                                                     "hid_layers (None: hid_layers)", low=1)
    conv_hid_layers: list[list[int]] = spec_field(
        [[32, 8, 4], [64, 4, 2], [64, 3, 1]],
        "conv layers as [out_channels, kernel, stride] or [out_channels, kernel, stride, padding, dilation] (ConvNet)",
        item=CONV_LAYER)
    cell_type: str = spec_field("LSTM", "recurrent cell of RecurrentNet (TorchRL's LSTMModule / GRUModule)",
                                choices=CELL_TYPES)
    fc_hid_layers: list[int] = spec_field([], "RecurrentNet: MLP widths before the recurrent layers (hid_layers: "
                                          "the heads' widths after them)", low=1)
    rnn_hidden_size: int = spec_field(64, "RecurrentNet: hidden state size of each recurrent layer", low=1)
    rnn_num_layers: int = spec_field(1, "RecurrentNet: stacked recurrent layers", low=1)
    seq_len: int | None = spec_field(None, "RecurrentNet: training sequence length; each batch row is cut into "
                                     "sequences of seq_len steps, each starting from its stored hidden state "
                                     "(None: whole rows); StatelessRecurrentNet: copies of the observation fed to "
                                     "the RNN (required)", low=1)
    init_fn: str = spec_field("default", "weight initialisation", choices=INIT_FNS)
    init_gain: float | None = spec_field(None, "gain of init_fn orthogonal / xavier_uniform (None: ReLU's sqrt(2) "
                                         "for orthogonal, 1 for xavier_uniform; SLM-Lab takes its activation's)",
                                         low=0.0, low_open=True)
    actor_init_gain: float | None = spec_field(None, "gain of the policy's output layer under init_fn orthogonal / "
                                               "xavier_uniform (None: 0.01 with orthogonal, a near-uniform initial "
                                               "policy; init_gain with xavier_uniform)", low=0.0, low_open=True)
    critic_init_gain: float | None = spec_field(None, "gain of the value head's output layer under init_fn "
                                                "orthogonal / xavier_uniform (None: init_gain)", low=0.0,
                                                low_open=True)
    shared: bool = spec_field(False, "actor and critic share one trunk (actor-critic)")
    state_dependent_std: bool = spec_field(False, "Gaussian log std from the network instead of a free parameter")
    log_std_init: float = spec_field(0.0, "initial log std of Gaussian policies")
    clip_grad_val: float | None = spec_field(None, "max global gradient norm (None: no clipping)", low=0.0,
                                             low_open=True)
    clip_grad_per_net: bool = spec_field(False, "clip_grad_val bounds each net's own gradient norm (actor and critic "
                                         "apart, as SLM-Lab) instead of their global norm (A2C, PPO; the off-policy "
                                         "actor-critics always clip each net's own)")
    loss_spec: LossSpec = spec_field(LossSpec(), "value regression loss")
    optim_spec: OptimSpec = spec_field(OptimSpec(), "optimizer (single or shared network)")
    actor_optim_spec: OptimSpec | None = spec_field(None, "actor optimizer when not shared (default: optim_spec)")
    critic_optim_spec: OptimSpec | None = spec_field(None, "critic optimizer when not shared (default: optim_spec)")
    lr_scheduler_spec: LRSchedulerSpec | None = spec_field(None, "learning-rate schedule on the frame clock")
    update_type: str = spec_field("replace", "target network update; when omitted, the algorithm's first (see "
                                  "agent.algorithm[NAME])", choices=TARGET_UPDATES)
    update_frequency: int = spec_field(500, "frames between target replacements (replace)", low=1)
    polyak_coef: float = spec_field(0.005, "target <- coef * online + (1 - coef) * target (polyak)", low=0.0,
                                    high=1.0)


@dataclass
class AgentSpec:
    """The learner: algorithm, memory and networks."""

    algorithm: AlgorithmSpec = spec_field(REQUIRED, "algorithm and its hyperparameters")
    memory: MemorySpec = spec_field(MemorySpec(), "replay or on-policy memory")
    net: NetSpec = spec_field(NetSpec(), "networks and optimizers")


@dataclass
class EnvSpec:
    """The environment: a gymnasium id or `module:factory`, vectorized `num_envs` times."""

    name: str = spec_field(REQUIRED, "gymnasium id (e.g. CartPole-v1, ALE/Pong-v5, VizdoomBasic-v1) or "
                           "'module:factory'")
    num_envs: int = spec_field(1, "environments stepped together", low=1)
    max_frame: int = spec_field(REQUIRED, "training budget in frames (env steps summed over num_envs)", low=1)
    max_t: int | None = spec_field(None, "episode step limit (default: the env's own)", low=1)
    normalize_obs: bool = spec_field(False, "running observation normalization (frozen in evaluation)")
    normalize_reward: bool = spec_field(False, "scale rewards by a running std of the discounted return")
    clip_obs: float | None = spec_field(None, "clip normalized observations to [-clip_obs, clip_obs]", low=0.0,
                                        low_open=True)
    episode_life: bool = spec_field(True, "Atari: a lost life ends the learning episode (not the score)")
    clip_reward: bool = spec_field(True, "Atari: learn from rewards clipped to [-1, 1] (scores stay raw)")
    obs_mask: list[int] | None = spec_field(None, "keep only the observation components flagged 1, e.g. [1, 0, 1, 0] "
                                            "drops CartPole's velocities (a partially observed task); one flag per "
                                            "component of a 1-D observation", low=0, high=1, min_len=1)
    reward_scale: float = spec_field(1.0, "multiply the rewards the learner sees (not Atari; recorded returns and "
                                     "evaluation stay raw)", low=0.0, low_open=True)
    frame_skip: int = spec_field(1, "VizDoom: game tics per action, rewards summed over them (ALE ids: "
                                 "env.kwargs.frameskip)", low=1)
    frame_stack: int = spec_field(1, "VizDoom: newest grayscale frames stacked as the observation's channels", low=1)
    screen_size: list[int] = spec_field([84, 84], "VizDoom: [height, width] the grayscale screen is resized to",
                                        low=8, length=2)
    kwargs: dict[str, Any] = spec_field({}, "extra keyword arguments for gym.make or the factory")
    collector: str = spec_field("sync", "who steps the envs: sync (this process, TorchRL's Collector), multi_sync / "
                                "multi_async (TorchRL's MultiSyncCollector / MultiAsyncCollector: env.num_workers "
                                "processes, each stepping num_envs / num_workers copies; multi_sync joins their "
                                "batches into one, multi_async hands the learner each worker's batch of the same size "
                                "as it arrives; its workers act with the learner's shared-memory weights, see "
                                "meta.distributed), ray (TorchRL's "
                                "RayCollector: env.num_workers Ray actors on the cluster env.ray_address, batches "
                                "joined as multi_sync's; a worker that dies is restarted by Ray)", choices=COLLECTORS)
    num_workers: int = spec_field(1, "collector processes (env.collector multi_sync, multi_async) or Ray actors "
                                  "(ray); must divide num_envs", low=1)
    ray_address: str = spec_field("local", "env.collector ray: the Ray cluster, local (a Ray instance started for "
                                  "this run on this machine), auto (the cluster `ray start` runs here) or "
                                  "host:port (a cluster's head; needs the distributed extra)")


@dataclass
class MetaSpec:
    """How the run is driven: seeds, logging, evaluation, devices."""

    max_session: int = spec_field(1, "sessions (seeds) per trial", low=1)
    max_trial: int = spec_field(1, "trials per search", low=1)
    seed: int | None = spec_field(None, "root seed (None: drawn at random and recorded)", low=0)
    log_frequency: int = spec_field(10000, "frames between log lines and metric rows", low=1)
    eval_frequency: int = spec_field(10000, "frames between evaluations and checkpoints", low=1)
    eval_episodes: int = spec_field(10, "episodes per evaluation", low=1)
    device: str = spec_field("cpu", "where networks live (auto: CUDA when present, except "
                                   "with a multi-process collector, whose workers act with CPU copies)",
                                   choices=("auto", "cpu", "cuda"))
    num_threads: int | None = spec_field(1, "torch intra-op threads (None: torch default)", low=1)
    compile: bool = spec_field(False, "torch.compile the update step")
    distributed: bool | str = spec_field(False, "A3C-style asynchronous actor-learners on env.collector multi_async "
                                         "(env.num_workers >= 2; A2C, PPO): the learner applies each worker's batch "
                                         "as it arrives. synced: the workers act with a copy of the policy, "
                                         "refreshed after every update (SLM-Lab's synced: pull after each push); "
                                         "shared: workers act with the learner's shared-memory parameters, seeing "
                                         "each update as the optimizer writes it (SLM-Lab's shared, Hogwild, but one "
                                         "learner writes: no racing gradients, policy lag instead; see "
                                         "zoo/components.py); false: not distributed (false|synced|shared)")
    ckpt_replay: bool = spec_field(False, "include the replay buffer in checkpoints")
    search_scheduler: str | None = spec_field(None, "search pruning", choices=("median", "successive_halving"))
    grace_period: int = spec_field(1, "evaluations before a trial may be pruned", low=1)
    reduction_factor: int = spec_field(3, "successive halving reduction factor", low=2)


@dataclass
class Spec:
    """A complete spec. `name` comes from the spec's key in a multi-spec file, else the file's stem."""

    agent: AgentSpec = spec_field(REQUIRED, "the learner")
    env: EnvSpec = spec_field(REQUIRED, "the environment")
    meta: MetaSpec = spec_field(MetaSpec(), "run control")
    search: dict[str, Any] = spec_field({}, "search space: dotted keys with a __distribution suffix")
    name: str = field(default="spec", init=False)
    translation: list[str] = field(default_factory=list, init=False)  # notes of a file in another format (slm)


@dataclass(frozen=True)
class AlgorithmSupport:
    """What an algorithm's builder reads outside its own section; `validate` rejects the rest at load time."""

    memories: tuple[str, ...]  # agent.memory.name values; the first is taken when a spec names none
    nets: tuple[str, ...]  # agent.net.type values; () = no networks (agent.net left at its defaults)
    shared: bool = False  # agent.net.shared: true (one trunk for actor and critic)
    split_optims: bool = False  # agent.net.actor_optim_spec / critic_optim_spec (separate actor and critic)
    compile: bool = False  # meta.compile: true (torch.compile of the update)
    targets: tuple[str, ...] = ()  # agent.net.update_type values (the first is the default); () = no target network
    one_hot_actions: bool = False  # its parts also follow a one-hot discrete action spec (zoo.build(spec, env=...))
    multi_actions: bool = False  # it also acts in MultiDiscrete and MultiBinary action spaces
    layer_norm: bool = True  # agent.net.layer_norm: true (false where a fast loss reads the MLPs' Linear layers)
    critic_layers: bool = False  # agent.net.critic_hid_layers (critics of their own width)
    sil_replay: bool = False  # agent.memory.sil_replay_name and the replay fields (a self-imitation replay)
    head_gains: bool = False  # agent.net.actor_init_gain / critic_init_gain (policy and value heads of actor_critic.py)
    distributed: bool = False  # meta.distributed synced | shared (asynchronous actor-learners, on-policy actor-critics)

    def describe(self) -> str:
        extras = [word for word, on in (("shared trunk", self.shared), ("actor/critic optimizers", self.split_optims),
                                        ("meta.compile", self.compile), ("one-hot actions", self.one_hot_actions),
                                        ("MultiDiscrete / MultiBinary actions", self.multi_actions),
                                        ("layer norm", self.layer_norm), ("critic_hid_layers", self.critic_layers),
                                        ("self-imitation replay", self.sil_replay),
                                        ("actor/critic head gains", self.head_gains),
                                        ("meta.distributed", self.distributed))
                  if on]
        targets = f"target update: {'|'.join(self.targets)}" if self.targets else "no target network"
        nets = f"net: {'|'.join(self.nets)}" if self.nets else "no networks"
        return "; ".join([f"memory: {'|'.join(self.memories)}", nets, targets, *extras])


ALGORITHM_SPECS: dict[str, type[AlgorithmSpec]] = {}
ALGORITHM_SUPPORT: dict[str, AlgorithmSupport] = {}


def register_algorithm_spec(*names: str, memories: tuple[str, ...], nets: tuple[str, ...], shared: bool = False,
                            split_optims: bool = False, compile: bool = False, targets: tuple[str, ...] = (),
                            one_hot_actions: bool = False, multi_actions: bool = False, layer_norm: bool = True,
                            critic_layers: bool = False, sil_replay: bool = False, head_gains: bool = False,
                            distributed: bool = False):
    """Class decorator: `agent.algorithm.name` values in `names` are parsed with the decorated dataclass.

    The keywords declare what the algorithm accepts outside its section (see `AlgorithmSupport`): the memory
    names (the first is its default) and net types it builds (none: it has no networks, and every `agent.net` field
    must keep its default), whether it honours `agent.net.shared`, separate
    `actor_optim_spec` / `critic_optim_spec` and `meta.compile`, and its target-network updates (`targets`:
    `agent.net.update_type` values, the first its default; none without target networks). Specs asking for
    anything else fail to load. `one_hot_actions`: its policy, actor and loss also work with an env whose discrete
    actions are one-hot (TorchRL's `GymEnv` default); `zoo.build` refuses such an env otherwise. `multi_actions`: it
    also builds for MultiDiscrete and MultiBinary action spaces (`zoo.build` refuses them otherwise). `layer_norm`: it
    builds `agent.net.layer_norm` nets (default); `critic_layers`: its critics take `agent.net.critic_hid_layers`;
    `sil_replay`: it keeps a self-imitation replay (`agent.memory.sil_replay_name` and that replay's fields);
    `head_gains`: its policy and value heads take `agent.net.actor_init_gain` / `critic_init_gain`; `distributed`: it
    learns from asynchronous actor-learners (`meta.distributed` synced / shared: each batch as a worker sends it)."""
    unknown = [m for m in memories if m not in MEMORY_NAMES] + [n for n in nets if n not in NET_TYPES] + [
        t for t in targets if t not in TARGET_UPDATES]
    if unknown or not memories:
        raise ValueError(f"register_algorithm_spec{names}: unknown or missing memories / nets / targets {unknown}")
    support = AlgorithmSupport(tuple(memories), tuple(nets), shared, split_optims, compile, tuple(targets),
                               one_hot_actions, multi_actions, layer_norm, critic_layers, sil_replay, head_gains,
                               distributed)

    def decorate(cls: type[AlgorithmSpec]) -> type[AlgorithmSpec]:
        for name in names:
            ALGORITHM_SPECS[name] = cls
            ALGORITHM_SUPPORT[name] = support
        return cls

    return decorate


def is_atari(env_name: str) -> bool:
    """Whether `env_name` gets zoo's Atari preprocessing (zoo/atari.py): the ALE ids, `ALE/<Game>-v5`."""
    return env_name.startswith("ALE/")


def is_vizdoom(env_name: str) -> bool:
    """Whether `env_name` gets zoo's VizDoom preprocessing (zoo/vizdoom.py): ViZDoom's ids, `Vizdoom<Scenario>-v1`."""
    return env_name.startswith("Vizdoom")


# -------------------------------------------------------------------------------------- typed conversion
def _suggest(word: str, options: typing.Iterable[str], list_all: bool = False) -> str:
    """'did you mean X?' for a near miss, and/or the allowed options."""
    options = list(options)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    allowed = "allowed: " + ", ".join(options)
    if close:
        return f"did you mean '{close[0]}'? ({allowed})" if list_all else f"did you mean '{close[0]}'?"
    return allowed


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp)).replace("list", "a list").replace("dict", "a mapping")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a parsed YAML value to the annotated type, or raise SpecError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except SpecError as err:
                errors.append(err)
        raise errors[0]
    if tp is Any:
        return value
    if tp is AlgorithmSpec:
        return _build_algorithm(value, where)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, where)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise SpecError(where, f"expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise SpecError(where, f"expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise SpecError(where, f"expected true or false, got {value!r}")
    if tp is int:
        number = _number(value)
        if number is not None and float(number).is_integer():
            return int(number)
        raise SpecError(where, f"expected an integer, got {value!r}")
    if tp is float:
        number = _number(value)
        if number is not None:
            return float(number)
        raise SpecError(where, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise SpecError(where, f"expected a string, got {value!r}")
    raise SpecError(where, f"unsupported field type {tp}")


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):  # YAML 1.1 reads `1e5` as a string
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _check(value: Any, meta: typing.Mapping[str, Any], where: str) -> None:
    """Apply a field's constraints (see `spec_field`) to its converted value."""
    if value is None:
        return
    if isinstance(value, list):
        _check_size(value, meta, where)
        positions = meta.get("positions", ())
        for i, element in enumerate(value):
            inner = meta["item"] if "item" in meta else {k: meta[k] for k in SCALAR_CHECKS if k in meta}
            if i < len(positions):
                inner = {**inner, **positions[i]}
            _check(element, inner, f"{where}[{i}]")
        return
    label = f" ({meta['name']})" if meta.get("name") else ""
    choices = meta.get("choices")
    if choices and value not in choices:
        raise SpecError(where, f"'{value}'{label} is not allowed; {_suggest(str(value), choices, list_all=True)}")
    low, high = meta.get("low"), meta.get("high")
    if not isinstance(value, int | float) or isinstance(value, bool) or (low is None and high is None):
        return
    below = low is not None and (value <= low if meta.get("low_open") else value < low)
    above = high is not None and (value >= high if meta.get("high_open") else value > high)
    if below or above:
        left = "(" if meta.get("low_open") else "["
        right = ")" if meta.get("high_open") else "]"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise SpecError(where, f"{value}{label} is out of range; allowed: {left}{lo}, {hi}{right}")


def _check_size(value: list, meta: typing.Mapping[str, Any], where: str) -> None:
    length, min_len, max_len = meta.get("length"), meta.get("min_len"), meta.get("max_len")
    sizes = (length,) if isinstance(length, int) else length
    if sizes is not None and len(value) not in sizes:
        expected = " or ".join(str(n) for n in sizes)
    elif min_len is not None and len(value) < min_len:
        expected = f"at least {min_len}"
    elif max_len is not None and len(value) > max_len:
        expected = f"at most {max_len}"
    else:
        return
    form = f" {meta['form']}" if meta.get("form") else ""
    raise SpecError(where, f"expected {expected} values{form}, got {len(value)}")


def build_dataclass(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and checking types and ranges."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(where, f"expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            raise SpecError(_join(where, key), f"unknown key; {_suggest(str(key), fields)}")
    kwargs = {}
    for name, f in fields.items():
        path = _join(where, name)
        if name not in raw:
            if f.metadata.get("required"):
                raise SpecError(path, f"missing required field ({f.metadata.get('doc', '')})")
            continue
        value = _coerce(raw[name], hints[name], path)
        _check(value, f.metadata, path)
        kwargs[name] = value
    return cls(**kwargs)


def register_algorithms() -> None:
    """Import `zoo.algos`, whose modules register their spec dataclasses here (they import torch: deferred
    until a spec is read, so `import zoo.spec` and `--help` stay light)."""
    if not ALGORITHM_SPECS:
        importlib.import_module("zoo.algos")


def _build_algorithm(raw: Any, where: str) -> AlgorithmSpec:
    register_algorithms()
    if not isinstance(raw, dict):
        raise SpecError(where, f"expected a mapping, got {raw!r}")
    name = raw.get("name")
    if name is None:
        raise SpecError(_join(where, "name"), "missing required field; known: " + ", ".join(sorted(ALGORITHM_SPECS)))
    if name not in ALGORITHM_SPECS:
        raise SpecError(_join(where, "name"), f"unknown algorithm '{name}'; "
                        + _suggest(str(name), sorted(ALGORITHM_SPECS), list_all=True))
    return build_dataclass(ALGORITHM_SPECS[name], raw, where)


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


# --------------------------------------------------------------------------------------------- loading
def read_spec_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON spec file into plain data (safe_load only)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError("", f"cannot read spec file ({err.strerror})", file=str(path)) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SpecError("", f"malformed {path.suffix.lstrip('.') or 'spec'} file{at}", file=str(path)) from None
    if not isinstance(data, dict):
        raise SpecError("", "a spec file must hold a mapping", file=str(path))
    return data


def spec_names(data: dict[str, Any]) -> list[str]:
    """Names of the specs in a multi-spec file (not anchor blocks, `_name: &anchor`); empty for a single spec."""
    return [] if "agent" in data or "env" in data else [k for k in data if not str(k).startswith("_")]


@dataclass(frozen=True)
class SpecFormat:
    """Another project's spec format that zoo reads: `detect(data)` recognises a file's data by its shape,
    `translate(raw, file)` turns one of its specs (templates filled) into zoo's raw spec data plus notes on where
    zoo's behaviour differs (raising SpecError with every untranslatable field)."""

    detect: typing.Callable[[Any], bool]
    translate: typing.Callable[[dict[str, Any], str], tuple[dict[str, Any], list[str]]]


SPEC_FORMATS: dict[str, SpecFormat] = {}


def register_spec_format(name: str, fmt: SpecFormat) -> None:
    """Make `load_spec` read files of format `name` (chosen by `fmt=` or recognised by `fmt.detect`)."""
    SPEC_FORMATS[name] = fmt


def register_formats() -> None:
    """Import the formats zoo ships (SLM-Lab's, `zoo.slm`), which register themselves here; deferred like
    `register_algorithms` so that `import zoo.spec` stays light."""
    if "slm" not in SPEC_FORMATS:
        importlib.import_module("zoo.slm")


def detect_format(data: Any) -> str:
    """`zoo`, or the name of the registered format whose shape the file's data has."""
    register_formats()
    return next((name for name, fmt in SPEC_FORMATS.items() if fmt.detect(data)), "zoo")


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b.c=value` -> ("a.b.c", YAML-parsed value)."""
    if "=" not in text:
        raise SpecError("-s", f"'{text}' is not key=value")
    key, _, raw = text.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Fill `${var}` templates from dotless overrides, then set dotted keys (new keys are validated later)."""
    variables = {k: v for k, v in overrides.items() if "." not in k}
    data = _fill_templates(data, variables)
    used = _template_names(json.dumps(data))
    if used:
        names = sorted(used)
        hint = " ".join(f"-s {n}=..." for n in names)
        raise SpecError(", ".join(names), f"template variable has no value; pass {hint}")
    for key, value in overrides.items():
        if "." not in key:
            continue
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise SpecError(".".join(parts[: i + 1]), "is not a section; cannot override below it")
            node = child
        node[parts[-1]] = value
    return data


def _template_names(text: str) -> set[str]:
    return set(TEMPLATE.findall(text))


def _fill_templates(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _fill_templates(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_templates(v, variables) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = TEMPLATE.fullmatch(value)
    if whole and whole.group(1) in variables:
        return variables[whole.group(1)]
    return TEMPLATE.sub(lambda m: str(variables[m.group(1)]) if m.group(1) in variables else m.group(0), value)


def load_spec(path: str | Path, name: str | None = None, overrides: list[str] | dict[str, Any] | None = None,
              fmt: str | None = None) -> Spec:
    """Load, template, override and validate one spec from a file.

    `fmt` names the file's format (`zoo` or a registered one such as `slm`); by default it is recognised by its
    shape. A foreign spec is translated after its `${var}` templates are filled and its `source.`-prefixed
    overrides set; the other dotted overrides then set zoo's fields, and the translation notes land in
    `spec.translation`."""
    path = Path(path)
    data = read_spec_file(path)
    register_formats()
    fmt = fmt or detect_format(data)
    if fmt != "zoo" and fmt not in SPEC_FORMATS:
        raise SpecError("--format", f"unknown spec format '{fmt}'; allowed: zoo, " + ", ".join(SPEC_FORMATS))
    notes: list[str] = []
    if isinstance(overrides, list):
        overrides = dict(parse_override(text) for text in overrides)
    overrides = overrides or {}
    source = {k.removeprefix(SOURCE_PREFIX): v for k, v in overrides.items() if k.startswith(SOURCE_PREFIX)}
    overrides = {k: v for k, v in overrides.items() if not k.startswith(SOURCE_PREFIX)}
    names = spec_names(data)
    try:
        if source and fmt == "zoo":
            raise SpecError(SOURCE_PREFIX + next(iter(source)), "sets a field of a foreign (SLM-Lab) spec file before "
                            f"translation; this file is zoo's own format: drop the '{SOURCE_PREFIX}' prefix")
        if names:
            if name is None:
                if len(names) > 1:
                    raise SpecError("", "file holds several specs; name one of: " + ", ".join(names))
                name = names[0]
            if name not in data:
                raise SpecError("", f"no spec named '{name}'; {_suggest(name, names)}")
            raw = data[name]
        else:
            if name is not None and name != path.stem:
                raise SpecError("", f"file holds a single spec; no spec named '{name}'")
            raw, name = data, path.stem
        unused = [k for k in overrides if "." not in k and k not in _template_names(json.dumps(raw))]
        if fmt != "zoo":  # as SLM-Lab's `-s var=value`, a variable this spec has no template for is ignored
            overrides = {k: v for k, v in overrides.items() if k not in unused}
        elif unused:
            raise SpecError(unused[0], "is neither a dotted field nor a ${var} template in this spec")
        raw = json.loads(json.dumps(raw))
        if fmt != "zoo":
            raw = apply_overrides(raw, {**{k: v for k, v in overrides.items() if "." not in k}, **source})
            raw, notes = SPEC_FORMATS[fmt].translate(raw, str(path))
            overrides = {k: v for k, v in overrides.items() if "." in k}
        raw = apply_overrides(raw, overrides)
        spec = build_dataclass(Spec, raw, "")
    except SpecError as err:
        if err.file:
            raise
        raise SpecError(err.where, err.message, file=str(path)) from None
    spec.name = name
    spec.translation = notes
    validate(spec, str(path), raw)
    return spec


def validate(spec: Spec, file: str | None = None, raw: dict[str, Any] | None = None) -> None:
    """Cross-field checks that no single field can make, and the algorithm's declared support.

    `raw` is what the spec file and overrides wrote (before defaults): where it names no `agent.memory.name` or
    `agent.net.update_type`, the algorithm's own default is filled in (without `raw`, every field counts as
    written)."""
    try:
        _check_distributed(spec)
        _check_algorithm_support(spec, raw)
        _check_env(spec.env)
    except SpecError as err:
        raise SpecError(err.where, err.message, file=file) from None
    if spec.env.collector != "sync" and spec.meta.device == "cuda":
        raise SpecError("meta.device", f"'{spec.meta.device}': env.collector {spec.env.collector}'s workers act with "
                        "CPU copies of the policy; allowed: cpu (or env.collector: sync)", file=file)
    mem = spec.agent.memory
    if mem.name in ("Replay", "PrioritizedReplay") and mem.batch_size > mem.max_size:
        raise SpecError("agent.memory.batch_size", f"{mem.batch_size} exceeds max_size {mem.max_size}", file=file)
    for key, value in spec.search.items():  # nested mappings and the distributions are checked by zoo.search
        if "__" not in key and not isinstance(value, dict):
            raise SpecError(f"search.{key}", "search keys need a distribution suffix such as __uniform", file=file)


def _check_distributed(spec: Spec) -> None:
    """`meta.distributed` names how the asynchronous collector's workers see the learner's weights."""
    mode, env = spec.meta.distributed, spec.env
    if mode not in DISTRIBUTED:
        raise SpecError("meta.distributed", f"{mode!r} is not allowed; allowed: false, synced, shared")
    if mode is False:
        return
    if env.collector != "multi_async":
        raise SpecError("meta.distributed", f"{mode} runs asynchronous actor-learners on env.collector multi_async "
                        f"(this spec's is {env.collector}); allowed: false, or env.collector: multi_async")
    if env.num_workers < 2:
        raise SpecError("env.num_workers", f"{env.num_workers}: meta.distributed {mode} needs at least 2 "
                        "actor-learner workers; allowed: 2 or more")


def _given(raw: dict[str, Any] | None, dotted: str) -> bool:
    """Whether the user's spec data (file and overrides) holds the dotted key; True without data."""
    if raw is None:
        return True
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _supporting(what: typing.Callable[[AlgorithmSupport], bool]) -> str:
    register_algorithms()
    return ", ".join(sorted(name for name, support in ALGORITHM_SUPPORT.items() if what(support))) or "none"


def _check_algorithm_support(spec: Spec, raw: dict[str, Any] | None) -> None:
    register_algorithms()
    name, net, mem = spec.agent.algorithm.name, spec.agent.net, spec.agent.memory
    support = ALGORITHM_SUPPORT.get(name)
    if support is None:
        return
    if not _given(raw, "agent.memory.name"):
        mem.name = support.memories[0]
    if mem.name not in support.memories:
        raise SpecError("agent.memory.name", f"{name} does not use '{mem.name}'; "
                        f"{_suggest(mem.name, support.memories, list_all=True)}")
    if not support.nets:  # no networks: nothing in agent.net is read
        check_unused(net, (), "agent.net", f"by {name} (it has no networks)")
    elif net.type not in support.nets:
        raise SpecError("agent.net.type", f"{name} does not build '{net.type}'; "
                        f"{_suggest(net.type, support.nets, list_all=True)}")
    if net.shared and not support.shared:
        raise SpecError("agent.net.shared", f"{name} has no actor-critic trunk to share; allowed: false (shared "
                        f"trunks: {_supporting(lambda s: s.shared)})")
    split = [key for key in ("actor_optim_spec", "critic_optim_spec") if getattr(net, key) is not None]
    if split and net.shared:
        raise SpecError(f"agent.net.{split[0]}", "unused with agent.net.shared: true (agent.net.optim_spec trains the "
                        "shared net); remove it or set shared: false")
    if split and not support.split_optims:
        raise SpecError(f"agent.net.{split[0]}", f"{name} trains with agent.net.optim_spec only; remove it (separate "
                        f"actor / critic optimizers: {_supporting(lambda s: s.split_optims)})")
    if net.clip_grad_per_net and (net.clip_grad_val is None or not support.split_optims):
        raise SpecError("agent.net.clip_grad_per_net", "needs agent.net.clip_grad_val and an algorithm with separate "
                        f"actor and critic nets ({_supporting(lambda s: s.split_optims)}); allowed: false")
    if net.shared and not net.hid_layers and net.type not in RECURRENT_NETS:  # a recurrent trunk needs no MLP
        raise SpecError("agent.net.hid_layers", "a shared trunk (agent.net.shared: true) needs at least one hidden "
                        "layer; got []")
    if net.layer_norm and not support.layer_norm:
        raise SpecError("agent.net.layer_norm", f"{name}'s fast loss reads its MLPs' Linear layers directly; allowed: "
                        f"false (layer norm: {_supporting(lambda s: s.layer_norm)})")
    if net.critic_hid_layers is not None and not support.critic_layers:
        raise SpecError("agent.net.critic_hid_layers", f"{name}'s critics use agent.net.hid_layers; remove it "
                        f"(critics of their own width: {_supporting(lambda s: s.critic_layers)})")
    if spec.meta.distributed is not False and not support.distributed:
        raise SpecError("meta.distributed", f"'{spec.meta.distributed}': {name} does not learn from asynchronous "
                        f"actor-learners; allowed: false (distributed: {_supporting(lambda s: s.distributed)})")
    if spec.meta.compile and not support.compile:
        raise SpecError("meta.compile", f"{name} does not compile its update; allowed: false (compiled updates: "
                        f"{_supporting(lambda s: s.compile)})")
    _check_target_update(name, support, net, raw)
    _check_recurrent(net)
    _check_init(name, support, net)
    used, by = MEMORY_FIELDS[mem.name], f"by {mem.name}"
    if support.sil_replay:
        mem.sil_replay_name = mem.sil_replay_name or "Replay"
        used, by = (*used, "sil_replay_name", *MEMORY_FIELDS[mem.sil_replay_name]), f"{by} or {mem.sil_replay_name}"
    check_unused(mem, used, "agent.memory", by)


MEMORY_FIELDS = {"Replay": ("max_size", "batch_size", "use_cer"),  # the fields each memory reads (name aside)
                 "PrioritizedReplay": ("max_size", "batch_size", "alpha", "beta", "epsilon", "use_cer"),
                 "OnPolicyReplay": (), "OnPolicyBatchReplay": ()}
TARGET_FIELDS = {"replace": ("update_frequency",), "polyak": ("polyak_coef",)}


def check_unused(section: Any, used: tuple[str, ...], where: str, by: str, among: tuple[str, ...] | None = None):
    """A field of `section` (of `among`, default all but name) set away from its default though nothing reads it."""
    defaults = type(section)()
    for f in dataclasses.fields(section):
        if f.name == "name" or f.name in used or (among is not None and f.name not in among):
            continue
        if getattr(section, f.name) != getattr(defaults, f.name):
            raise SpecError(f"{where}.{f.name}", f"is not used {by}; remove it")


def _check_target_update(name: str, support: AlgorithmSupport, net: NetSpec, raw: dict[str, Any] | None) -> None:
    among = ("update_type", *(key for keys in TARGET_FIELDS.values() for key in keys))
    if not support.targets:
        check_unused(net, (), "agent.net", f"by {name} (no target network)", among)
        return
    if not _given(raw, "agent.net.update_type"):
        net.update_type = support.targets[0]
    if net.update_type not in support.targets:
        raise SpecError("agent.net.update_type", f"{name} does not update its targets by '{net.update_type}'; "
                        f"{_suggest(net.update_type, support.targets, list_all=True)}")
    check_unused(net, ("update_type", *TARGET_FIELDS[net.update_type]), "agent.net",
                 f"with agent.net.update_type: {net.update_type}", among)


ATARI_ONLY = {"episode_life": True, "clip_reward": True}  # field -> default, a non-default value needs an ALE env
NOT_ATARI = {"normalize_obs": False, "normalize_reward": False, "clip_obs": None,  # not applied to ALE envs
             "obs_mask": None, "reward_scale": 1.0}
VIZDOOM_ONLY = {"frame_skip": 1, "frame_stack": 1, "screen_size": [84, 84]}  # a non-default value needs a VizDoom id
GAIN_FIELDS = ("init_gain", "actor_init_gain", "critic_init_gain")
RECURRENT_FIELDS = ("cell_type", "fc_hid_layers", "rnn_hidden_size", "rnn_num_layers", "seq_len")
RECURRENT_NETS = ("RecurrentNet", "StatelessRecurrentNet")


def _check_init(name: str, support: AlgorithmSupport, net: NetSpec) -> None:
    """Gains are read by the gain-taking initialisations, head gains by the actor-critic family's heads."""
    if net.init_fn not in ("orthogonal", "xavier_uniform"):
        check_unused(net, (), "agent.net", f"with init_fn {net.init_fn} (orthogonal, xavier_uniform only)",
                     GAIN_FIELDS)
    elif not support.head_gains:
        check_unused(net, (), "agent.net", f"by {name} (head gains: "
                     f"{_supporting(lambda s: s.head_gains)})", GAIN_FIELDS[1:])


def _check_recurrent(net: NetSpec) -> None:
    """The RecurrentNet fields are read by the recurrent nets only; StatelessRecurrentNet needs its seq_len."""
    if net.type not in RECURRENT_NETS:
        check_unused(net, (), "agent.net", f"by {net.type} ({', '.join(RECURRENT_NETS)} only)", RECURRENT_FIELDS)
    if net.type == "StatelessRecurrentNet" and net.seq_len is None:
        raise SpecError("agent.net.seq_len", "StatelessRecurrentNet runs its RNN over seq_len copies of the "
                        "observation; set an integer >= 1")


def _check_env(env: EnvSpec) -> None:
    _check_collector(env)
    for key, default in VIZDOOM_ONLY.items():
        if getattr(env, key) != default and not is_vizdoom(env.name):
            raise SpecError(f"env.{key}", f"applies to VizDoom (Vizdoom<Scenario>-v1) envs only, not {env.name}; "
                            "remove it")
    if is_atari(env.name):
        for key, default in NOT_ATARI.items():
            if getattr(env, key) != default:
                raise SpecError(f"env.{key}", f"is not applied to Atari envs ({env.name}: frames are scaled inside "
                                "the net, rewards clipped by env.clip_reward); remove it")
        return
    for key, default in ATARI_ONLY.items():
        if getattr(env, key) != default:
            raise SpecError(f"env.{key}", f"applies to Atari (ALE/<Game>-v5) envs only, not {env.name}; remove it")
    if env.reward_scale != 1.0 and env.normalize_reward:
        raise SpecError("env.reward_scale", "unused with env.normalize_reward: true (rewards are scaled by the "
                        "return's running std); remove one")
    if env.clip_obs is not None and not env.normalize_obs:
        raise SpecError("env.clip_obs", "clips normalized observations: needs env.normalize_obs: true")


def _check_collector(env: EnvSpec) -> None:
    if env.collector != "ray" and env.ray_address != "local":
        raise SpecError("env.ray_address", f"is read by env.collector ray only (this spec's is {env.collector}); "
                        "allowed: local (the default), or env.collector: ray")
    if env.collector == "sync":
        if env.num_workers != 1:
            raise SpecError("env.num_workers", f"{env.num_workers} needs env.collector multi_sync, multi_async or "
                            "ray (sync steps every copy in this process); allowed: 1")
        return
    if env.num_envs % env.num_workers:
        raise SpecError("env.num_workers", f"{env.num_workers} does not divide env.num_envs {env.num_envs} (each "
                        "worker steps num_envs / num_workers copies); allowed: a divisor of env.num_envs")
    for key in ("normalize_obs", "normalize_reward"):
        if getattr(env, key):
            raise SpecError(f"env.{key}", f"running statistics would live apart in each of env.collector "
                            f"{env.collector}'s worker processes, unseen by evaluation and checkpoints; allowed: "
                            "false (or env.collector: sync)")


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """Plain-data form of a spec (round-trips through load_spec)."""
    data = dataclasses.asdict(spec)
    data.pop("name")
    data.pop("translation")
    return data


def field_docs(cls: type = Spec, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted field, default, doc) for every field below `cls`, for `--help-spec`."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        path = _join(prefix, f.name)
        tp = hints[f.name]
        if tp is AlgorithmSpec:
            register_algorithms()
            rows.append((path + ".name", "required", "algorithm: " + ", ".join(sorted(ALGORITHM_SPECS))))
            for algo_name, algo_cls in sorted(ALGORITHM_SPECS.items()):
                rows.append((f"{path}[{algo_name}]", "", "accepts " + ALGORITHM_SUPPORT[algo_name].describe()))
                rows += [(r[0].replace(path, f"{path}[{algo_name}]", 1), r[1], r[2])
                         for r in field_docs(algo_cls, path) if not r[0].endswith(".name")]
            continue
        inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)] or (
            [tp] if dataclasses.is_dataclass(tp) else [])
        if inner:
            rows += field_docs(inner[0], path)
            continue
        default = "required" if f.metadata.get("required") else repr(
            f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
        doc = f.metadata.get("doc", "")
        if f.metadata.get("choices"):
            doc += " (" + "|".join(f.metadata["choices"]) + ")"
        rows.append((path, default, doc))
    return rows
