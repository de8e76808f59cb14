"""SLM-Lab v5 spec files in zoo: recognised by their shape, translated with SLM-Lab's meaning, then validated by zoo.

SLM-Lab (github.com/kengz/SLM-Lab, slm_lab/spec/) writes `agent.name` beside `agent.algorithm`, separate
`agent.critic_net` sections, TorchArc `arc` nets, anchors (`_name: &anchor`) and its own defaults (val_loss_coef
1.0, minibatch_size 4, center_return false, life_loss_info false, ...). `translate_slm` turns one such spec into
zoo's raw spec data, filling SLM-Lab's defaults where zoo's differ, and returns the notes a `--dry-run` prints: every
renamed field, differing default and reproduced quirk. Every key it cannot translate is collected, so one run
reports them all (`SlmSpecError`, one line per field). zoo's own validation then runs on the result, so zoo stays
the one source of truth for what a spec may say.
"""

import json
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
from torch import nn

from zoo.distributions import PDTYPE_CHOICES
from zoo.envs import make_vector_env
from zoo.spec import (
    ALGORITHM_SPECS,
    SOURCE_PREFIX,
    EnvSpec,
    SpecError,
    SpecFormat,
    apply_overrides,
    read_spec_file,
    register_algorithms,
    register_spec_format,
    spec_names,
)

# SLM-Lab algorithm name -> zoo algorithm name
ALGORITHMS = {"ActorCritic": "A2C", "VanillaDQN": "VanillaDQN", "DQN": "DoubleDQN", "DoubleDQN": "DoubleDQN",
              "Reinforce": "Reinforce", "SARSA": "SARSA", "PPO": "PPO", "SoftActorCritic": "SoftActorCritic",
              "CrossQ": "CrossQ", "Random": "Random"}
REFUSED_ALGORITHMS = {"HydraDQN": "SLM-Lab v4's multi-body DQN, which SLM-Lab v5 no longer has (one body per agent)"}
# SLM-Lab's SIL extends its ActorCritic, PPOSIL its PPO: translated as that base, plus the self-imitation fields
SIL_BASES = {"SIL": "ActorCritic", "PPOSIL": "PPO"}
SIL_ALGORITHM_KEYS = ("sil_policy_loss_coef", "sil_val_loss_coef", "training_iter", "training_batch_iter")
SIL_MEMORY_KEYS = ("sil_replay_name", "batch_size", "max_size", "use_cer")
VALUE_BASED = ("VanillaDQN", "DoubleDQN", "SARSA")
POLICY_GRADIENT = ("A2C", "PPO", "Reinforce")
OFF_POLICY = ("VanillaDQN", "DoubleDQN", "SoftActorCritic", "CrossQ")
INIT_FNS = {"orthogonal_": "orthogonal", "xavier_uniform_": "xavier_uniform", "kaiming_uniform_": "kaiming_uniform",
            None: "default"}
ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "elu": "elu", "leaky_relu": "leaky_relu", "lrelu": "leaky_relu",
               "sigmoid": "sigmoid", "selu": "selu", "gelu": "gelu", "silu": "silu", "linear": "identity"}
ARC_ACTIVATIONS = {"ReLU": "relu", "Tanh": "tanh", "ELU": "elu", "LeakyReLU": "leaky_relu", "Sigmoid": "sigmoid",
                   "SELU": "selu", "GELU": "gelu", "SiLU": "silu"}
OPTIM_KEYS = ("name", "lr", "eps", "weight_decay", "momentum", "alpha", "betas")
GLOBAL_OPTIMS = {"GlobalAdam": "Adam", "GlobalRMSprop": "RMSprop"}  # SLM-Lab's shared-statistics optimizers
_OLD_LR_DECAY = "an SLM-Lab v3/v4 learning-rate decay key: v5's nets read lr_scheduler_spec only, so it has no effect"
OLD_NET_KEYS = {key: _OLD_LR_DECAY for key in ("lr_decay", "lr_decay_frequency", "lr_decay_min_timestep",
                                                "lr_anneal_timestep")}
# Algorithm keys of SLM-Lab's older spec files (v3/v4) that no v5 algorithm reads: SLM-Lab v5 takes only its own
# keys from a spec (`util.set_attr(self, algorithm_spec, [...])`), so these, and another algorithm's keys, have no
# effect there
OLD_ALGORITHM_KEYS = ("entropy_coef", "clip_eps", "add_entropy")
PER_MIN_EPSILON = 1e-8  # SLM-Lab's PrioritizedReplay epsilon 0, kept positive for the priority trees
SEARCH_SUFFIXES = ("uniform", "loguniform", "normal", "randint", "qrandint", "choice")
ENV_KEYS = ("name", "num_envs", "max_t", "max_frame", "normalize_obs", "normalize_reward", "clip_obs", "clip_reward",
            "life_loss_info")
SLM_NORMALIZE_CLIP = 10.0  # SLM-Lab's clip_obs / clip_reward when normalize_obs / normalize_reward is on


class SlmSpecError(SpecError):
    """Every untranslatable field of an SLM-Lab spec, one `file: dotted.field: why` line each."""

    def __init__(self, lines: list[str], file: str | None = None):
        self.lines = lines
        super().__init__("", "\n".join(lines), file=None)
        self.file = file

    def line(self) -> str:
        return "\n".join(self.lines)


def _names(data: dict[str, Any]) -> list[str]:
    return [k for k in data if not str(k).startswith("_")]


def is_slm_spec(data: Any) -> bool:
    """SLM-Lab's shape: `agent.name`, or `agent.critic_net`, in the file's spec or in any of its named specs."""
    if not isinstance(data, dict):
        return False
    candidates = [data] if "agent" in data else [data[k] for k in _names(data)]
    return any(isinstance(c, dict) and isinstance(c.get("agent"), dict)
               and ("name" in c["agent"] or "critic_net" in c["agent"]) for c in candidates)


@dataclass
class Translation:
    """Builds one zoo spec from one SLM-Lab spec; collects errors and notes instead of stopping at the first."""

    file: str
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)  # SLM-Lab dotted key -> zoo dotted key (values as they are)
    unused: dict[str, str] = field(default_factory=dict)  # SLM-Lab dotted key it never reads -> why
    # SLM-Lab dotted key -> (zoo field, SLM-Lab value -> zoo value): a field whose values are renamed (a search
    # choice over it is renamed value by value)
    renamed: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    algorithm: tuple[str, str] | None = None  # (SLM-Lab's algorithm name, zoo's), once read

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{self.file}: {where}: {message}")

    def note(self, where: str, message: str) -> None:
        self.notes.append(f"{where}: {message}")

    def same(self, slm: str, zoo: str) -> None:
        self.paths[slm] = zoo


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _int(value: Any) -> Any:
    """SLM-Lab writes frame counts as floats (1.0e+7); zoo's fields are integers."""
    number = _number(value)
    return int(number) if number is not None and float(number).is_integer() else value


def _leftover(t: Translation, section: dict[str, Any], where: str, allowed: tuple[str, ...]) -> None:
    for key in section:
        t.error(f"{where}.{key}", "unknown SLM-Lab key or one with no zoo equivalent; translated: "
                + ", ".join(allowed))


def translate_slm(raw: dict[str, Any], file: str) -> tuple[dict[str, Any], list[str]]:
    """One SLM-Lab spec (templates filled) -> (zoo raw spec data, translation notes). Raises `SlmSpecError` with
    every untranslatable field."""
    register_algorithms()  # the translation reads the algorithms' fields
    t = Translation(file)
    if not isinstance(raw, dict):
        raise SlmSpecError([f"{file}: expected a mapping, got {raw!r}"], file)
    raw = dict(raw)
    agent, env, meta = (raw.pop(k, None) for k in ("agent", "env", "meta"))
    search = raw.pop("search", None) or {}
    raw.pop("name", None)
    for key in raw:
        t.error(key, "unknown SLM-Lab spec section; allowed: agent, env, meta, search")
    out: dict[str, Any] = {}
    for section, name in ((agent, "agent"), (env, "env")):
        if not isinstance(section, dict):
            t.error(name, "missing or not a mapping")
    if t.errors:
        raise SlmSpecError(t.errors, file)
    zoo_env = _env(t, dict(env))
    out["agent"], device = _agent(t, dict(agent), zoo_env)
    out["env"] = zoo_env
    out["meta"] = _meta(t, dict(meta or {}), out)
    if device is not None:
        out["meta"]["device"] = device
    if search and out["agent"]:  # an algorithm zoo cannot run has no fields to search
        out["search"] = _search(t, search)
    if t.errors:
        raise SlmSpecError(t.errors, file)
    return out, t.notes


# ---------------------------------------------------------------------------------------------------- agent
def _agent(t: Translation, agent: dict[str, Any], env: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    label = agent.pop("name", None)
    algo = agent.pop("algorithm", None)
    memory = agent.pop("memory", None) or {}
    net = agent.pop("net", None)
    critic_net = agent.pop("critic_net", None)
    _leftover(t, agent, "agent", ("name", "algorithm", "memory", "net", "critic_net"))
    if not isinstance(algo, dict) or "name" not in algo:
        t.error("agent.algorithm.name", "missing; allowed: " + ", ".join([*ALGORITHMS, *SIL_BASES]))
        return {}, None
    slm_name = algo["name"]
    if slm_name in REFUSED_ALGORITHMS:
        t.error("agent.algorithm.name", f"'{slm_name}' cannot run: {REFUSED_ALGORITHMS[slm_name]}")
        return {}, None
    if slm_name not in ALGORITHMS and slm_name not in SIL_BASES:
        t.error("agent.algorithm.name", f"unknown SLM-Lab algorithm '{slm_name}'; allowed: "
                + ", ".join([*ALGORITHMS, *SIL_BASES]))
        return {}, None
    if label is not None and label != slm_name:
        t.note("agent.name", f"'{label}' is a label in SLM-Lab; zoo names a spec by its key in the file")
    sil_name, sil_algo, sil_memory = None, {}, {}
    if slm_name in SIL_BASES:
        sil_name, algo, memory = slm_name, dict(algo), dict(memory)
        sil_algo = {k: algo.pop(k) for k in SIL_ALGORITHM_KEYS if k in algo}
        sil_memory = {k: memory.pop(k) for k in SIL_MEMORY_KEYS if k in memory}
        slm_name = algo["name"] = SIL_BASES[sil_name]
    name = ALGORITHMS[slm_name]
    out = {"algorithm": _algorithm(t, dict(algo), name, memory, env)}
    if name == "Random":  # SLM-Lab's Random builds no net and never learns from its memory
        for section, value in (("memory", memory), ("net", net)):
            if value:
                t.note(f"agent.{section}", "unused by Random (as in SLM-Lab)")
        return out, None
    out["memory"] = _memory(t, dict(memory), name)
    if sil_name is not None:
        _sil(t, sil_name, sil_algo, sil_memory, out)
    if not isinstance(net, dict):
        t.error("agent.net", "missing or not a mapping")
        return out, None
    out["net"], device = _net(t, dict(net), name, "agent.net")
    if critic_net is not None:
        _critic_net(t, dict(critic_net), name, out)
    return out, device


def _sil(t: Translation, sil_name: str, algo: dict[str, Any], memory: dict[str, Any], out: dict[str, Any]) -> None:
    """SLM-Lab's SIL / PPOSIL on top of the translated A2C / PPO: zoo's SIL / PPOSIL with the same fields."""
    w, m = "agent.algorithm", "agent.memory"
    out["algorithm"]["name"] = sil_name
    t.note(f"{w}.name", f"SLM-Lab's {sil_name} is zoo's {sil_name} ({SIL_BASES[sil_name]} plus self-imitation); "
           "zoo's self-imitation targets are each finished episode's Monte-Carlo returns, where SLM-Lab v5 discounts "
           "along the rows of a uniformly drawn batch")
    for key, value in algo.items():
        out["algorithm"][key] = _int(value) if key.startswith("training") else value
        t.same(f"{w}.{key}", f"{w}.{key}")
    replay = memory.pop("sil_replay_name", "Replay")
    if replay not in ("Replay", "PrioritizedReplay"):
        t.error(f"{m}.sil_replay_name", f"'{replay}' has no zoo equivalent; allowed: Replay, PrioritizedReplay")
        return
    out["memory"]["sil_replay_name"] = replay
    t.same(f"{m}.sil_replay_name", f"{m}.sil_replay_name")
    for key, value in memory.items():
        out["memory"][key] = value if key == "use_cer" else _int(value)
        t.same(f"{m}.{key}", f"{m}.{key}")


def _schedule(t: Translation, value: Any, where: str, zoo_where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        t.error(where, f"expected a schedule mapping, got {value!r}")
        return None
    value = dict(value)
    out = {k: value.pop(k) for k in ("name", "start_val", "end_val", "start_step", "end_step", "frequency")
           if k in value}
    for key in ("start_step", "end_step", "frequency"):
        if key in out:
            out[key] = _int(out[key])
    for key in out:
        t.same(f"{where}.{key}", f"{zoo_where}.{key}")
    _leftover(t, value, where, ("name", "start_val", "end_val", "start_step", "end_step", "frequency"))
    # SLM-Lab's VarScheduler: `if not end_val: end_val = start_val`, and no_decay returns end_val
    end = out.get("end_val")
    if not end and "start_val" in out and out.get("name", "no_decay") != "no_decay":
        t.note(f"{where}.end_val", f"{end!r}: SLM-Lab's VarScheduler replaces a falsy end_val by start_val, so the "
               f"value stays {out['start_val']} (zoo's no_decay)")
        return {"name": "no_decay", "start_val": out["start_val"]}
    if out.get("name", "no_decay") == "no_decay" and end and end != out.get("start_val"):
        t.note(f"{where}.end_val", f"{end!r}: SLM-Lab's no_decay returns end_val from the first step on")
        return {"name": "no_decay", "start_val": end}
    return out


def _algorithm(t: Translation, a: dict[str, Any], name: str, memory: dict[str, Any],
               env: dict[str, Any]) -> dict[str, Any]:
    w = "agent.algorithm"
    slm_name = a.pop("name")
    out: dict[str, Any] = {"name": name}
    if slm_name == "DQN":
        t.note(f"{w}.name", "SLM-Lab's DQN computes the Double-DQN target (its online net picks the next action, the "
               "target net scores it); reproduced as zoo's DoubleDQN")
    elif slm_name != name:
        t.note(f"{w}.name", f"SLM-Lab's {slm_name} is zoo's {name}")
    if name == "Random":  # SLM-Lab's Random reads no algorithm key
        for key in a:
            t.note(f"{w}.{key}", "unused by Random (as in SLM-Lab)")
        return out
    num_envs = env.get("num_envs", 1)
    if "gamma" in a:
        out["gamma"] = a.pop("gamma")
        t.same(f"{w}.gamma", f"{w}.gamma")
    discrete = a.get("action_pdtype") == "Categorical"  # SLM-Lab's SAC and CrossQ require it for discrete actions
    _action(t, a, name, out)
    if name in POLICY_GRADIENT:
        entropy = _schedule(t, a.pop("entropy_coef_spec", None), f"{w}.entropy_coef_spec", f"{w}.entropy_coef_spec")
        out["entropy_coef_spec"] = entropy or {"name": "no_decay", "start_val": 0.0}
        if entropy is None:
            t.note(f"{w}.entropy_coef_spec", "absent or null in SLM-Lab: no entropy bonus (zoo's default is 0.01)")
        coef = a.pop("policy_loss_coef", 1.0)
        if coef != 1.0:
            t.error(f"{w}.policy_loss_coef", f"{coef}: zoo weighs the policy loss 1.0 (val_loss_coef and the "
                    "entropy coefficient are relative to it); allowed: 1.0")
    if name in ("A2C", "PPO"):
        out["val_loss_coef"] = a.pop("val_loss_coef", 1.0)
        t.same(f"{w}.val_loss_coef", f"{w}.val_loss_coef")
        _normalize_v_targets(t, a, name, out)
    {"A2C": _a2c, "PPO": _ppo, "Reinforce": _reinforce, "SARSA": _sarsa, "VanillaDQN": _dqn, "DoubleDQN": _dqn,
     "SoftActorCritic": partial(_sac, discrete=discrete, env=env), "CrossQ": partial(_sac, discrete=discrete, env=env)
     }[name](t, a, name, out, memory, num_envs)
    steps = out.get("time_horizon", out.get("num_step_returns"))
    if name in ("A2C", "Reinforce") and out.get("normalize_advantage") and _int(steps) == 1 and num_envs == 1:
        out["normalize_advantage"] = False  # REINFORCE's calc_policy_loss: `if len(advs) > 1: standardize`
        t.note(f"{w}.normalize_advantage", "false: a batch of one transition, which SLM-Lab's policy loss does not "
               "standardize")
    t.algorithm = (slm_name, name)
    _pop_unread(t, a, w)
    _leftover(t, a, w, tuple(sorted({"name", "gamma", "action_pdtype", "action_policy", "explore_var_spec",
                                     *_allowed_keys(name)})))
    return out


def _unread(t: Translation, path: str) -> str | None:
    """Why SLM-Lab v5 does not read `path` of this spec, if it is a key it reads elsewhere: another algorithm's
    key, or one of its older spec files' (any other unknown key is an error: a typo, most likely)."""
    section, _, key = path.rpartition(".")
    if section in ("agent.net", "agent.critic_net"):
        return OLD_NET_KEYS.get(key)
    if section == "agent.memory" and key == "sil_replay_name":  # the SIL algorithms take it out before this
        return f"not read by SLM-Lab v5's {t.algorithm[0]} memory (only SIL and PPOSIL read it)"
    if section != "agent.algorithm" or not t.algorithm:
        return None
    slm_name, name = t.algorithm
    names = ("A2C", "PPO", "Reinforce", "SARSA", "SoftActorCritic", "VanillaDQN")
    known = {*OLD_ALGORITHM_KEYS, *SIL_ALGORITHM_KEYS, *(k for n in names for k in _allowed_keys(n))}
    if key in known - {"name", "gamma", "action_pdtype", "action_policy", "explore_var_spec", *_allowed_keys(name)}:
        return f"not read by SLM-Lab v5's {slm_name}, so it has no effect"
    return None


def _pop_unread(t: Translation, section: dict[str, Any], where: str) -> None:
    """Note and drop the keys of `section` that SLM-Lab v5 reads elsewhere but not here (see `_unread`)."""
    for key in sorted(section):
        reason = _unread(t, f"{where}.{key}")
        if reason is not None:
            section.pop(key)
            t.unused[f"{where}.{key}"] = reason
            t.note(f"{where}.{key}", reason)


def _allowed_keys(name: str) -> tuple[str, ...]:
    """The SLM-Lab algorithm keys translated for zoo algorithm `name` (for the unknown-key message)."""
    common = {"A2C": ("lam", "num_step_returns", "time_horizon", "training_frequency", "entropy_coef_spec",
                      "val_loss_coef", "policy_loss_coef", "normalize_v_targets"),
              "PPO": ("lam", "time_horizon", "minibatch_size", "training_epoch", "clip_eps_spec", "clip_vloss",
                      "clip_val_loss", "entropy_coef_spec", "val_loss_coef", "policy_loss_coef", "normalize_v_targets",
                      "normalize_advantages", "symlog"),
              "Reinforce": ("center_return", "entropy_coef_spec", "policy_loss_coef", "training_frequency"),
              "SARSA": ("training_frequency",),
              "SoftActorCritic": ("training_frequency", "training_iter", "training_start_step", "policy_delay",
                                  "fixed_alpha", "log_alpha_min", "log_alpha_max", "symlog", "spectral_norm",
                                  "entropy_penalty_coef", "alpha_anneal_frames", "alpha_lr", "target_entropy",
                                  "entropy_anneal")}
    common["CrossQ"] = common["SoftActorCritic"]
    common["VanillaDQN"] = common["DoubleDQN"] = ("training_frequency", "training_iter", "training_batch_iter",
                                                  "training_start_step")
    return common[name]


def _action(t: Translation, a: dict[str, Any], name: str, out: dict[str, Any]) -> None:
    """`action_pdtype`, `action_policy` and `explore_var_spec`, as SLM-Lab's policy_util reads them."""
    w = "agent.algorithm"
    pdtype = a.pop("action_pdtype", "Argmax" if name in VALUE_BASED[:2] else "default")
    policy = a.pop("action_policy", "epsilon_greedy" if name in VALUE_BASED[:2] else "default")
    explore = a.pop("explore_var_spec", None)
    if name in VALUE_BASED:
        allowed_pd = {"epsilon_greedy": ("Argmax", "default"), "boltzmann": ("Categorical", "default"),
                      "random": ("Argmax", "Categorical", "default")}
        if policy not in allowed_pd:
            t.error(f"{w}.action_policy", f"'{policy}' for zoo's {name}: its value-based learners explore by "
                    "epsilon_greedy, boltzmann or random")
            return
        if policy == "boltzmann" and pdtype == "Argmax":
            out["action_policy"] = "epsilon_greedy"
            out["explore_var_spec"] = {"name": "no_decay", "start_val": 0.0}
            t.note(f"{w}.action_pdtype", "Argmax under boltzmann: SLM-Lab divides the Q-values by the temperature "
                   "and then takes their argmax, so it acts greedily throughout (zoo's epsilon_greedy with epsilon 0)"
                   + ("; explore_var_spec has no effect" if explore is not None else ""))
            return
        if pdtype not in allowed_pd[policy]:
            t.error(f"{w}.action_pdtype", f"'{pdtype}' with action_policy {policy}; allowed: "
                    + ", ".join(allowed_pd[policy]))
        if policy == "random":
            out["action_policy"] = "epsilon_greedy"
            out["explore_var_spec"] = {"name": "no_decay", "start_val": 1.0}
            t.note(f"{w}.action_policy", "random: uniform random actions throughout, as epsilon_greedy with epsilon 1")
            if explore is not None:
                t.note(f"{w}.explore_var_spec", "unused by action_policy random (as in SLM-Lab)")
            return
        out["action_policy"] = policy
        schedule = _schedule(t, explore, f"{w}.explore_var_spec", f"{w}.explore_var_spec")
        if schedule is None:
            t.error(f"{w}.explore_var_spec", f"{policy} needs its epsilon / temperature schedule; null has no value")
        else:
            out["explore_var_spec"] = schedule
        return
    if policy != "default":
        t.error(f"{w}.action_policy", f"'{policy}' for {name}: zoo samples from the policy's own distribution; "
                "allowed: default")
    if name in POLICY_GRADIENT:
        if pdtype not in PDTYPE_CHOICES:
            t.error(f"{w}.action_pdtype", f"'{pdtype}' has no zoo equivalent; allowed: " + ", ".join(PDTYPE_CHOICES))
        elif pdtype != "default":
            out["action_pdtype"] = pdtype
            t.same(f"{w}.action_pdtype", f"{w}.action_pdtype")
    elif pdtype not in ("default", "Categorical", "Normal"):
        t.error(f"{w}.action_pdtype", f"'{pdtype}': zoo's {name} samples Categorical (discrete) or tanh-squashed "
                "Normal (continuous) actions; allowed: default, Categorical, Normal")
    if explore is not None:
        t.error(f"{w}.explore_var_spec", f"{name} explores through its policy; allowed: null")


def _normalize_v_targets(t: Translation, a: dict[str, Any], name: str, out: dict[str, Any]) -> None:
    value = a.pop("normalize_v_targets", False)
    if value is False:
        return
    if "normalize_v_targets" in {f for f in ALGORITHM_SPECS[name].__dataclass_fields__}:
        out["normalize_v_targets"] = value
        t.same("agent.algorithm.normalize_v_targets", "agent.algorithm.normalize_v_targets")
        return
    t.error("agent.algorithm.normalize_v_targets", f"{value!r}: not yet supported by zoo's {name}; allowed: false")


def _a2c(t: Translation, a: dict[str, Any], name: str, out: dict[str, Any], memory: dict, num_envs: int) -> None:
    w = "agent.algorithm"
    lam, nstep = a.pop("lam", None), a.pop("num_step_returns", None)
    horizon, frequency = a.pop("time_horizon", None), a.pop("training_frequency", None)
    if lam is not None:
        out["lam"] = lam
        t.same(f"{w}.lam", f"{w}.lam")
        if nstep is not None:
            t.note(f"{w}.num_step_returns", "unused when lam is set (SLM-Lab computes GAE then)")
        steps = horizon if horizon is not None else frequency
        if steps is not None:  # SLM-Lab's A2C batches training_frequency vector steps (time_horizon: PPO's word)
            out["time_horizon"] = _int(steps)
            t.same(f"{w}.time_horizon", f"{w}.time_horizon")
            t.same(f"{w}.training_frequency", f"{w}.time_horizon")
        else:
            t.note(f"{w}.time_horizon", "absent: zoo's A2C rolls out 5 steps per env per update with GAE")
    elif nstep is not None:
        out["lam"], out["num_step_returns"] = None, nstep
        t.note(f"{w}.num_step_returns", f"n-step returns, rollouts of {nstep} steps per env (SLM-Lab sets "
               "training_frequency to num_step_returns)")
        t.same(f"{w}.num_step_returns", f"{w}.num_step_returns")
    else:  # Monte-Carlo returns: GAE with lambda 1 is the discounted return to the rollout's end
        out["lam"] = 1.0
        steps = horizon if horizon is not None else frequency
        if steps is not None:
            out["time_horizon"] = _int(steps)
        t.note(f"{w}.lam", "null with num_step_returns null: SLM-Lab's Monte-Carlo returns, as GAE(lambda=1) on "
               "zoo's fixed-length rollouts (bootstrapped from V where a rollout cuts an episode; SLM-Lab trains on "
               "whole episodes)")
    out["normalize_advantage"] = True
    t.note(f"{w}.normalize_advantage", "SLM-Lab's ActorCritic standardizes each batch's advantages (its policy loss is "
           "REINFORCE's): zoo's normalize_advantage true (zoo's A2C default is false)")


def _ppo(t: Translation, a: dict[str, Any], name: str, out: dict[str, Any], memory: dict, num_envs: int) -> None:
    w = "agent.algorithm"
    for key in ("lam", "time_horizon", "training_epoch"):
        if key in a:
            out[key] = _int(a.pop(key))
            t.same(f"{w}.{key}", f"{w}.{key}")
    minibatch = _int(a.pop("minibatch_size", 4))
    t.same(f"{w}.minibatch_size", f"{w}.minibatch_size")
    if isinstance(minibatch, int):  # SLM-Lab's autocorrection: whole env steps, at most the batch
        batch = out.get("time_horizon", 128) * num_envs
        fixed = min(-(-minibatch // num_envs) * num_envs, batch) if isinstance(batch, int) else minibatch
        if fixed != minibatch:
            t.note(f"{w}.minibatch_size", f"{minibatch} -> {fixed}, as SLM-Lab autocorrects it (a multiple of "
                   "num_envs, at most time_horizon x num_envs)")
        minibatch = fixed
    out["minibatch_size"] = minibatch
    clip = _schedule(t, a.pop("clip_eps_spec", None), f"{w}.clip_eps_spec", f"{w}.clip_eps_spec")
    if clip is not None:
        out["clip_eps_spec"] = clip
    clip_value = a.pop("clip_vloss", None)
    legacy = a.pop("clip_val_loss", None)
    if legacy is not None:
        t.note(f"{w}.clip_val_loss", f"{legacy!r} is ignored, as by SLM-Lab v5 (its PPO reads clip_vloss only)")
    out["clip_value"] = bool(clip_value)
    t.same(f"{w}.clip_vloss", f"{w}.clip_value")
    adv = a.pop("normalize_advantages", "standardize")  # SLM-Lab normalizes every minibatch's advantages
    out["normalize_advantage"] = True
    if adv == "percentile":
        out["advantage_normalizer"] = "percentile"
        t.same(f"{w}.normalize_advantages", f"{w}.advantage_normalizer")
        t.note(f"{w}.normalize_advantages", "percentile: zoo's advantage_normalizer percentile (advantages / max(1, "
               "P95 - P5), EMA 0.99 over minibatches, as SLM-Lab)")
    elif adv != "standardize":
        t.error(f"{w}.normalize_advantages", f"'{adv}'; allowed: standardize, percentile")
    if a.pop("symlog", False):
        out["symlog"] = True
        t.same(f"{w}.symlog", f"{w}.symlog")


def _reinforce(t: Translation, a: dict[str, Any], name: str, out: dict[str, Any], memory: dict,
               num_envs: int) -> None:
    w = "agent.algorithm"
    if memory.get("name") == "OnPolicyCrossEntropy":
        out["cross_entropy"] = memory.get("cross_entropy", 1.0)  # SLM-Lab's default
        t.same("agent.memory.cross_entropy", f"{w}.cross_entropy")
    out["center_return"] = a.pop("center_return", False)
    t.same(f"{w}.center_return", f"{w}.center_return")
    out["normalize_advantage"] = True
    t.note(f"{w}.normalize_advantage", "SLM-Lab's REINFORCE always standardizes its returns per batch (zoo's "
           "normalize_advantage: true; zoo's default is false)")
    frequency = a.pop("training_frequency", None)
    if memory.get("name") in ("OnPolicyReplay", "OnPolicyCrossEntropy"):
        t.note(f"{w}.training_frequency", "OnPolicyReplay trains after that many episodes in SLM-Lab; zoo batches "
               "time_horizon steps of every env (its default 500) instead")
        return
    if frequency is not None:
        out["time_horizon"] = _int(frequency)
        t.note(f"{w}.training_frequency", f"{frequency} vector steps per batch (SLM-Lab's OnPolicyBatchReplay "
               "counts steps of all envs together): zoo's time_horizon")
    out["episodic"] = False
    t.note(f"{w}.episodic", "false: SLM-Lab's OnPolicyBatchReplay learns from each batch alone, returns discounted to "
           "the batch's end and cut at terminations only (a truncated episode's return runs on into the env's next "
           "episode; SLM-Lab's next-step autoreset adds one zero-reward step between them, zoo's envs do not)")


def _sarsa(t: Translation, a: dict[str, Any], name: str, out: dict[str, Any], memory: dict, num_envs: int) -> None:
    w = "agent.algorithm.training_frequency"
    if "training_frequency" in a:  # SLM-Lab's OnPolicyBatchReplay counts vector steps; zoo's SARSA counts frames
        steps = _int(a.pop("training_frequency"))
        out["training_frequency"] = steps * num_envs
        t.note(w, f"{steps} vector steps per on-policy batch: zoo's {steps * num_envs} frames ({num_envs} envs)")
    out["training_iter"] = 1


def _training_frequency(t: Translation, a: dict[str, Any], out: dict[str, Any], num_envs: int) -> None:
    w = "agent.algorithm.training_frequency"
    if "training_frequency" not in a:
        return
    frequency = _int(a.pop("training_frequency"))
    out["training_frequency"] = frequency
    t.same(w, w)
    if isinstance(frequency, int) and frequency > num_envs and frequency % num_envs:
        t.note(w, f"{frequency} frames rounds up to whole steps of the {num_envs} envs "
               f"({-(-frequency // num_envs) * num_envs} frames): SLM-Lab counts transitions one by one, zoo "
               "trains between vector steps")


def _dqn(t: Translation, a: dict[str, Any], name: str, out: dict[str, Any], memory: dict, num_envs: int) -> None:
    w = "agent.algorithm"
    _training_frequency(t, a, out, num_envs)
    if "training_frequency" not in out:
        out["training_frequency"] = 1
    out["training_iter"] = _int(a.pop("training_iter", 1))
    out["training_batch_iter"] = _int(a.pop("training_batch_iter", 1))
    for key in ("training_iter", "training_batch_iter"):
        t.same(f"{w}.{key}", f"{w}.{key}")
    out["training_start_step"] = _int(a.pop("training_start_step", memory.get("batch_size", 32)))
    t.same(f"{w}.training_start_step", f"{w}.training_start_step")


def _sac(t: Translation, a: dict[str, Any], name: str, out: dict[str, Any], memory: dict, num_envs: int,
         discrete: bool, env: dict[str, Any]) -> None:
    """SLM-Lab's SoftActorCritic, and its CrossQ, which inherits every SAC default and temperature setting."""
    w = "agent.algorithm"
    fields = ALGORITHM_SPECS[name].__dataclass_fields__
    _training_frequency(t, a, out, num_envs)
    if "training_frequency" not in out:
        out["training_frequency"] = 1
    out["training_iter"] = _int(a.pop("training_iter", num_envs))
    t.same(f"{w}.training_iter", f"{w}.training_iter")
    out["training_start_step"] = _int(a.pop("training_start_step", max(1000, memory.get("batch_size", 32))))
    t.same(f"{w}.training_start_step", f"{w}.training_start_step")
    out["policy_delay"] = _int(a.pop("policy_delay", 1))
    t.same(f"{w}.policy_delay", f"{w}.policy_delay")
    fixed = a.pop("fixed_alpha", None)
    low, high = a.pop("log_alpha_min", -5.0), a.pop("log_alpha_max", 2.0)
    anneal_frames = _int(a.pop("alpha_anneal_frames", 0))
    target, anneal = a.pop("target_entropy", "auto"), a.pop("entropy_anneal", None)
    alpha_lr = a.pop("alpha_lr", None)
    if fixed is not None:  # SLM-Lab: a fixed temperature, no clamp, target entropy or alpha optimizer
        out["fixed_alpha"], out["alpha_init"] = True, fixed
        t.note(f"{w}.fixed_alpha", f"{fixed}: zoo's fixed_alpha true with alpha_init {fixed}")
        if anneal_frames:
            out["alpha_anneal_frames"] = anneal_frames
            t.same(f"{w}.alpha_anneal_frames", f"{w}.alpha_anneal_frames")
            t.note(f"{w}.alpha_anneal_frames", "zoo's temperature stops at 1e-8 x alpha_init, not 0 (log alpha stays "
                   "finite)")
        for key, value in (("target_entropy", target != "auto"), ("entropy_anneal", anneal is not None),
                           ("alpha_lr", alpha_lr is not None)):
            if value:
                t.note(f"{w}.{key}", "unused with fixed_alpha (as in SLM-Lab)")
    else:
        if anneal_frames:
            t.note(f"{w}.alpha_anneal_frames", "unused without fixed_alpha (as in SLM-Lab)")
        if "log_alpha_min" in fields:
            out["log_alpha_min"], out["log_alpha_max"] = low, high
            t.same(f"{w}.log_alpha_min", f"{w}.log_alpha_min")
            t.same(f"{w}.log_alpha_max", f"{w}.log_alpha_max")
            t.note(f"{w}.log_alpha_max", f"SLM-Lab always clamps log alpha to [{low}, {high}] (its defaults -5, 2): "
                   "zoo's log_alpha_min / log_alpha_max (zoo's default: no clamp)")
        else:
            t.error(f"{w}.log_alpha_max", f"SLM-Lab clamps log alpha to [{low}, {high}]; zoo's {name} has no clamp")
        if alpha_lr is not None:
            out["alpha_lr"] = alpha_lr
            t.same(f"{w}.alpha_lr", f"{w}.alpha_lr")
        _target_entropy(t, target, anneal, name, out, discrete, env)
    if discrete and "twin_q" in fields:  # SLM-Lab's SD-SAC: the twins' mean in the discrete target and actor loss
        out["twin_q"] = "mean"
        t.note(f"{w}.twin_q", "SLM-Lab's discrete SAC averages the twin critics (zoo's default: their min): mean")
    if a.pop("spectral_norm", False):
        if "spectral_norm" in fields:
            out["spectral_norm"] = True
            t.same(f"{w}.spectral_norm", f"{w}.spectral_norm")
        else:
            t.error(f"{w}.spectral_norm", f"true: zoo's {name} critics have no spectral norm; allowed: false")
    for key, off in (("symlog", False), ("entropy_penalty_coef", 0.0)):
        value = a.pop(key, off)
        if value != off:
            t.error(f"{w}.{key}", f"{value!r} has no zoo equivalent; allowed: {off!r}")


def _target_entropy(t: Translation, target: Any, anneal: Any, name: str, out: dict[str, Any], discrete: bool,
                    env: dict[str, Any]) -> None:
    """SLM-Lab's tuned temperature aims at `target_entropy`; `auto` is -action_dim, or for discrete actions
    `entropy_anneal.start_ratio` (0.6) x log(num_actions), annealed to `end_ratio` over `frames`."""
    w = "agent.algorithm"
    if target != "auto":
        out["target_entropy"] = target
        t.same(f"{w}.target_entropy", f"{w}.target_entropy")
        if anneal is not None:
            t.note(f"{w}.entropy_anneal", "unused with a numeric target_entropy (as in SLM-Lab)")
        return
    if not discrete:
        if anneal is not None:
            t.note(f"{w}.entropy_anneal", "unused with continuous actions (as in SLM-Lab)")
        return
    if not isinstance(anneal, dict | None):
        t.error(f"{w}.entropy_anneal", f"expected a mapping with start_ratio, end_ratio, frames; got {anneal!r}")
        return
    anneal = dict(anneal or {})
    ratios = {"start_ratio": anneal.pop("start_ratio", 0.6)}
    ratios["end_ratio"] = anneal.pop("end_ratio", ratios["start_ratio"])
    frames = _int(anneal.pop("frames", 0))
    _leftover(t, anneal, f"{w}.entropy_anneal", ("start_ratio", "end_ratio", "frames"))
    if "entropy_anneal" in ALGORITHM_SPECS[name].__dataclass_fields__:
        out["entropy_anneal"] = {**ratios, "frames": frames}
        t.note(f"{w}.target_entropy", f"auto with discrete actions: SLM-Lab aims at {ratios['start_ratio']} x "
               "log(num_actions) (zoo's auto: 0.98 x): zoo's entropy_anneal")
        return
    num_actions = _num_actions(env)
    if frames and ratios["end_ratio"] != ratios["start_ratio"]:
        t.error(f"{w}.entropy_anneal", f"zoo's {name} has no annealed target entropy; allowed: frames 0")
    elif num_actions is None:
        t.error(f"{w}.target_entropy", f"auto with discrete actions is {ratios['start_ratio']} x log(num_actions) in "
                f"SLM-Lab, and {env.get('name')}'s action count could not be read; set a number")
    else:
        out["target_entropy"] = ratios["start_ratio"] * math.log(num_actions)
        t.note(f"{w}.target_entropy", f"auto with {num_actions} discrete actions: SLM-Lab's {ratios['start_ratio']} "
               f"x log({num_actions}) = {out['target_entropy']:.4g} (zoo's auto: 0.98 x)")


def _num_actions(env: dict[str, Any]) -> int | None:
    """The size of a gymnasium env's Discrete action space (None: not Discrete, or the env does not make)."""
    try:
        made = make_vector_env(EnvSpec(name=env["name"], max_frame=1, kwargs=env.get("kwargs", {})), 1)
    except Exception:  # any failure to make it (a missing or custom env): the caller reports the unknown count
        return None
    space = made.single_action_space
    made.close()
    return int(space.n) if isinstance(space, gym.spaces.Discrete) else None


# --------------------------------------------------------------------------------------------------- memory
def _memory(t: Translation, m: dict[str, Any], algorithm: str) -> dict[str, Any]:
    w = "agent.memory"
    name = m.pop("name", None)
    allowed = ("Replay", "PrioritizedReplay", "OnPolicyReplay", "OnPolicyBatchReplay", "OnPolicyCrossEntropy")
    if name == "OnPolicyCrossEntropy" and algorithm == "Reinforce":
        t.note(f"{w}.name", "OnPolicyCrossEntropy: zoo's OnPolicyReplay with agent.algorithm.cross_entropy (each "
               "batch's best episodes by return; a batch is time_horizon steps of every env, not training_frequency "
               "episodes)")
        m.pop("cross_entropy", None)
        name = "OnPolicyReplay"
    elif name == "OnPolicyCrossEntropy":
        t.error(f"{w}.name", f"'OnPolicyCrossEntropy' with {algorithm}: zoo filters episodes for Reinforce only")
        return {}
    if name is None and not m:
        t.note(f"{w}.name", f"absent: zoo's default memory for {algorithm}")
        return {}
    if name not in allowed:
        t.error(f"{w}.name", f"'{name}' has no zoo equivalent; allowed: " + ", ".join(allowed))
        return {}
    out: dict[str, Any] = {"name": name}
    if name in ("Replay", "PrioritizedReplay"):
        for key in ("batch_size", "max_size"):
            if key in m:
                out[key] = _int(m.pop(key))
                t.same(f"{w}.{key}", f"{w}.{key}")
        if m.pop("use_cer", False):
            out["use_cer"] = True
            t.same(f"{w}.use_cer", f"{w}.use_cer")
    if name == "PrioritizedReplay":
        for key in ("alpha", "epsilon"):
            if key in m:
                out[key] = m.pop(key)
                t.same(f"{w}.{key}", f"{w}.{key}")
        if out.get("epsilon") == 0:
            out["epsilon"] = PER_MIN_EPSILON
            t.note(f"{w}.epsilon", f"0: SLM-Lab lets a zero-error transition's priority reach 0 (never drawn again); "
                   f"zoo's sum and min trees need every priority positive, so epsilon {PER_MIN_EPSILON} stands in")
        out["beta"] = 0.0
        t.note(f"{w}.beta", "SLM-Lab's prioritized replay applies no importance-sampling weights: zoo's beta 0 "
               "(weights all 1) reproduces it")
    if name == "OnPolicyReplay" and algorithm != "Reinforce":
        t.note(f"{w}.name", "OnPolicyReplay is episodic in SLM-Lab; zoo learns from fixed-length rollouts")
    if name.startswith("OnPolicy"):
        for key in ("batch_size", "max_size", "use_cer"):
            m.pop(key, None)
    _pop_unread(t, m, w)
    _leftover(t, m, w, ("name", "batch_size", "max_size", "use_cer", "alpha", "epsilon"))
    return out


# ------------------------------------------------------------------------------------------------------ net
def _optim(t: Translation, value: Any, where: str, zoo_where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        t.error(where, f"expected an optimizer mapping, got {value!r}")
        return None
    value = dict(value)
    out = {k: value.pop(k) for k in OPTIM_KEYS if k in value}
    for key in out:
        t.same(f"{where}.{key}", f"{zoo_where}.{key}")
    if out.get("name") in GLOBAL_OPTIMS:  # A3C's optimizers whose statistics the Hogwild workers share
        out["name"] = GLOBAL_OPTIMS[out["name"]]
        t.note(f"{where}.name", f"Global{out['name']} -> {out['name']}: the one learner's optimizer keeps the only "
               "statistics (meta.distributed)")
    if value.pop("amsgrad", False):
        t.error(f"{where}.amsgrad", "zoo's optimizers have no amsgrad; allowed: false")
    _leftover(t, value, where, OPTIM_KEYS)
    return out


def _net(t: Translation, n: dict[str, Any], algorithm: str, w: str) -> tuple[dict[str, Any], str | None]:
    out: dict[str, Any] = {}
    net_type = n.pop("type", "MLPNet")
    if net_type == "RecurrentNet":
        out.update(_recurrent(t, n, w))
    elif net_type == "TorchArcNet":
        arc = n.pop("arc", None)
        out.update(_arc(t, arc, f"{w}.arc", algorithm))
    elif net_type in ("MLPNet", "ConvNet", "DuelingMLPNet", "DuelingConvNet"):
        out["type"] = net_type
        for key in ("hid_layers", "conv_hid_layers"):
            if key in n:
                out[key] = n.pop(key)
                t.same(f"{w}.{key}", f"{w}.{key}")
        if "fc_hid_layers" in n and net_type.endswith("ConvNet"):  # SLM-Lab's ConvNet: the MLP after the convs
            out["hid_layers"] = n.pop("fc_hid_layers")
            t.same(f"{w}.fc_hid_layers", f"{w}.hid_layers")
            t.note(f"{w}.fc_hid_layers", "zoo's hid_layers (the layers after the conv trunk)")
    else:
        t.error(f"{w}.type", f"'{net_type}' has no zoo equivalent; allowed: MLPNet, ConvNet, DuelingMLPNet, "
                "DuelingConvNet, RecurrentNet, TorchArcNet")
    if net_type != "TorchArcNet" and n.pop("arc", None) is not None:
        t.note(f"{w}.arc", f"unused by {net_type} (as in SLM-Lab)")
    activation = n.pop("hid_layers_activation", None)
    if "hid_layers_activation" not in out:  # not TorchArcNet, whose arc names its activation
        t.renamed[f"{w}.hid_layers_activation"] = (f"{w}.hid_layers_activation", ACTIVATIONS)
        if activation is not None and activation not in ACTIVATIONS:
            t.error(f"{w}.hid_layers_activation", f"'{activation}'; allowed: " + ", ".join(ACTIVATIONS))
        elif activation is not None:
            out["hid_layers_activation"] = ACTIVATIONS[activation]
    elif activation is not None and ACTIVATIONS.get(activation) != out["hid_layers_activation"]:
        t.note(f"{w}.hid_layers_activation", f"'{activation}' is unused by TorchArcNet: its arc's "
               f"{out['hid_layers_activation']} layers are")
    init = n.pop("init_fn", None)
    if init not in INIT_FNS:
        t.error(f"{w}.init_fn", f"'{init}'; allowed: " + ", ".join(str(k) if k else "null" for k in INIT_FNS))
    else:
        out["init_fn"] = INIT_FNS[init]
        if init is None:
            t.note(f"{w}.init_fn", "null: torch's default initialisation (zoo's 'default')")
    for key in ("clip_grad_val", "shared", "log_std_init"):
        if key in n:
            out[key] = n.pop(key)
            t.same(f"{w}.{key}", f"{w}.{key}")
    if "shared" in out and algorithm not in ("A2C", "PPO") and out.pop("shared"):  # read by actor-critics only
        t.note(f"{w}.shared", f"unused by {algorithm} (as in SLM-Lab)")
    if out.get("clip_grad_val") is not None and algorithm in ("A2C", "PPO") and not out.get("shared"):
        out["clip_grad_per_net"] = True
        t.note(f"{w}.clip_grad_val", "SLM-Lab clips each net's own gradient norm: zoo's clip_grad_per_net true (zoo's "
               "default clips actor and critic together)")
    loss = n.pop("loss_spec", None)
    if loss is not None and algorithm == "Reinforce":
        t.note(f"{w}.loss_spec", "unused by Reinforce, which has no value loss (as in SLM-Lab)")
    elif loss is not None:
        loss = dict(loss)
        loss_name = loss.pop("name", "MSELoss")
        if loss_name not in ("MSELoss", "SmoothL1Loss"):
            t.error(f"{w}.loss_spec.name", f"'{loss_name}'; allowed: MSELoss, SmoothL1Loss")
        out["loss_spec"] = {"name": loss_name}
        _leftover(t, loss, f"{w}.loss_spec", ("name",))
    for key in ("optim_spec", "actor_optim_spec", "critic_optim_spec"):
        optim = _optim(t, n.pop(key, None), f"{w}.{key}", f"{w}.{key}")
        if optim is not None:
            out[key] = optim
    same_optim = n.pop("use_same_optim", False)
    if same_optim and "actor_optim_spec" in out:  # else both default to optim_spec, in SLM-Lab as in zoo
        t.note(f"{w}.use_same_optim", "true: the critic trains with the actor's optimizer spec, as SLM-Lab")
        out["critic_optim_spec"] = out["actor_optim_spec"]
    if algorithm in ("A2C", "PPO") and out.get("shared"):
        for key in ("actor_optim_spec", "critic_optim_spec"):
            if key in out:
                out.setdefault("optim_spec", out[key])
                del out[key]
    _lr_scheduler(t, n.pop("lr_scheduler_spec", None), f"{w}.lr_scheduler_spec", out)
    for key in ("update_type", "update_frequency", "polyak_coef"):
        if key in n:
            out[key] = _int(n.pop(key)) if key == "update_frequency" else n.pop(key)
            t.same(f"{w}.{key}", f"{w}.{key}")
    if out.get("update_type") == "polyak":
        out.pop("update_frequency", None)
        t.note(f"{w}.polyak_coef", "zoo blends the target after every gradient step; SLM-Lab after every training "
               "phase")
    if algorithm in ("SoftActorCritic", "CrossQ", "VanillaDQN", "A2C", "PPO", "Reinforce", "SARSA"):
        for key in ("update_type", "update_frequency", "polyak_coef"):
            if key in out and algorithm != "SoftActorCritic":
                del out[key]
                t.note(f"{w}.{key}", f"unused by {algorithm} (no target network)")
    if algorithm == "SoftActorCritic" and "update_type" not in out:
        out["update_type"] = "polyak"
    gpu = n.pop("gpu", None)
    device = {True: "auto", "auto": "auto", False: "cpu", None: None}.get(gpu, "auto")
    if gpu is not None:
        t.note(f"{w}.gpu", f"{gpu!r}: zoo's meta.device {device}")
    if n.pop("batch_norm", False):
        if algorithm == "CrossQ":
            t.note(f"{w}.batch_norm", "true: zoo's CrossQ critics batch-renormalize after each hidden layer (the "
                   "CrossQ paper's BatchRenorm, statistics shared by (s, a) and (s', a')) where SLM-Lab's MLPNet puts "
                   "BatchNorm1d there, in the actor too; zoo's actor has no normalization layers")
        else:
            t.error(f"{w}.batch_norm", f"zoo's nets for {algorithm} have no batch norm option (only CrossQ's critics "
                    "batch-renormalize); allowed: false")
    _pop_unread(t, n, w)
    if n.pop("layer_norm", False):
        out["layer_norm"] = True
        t.same(f"{w}.layer_norm", "agent.net.layer_norm")
    if n.pop("normalize", False):
        t.note(f"{w}.normalize", "true: zoo scales uint8 (Atari) frames to [0, 1] inside the net; other observations "
               "are not scaled")
    _init_gains(t, n, w, algorithm, init, activation, out)
    if "out_layer_activation" in n:
        value = n.pop("out_layer_activation")
        if value not in (None, "linear"):
            t.error(f"{w}.out_layer_activation", f"'{value}': zoo's output layers are linear; allowed: null, linear")
    _leftover(t, n, w, ("type", "arc", "hid_layers", "conv_hid_layers", "fc_hid_layers", "hid_layers_activation",
                        "out_layer_activation", "init_fn",
                        "clip_grad_val", "shared", "loss_spec", "optim_spec", "actor_optim_spec",
                        "critic_optim_spec", "use_same_optim", "lr_scheduler_spec", "update_type",
                        "update_frequency", "polyak_coef", "gpu", "normalize", "batch_norm", "layer_norm",
                        "actor_init_std", "critic_init_std", "log_std_init"))
    return out, device


def _recurrent(t: Translation, n: dict[str, Any], w: str) -> dict[str, Any]:
    """SLM-Lab v5's RecurrentNet repeats the current state seq_len times and runs its RNN from a zero state (its
    memories hold no history): zoo's StatelessRecurrentNet. Its heads read the RNN's hidden state; hid_layers is
    unread."""
    out: dict[str, Any] = {"type": "StatelessRecurrentNet", "hid_layers": []}
    t.note(f"{w}.type", "RecurrentNet: SLM-Lab feeds it the current state repeated seq_len times and runs the RNN "
           "from zeros at every step (no memory between steps): zoo's StatelessRecurrentNet does the same (zoo's "
           "RecurrentNet, which carries hidden states, is not what SLM-Lab runs)")
    cell = n.pop("cell_type", "GRU")
    if cell not in ("GRU", "LSTM"):
        t.error(f"{w}.cell_type", f"'{cell}'; allowed: GRU, LSTM")
    out["cell_type"] = cell
    for key in ("fc_hid_layers", "rnn_hidden_size", "rnn_num_layers", "seq_len"):
        if key in n:
            out[key] = _int(n.pop(key)) if key != "fc_hid_layers" else n.pop(key)
            t.same(f"{w}.{key}", f"{w}.{key}")
    t.same(f"{w}.cell_type", f"{w}.cell_type")
    for key in ("rnn_hidden_size", "seq_len"):
        if key not in out:
            t.error(f"{w}.{key}", "missing: SLM-Lab's RecurrentNet needs it (it has no default)")
    if n.pop("bidirectional", False):
        t.error(f"{w}.bidirectional", "zoo's StatelessRecurrentNet runs one direction; allowed: false")
    t.unused[f"{w}.hid_layers"] = "unread by SLM-Lab's RecurrentNet (its heads read the RNN's hidden state)"
    if "hid_layers" in n:
        n.pop("hid_layers")
        t.note(f"{w}.hid_layers", t.unused[f"{w}.hid_layers"])
    for key in ("actor_init_std", "critic_init_std"):
        if key in n:
            n.pop(key)
            t.note(f"{w}.{key}", "unread by SLM-Lab's RecurrentNet (its heads get init_fn's gain as every layer)")
    return out


def _init_gains(t: Translation, n: dict[str, Any], w: str, algorithm: str, init: Any, activation: Any,
                out: dict[str, Any]) -> None:
    """SLM-Lab's init_layers: `init_fn` with gain calculate_gain(hid_layers_activation) (its default relu) on every
    Linear / Conv layer, output layers included; then init_tails re-initialises the output layers with
    `actor_init_std` / `critic_init_std`, but only in a net of several tails (a shared actor-critic)."""
    stds = {key: n.pop(key) for key in ("actor_init_std", "critic_init_std") if key in n}
    shared = bool(out.get("shared")) and algorithm in ("A2C", "PPO")
    if activation is not None and activation not in ACTIVATIONS:
        return  # reported with hid_layers_activation
    if init not in ("orthogonal_", "xavier_uniform_"):
        if shared and stds:
            t.note(f"{w}.{next(iter(stds))}", f"init_fn {init}: zoo keeps torch's default initialisation of the heads "
                   "(SLM-Lab re-initialises a shared net's heads orthogonally with these stds)")
        return
    name = {"lrelu": "leaky_relu", "leakyrelu": "leaky_relu"}.get(str(activation or "relu").lower(),
                                                                  str(activation or "relu").lower())
    try:
        gain = nn.init.calculate_gain(name)
    except ValueError:
        t.error(f"{w}.hid_layers_activation", f"'{activation}': SLM-Lab's {init} takes the gain of this activation, "
                "which torch's calculate_gain does not know (SLM-Lab fails too); allowed: relu, tanh, leaky_relu, "
                "selu, sigmoid, linear")
        return
    out["init_gain"] = gain
    t.note(f"{w}.init_fn", f"{init} with gain {gain:.4g} ({name}'s, as SLM-Lab's init_layers; zoo's default: ReLU's "
           "for orthogonal, 1 for xavier_uniform) on every layer")
    if algorithm not in POLICY_GRADIENT:
        for key in stds:
            t.note(f"{w}.{key}", f"unused by {algorithm} (as in SLM-Lab: its init_tails reads shared actor-critics)")
        return
    if shared:
        out["actor_init_gain"] = stds.get("actor_init_std", gain)
        out["critic_init_gain"] = stds.get("critic_init_std", gain)
        t.note(f"{w}.actor_init_std", f"the shared net's policy / value output layers get gains "
               f"{out['actor_init_gain']:.4g} / {out['critic_init_gain']:.4g}: zoo's actor_init_gain / "
               "critic_init_gain")
        return
    out["actor_init_gain"] = gain  # one tail per net: SLM-Lab's init_tails leaves it as init_layers made it
    t.note(f"{w}.actor_init_gain", f"{gain:.4g}: SLM-Lab initialises the policy's output layer as the others (zoo's "
           "default: 0.01 with orthogonal)" + (f"; {', '.join(stds)} unused for separate nets, as in SLM-Lab (its "
                                              "init_tails reads a net of several tails)" if stds else ""))


def _lr_scheduler(t: Translation, value: Any, where: str, out: dict[str, Any]) -> None:
    if value is None:
        return
    value = dict(value)
    name = value.pop("name", None)
    if name == "LinearToZero":
        frame = _int(value.pop("frame", None))
        out["lr_scheduler_spec"] = {"name": "linear_to_zero"}
        t.note(where, f"LinearToZero over {frame} frames: zoo's linear_to_zero reaches zero at env.max_frame")
    elif name == "StepLR":
        out["lr_scheduler_spec"] = {"name": "StepLR", "step_size": _int(value.pop("step_size", 1)),
                                    "gamma": value.pop("gamma", 0.1)}
        t.note(where, "StepLR: zoo counts step_size in frames")
    else:
        t.error(f"{where}.name", f"'{name}'; allowed: LinearToZero, StepLR, null")
    _leftover(t, value, where, ("name", "frame", "step_size", "gamma"))


def _arc(t: Translation, arc: Any, w: str, algorithm: str) -> dict[str, Any]:
    """A TorchArc `arc` of one Sequential body (SLM-Lab's benchmark nets) -> zoo's MLPNet / ConvNet fields."""
    if not isinstance(arc, dict):
        t.error(w, "TorchArcNet needs an arc mapping (modules + graph)")
        return {}
    modules, graph = arc.get("modules"), arc.get("graph")
    if (not isinstance(modules, dict) or len(modules) != 1 or not isinstance(graph, dict)
            or list(graph.get("modules", {}).values()) != [[graph.get("input")]]
            or graph.get("output") != next(iter(modules), None)):
        t.error(w, "only a single module fed by the graph's input and returned as its output translates (zoo "
                "builds MLP / conv nets); this arc's graph has no zoo equivalent")
        return {}
    (module_name, body), = modules.items()
    layers = body.get("Sequential") if isinstance(body, dict) and len(body) == 1 else None
    if not isinstance(layers, list):
        t.error(f"{w}.modules.{module_name}", "expected a Sequential list of layers")
        return {}
    hid, conv, activations, brn, norms, flat = [], [], set(), [], 0, False
    for i, layer in enumerate(layers):
        where = f"{w}.modules.{module_name}.Sequential[{i}]"
        if isinstance(layer, str):
            kind, kwargs = layer, {}
        elif isinstance(layer, dict) and len(layer) == 1:
            (kind, kwargs), = layer.items()
            kwargs = kwargs or {}
        else:
            t.error(where, f"expected one layer name, got {layer!r}")
            continue
        if kind in ARC_ACTIVATIONS:
            activations.add(ARC_ACTIVATIONS[kind])
        elif kind == "LazyLinear":
            hid.append(kwargs.get("out_features"))
        elif kind == "LazyConv2d" and not hid:
            conv.append([kwargs.get("out_channels"), kwargs.get("kernel_size"), kwargs.get("stride", 1),
                         kwargs.get("padding", 0), kwargs.get("dilation", 1)])
        elif kind == "Flatten" and conv and not hid:
            flat = True
        elif kind == "LazyBatchRenorm1d" and algorithm == "CrossQ" and w.startswith("agent.critic_net"):
            brn.append(kwargs)
        elif kind == "LayerNorm" and hid and not conv:
            norms += 1
        else:
            t.error(where, f"{kind}: no zoo equivalent in this position; translated: LazyLinear, LazyConv2d, Flatten "
                    "(after convs), " + ", ".join(ARC_ACTIVATIONS) + " (one kind per net), LazyBatchRenorm1d "
                    "(CrossQ critics)")
    if len(activations) > 1:
        t.error(w, f"mixes activations {sorted(activations)}: zoo's nets use one hid_layers_activation")
    if norms and norms != len(hid):
        t.error(w, f"{norms} LayerNorm for {len(hid)} LazyLinear: zoo's agent.net.layer_norm puts one after each "
                "hidden Linear")
    out: dict[str, Any] = {"type": "ConvNet" if conv else "MLPNet", "hid_layers": hid}
    if norms:
        out["layer_norm"] = True
    if conv:
        out["conv_hid_layers"] = conv
        if not flat:
            t.note(w, "conv layers: zoo flattens their output before the linear layers")
    out["hid_layers_activation"] = activations.pop() if activations else "identity"
    if brn:
        out["_brn"] = brn[0]
    t.note(w, f"TorchArc arc -> zoo {out['type']} hid_layers {hid}" + (f", conv_hid_layers {conv}" if conv else "")
           + f", {out['hid_layers_activation']}")
    return out


def _critic_net(t: Translation, c: dict[str, Any], algorithm: str, out: dict[str, Any]) -> None:
    """SLM-Lab's `agent.critic_net` (SAC, CrossQ): zoo's one net section serves actor and critic, so its layers
    must match the actor's; its optimizer becomes `agent.net.critic_optim_spec`."""
    w = "agent.critic_net"
    critic, _ = _net(t, c, algorithm, w)
    net = out.get("net", {})
    brn = critic.pop("_brn", None)
    if critic.get("hid_layers") != net.get("hid_layers") and algorithm == "CrossQ":
        net["critic_hid_layers"] = critic.pop("hid_layers")
        t.note(f"{w}.arc", f"critic widths {net['critic_hid_layers']}: zoo's agent.net.critic_hid_layers")
    for key in ("type", "hid_layers", "conv_hid_layers", "hid_layers_activation"):
        if critic.get(key) != net.get(key) and key in critic:
            t.error(f"{w}.{key if key != 'hid_layers' else 'arc'}", f"{critic.get(key)} differs from agent.net's "
                    f"{net.get(key)}: zoo's actor and critics share agent.net's layers")
    if "optim_spec" in critic:  # the actor keeps agent.net.optim_spec
        net["critic_optim_spec"] = critic["optim_spec"]
    if critic.get("clip_grad_val") != net.get("clip_grad_val"):
        t.note(f"{w}.clip_grad_val", "zoo clips every gradient with agent.net.clip_grad_val "
               f"({net.get('clip_grad_val')})")
    if brn is not None:
        algo = out["algorithm"]
        if "momentum" in brn:
            algo["brn_momentum"] = brn["momentum"]
        if "warmup_steps" in brn:
            algo["brn_warmup_steps"] = _int(brn["warmup_steps"])
        t.note(f"{w}.arc", "LazyBatchRenorm1d after each Linear: zoo's CrossQ critic normalizes [s, a] first and "
               "each hidden layer after its activation (the authors' order), epsilon 1e-3")
    elif algorithm == "CrossQ":
        t.note(f"{w}.arc", "no batch renorm in SLM-Lab's critic; zoo's CrossQ critics always batch-renormalize")
    net.pop("_brn", None)


# ------------------------------------------------------------------------------------------------------ env
def _env(t: Translation, e: dict[str, Any]) -> dict[str, Any]:
    w = "env"
    out: dict[str, Any] = {}
    for key in ("name", "num_envs", "max_t", "max_frame"):
        if key in e:
            value = e.pop(key)
            out[key] = _int(value) if key != "name" else value
            t.same(f"{w}.{key}", f"{w}.{key}")
    if out.get("max_t") is None:
        out.pop("max_t", None)
    atari = str(out.get("name", "")).startswith("ALE/")
    norm_obs, norm_reward = e.pop("normalize_obs", False), e.pop("normalize_reward", False)
    clip_obs = e.pop("clip_obs", SLM_NORMALIZE_CLIP if norm_obs else None)
    clip_reward = e.pop("clip_reward", SLM_NORMALIZE_CLIP if norm_reward else None)
    life_loss = e.pop("life_loss_info", False)
    if atari:
        out["episode_life"] = bool(life_loss)
        t.note(f"{w}.life_loss_info", f"{life_loss}: zoo's env.episode_life (a lost life ends the learning episode)")
        if norm_obs or norm_reward:
            t.error(f"{w}.normalize_obs", "Atari frames are scaled inside the net; allowed: false")
        if clip_reward is not None:
            t.note(f"{w}.clip_reward", "Atari rewards are clipped to [-1, 1] for learning, as SLM-Lab does")
    else:
        if life_loss:
            t.error(f"{w}.life_loss_info", "applies to Atari (ALE/...) envs only")
        if norm_obs:
            out["normalize_obs"], out["clip_obs"] = True, clip_obs
            if clip_obs == SLM_NORMALIZE_CLIP:
                t.note(f"{w}.clip_obs", "10 (SLM-Lab's default with normalize_obs)")
        elif clip_obs is not None:
            t.error(f"{w}.clip_obs", "clips raw observations in SLM-Lab; zoo clips normalized ones only (set "
                    "normalize_obs: true)")
        if norm_reward:
            out["normalize_reward"] = True
            if clip_reward != SLM_NORMALIZE_CLIP:
                t.error(f"{w}.clip_reward", f"{clip_reward}: zoo clips normalized rewards to [-10, 10]; allowed: 10")
        elif clip_reward is not None:
            t.error(f"{w}.clip_reward", "zoo clips rewards only when normalizing them (or on Atari); allowed: null")
    for key in ("device", "reward_scale"):
        if key in e:
            t.error(f"{w}.{key}", "has no zoo equivalent; remove it")
            e.pop(key)
    if e:
        out["kwargs"] = dict(e)
        t.note(f"{w}.kwargs", "passed to gym.make as SLM-Lab does: " + ", ".join(f"{k}={v!r}" for k, v in e.items()))
        for key in e:
            t.same(f"{w}.{key}", f"{w}.kwargs.{key}")
    return out


# ----------------------------------------------------------------------------------------------------- meta
def _meta(t: Translation, m: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    w = "meta"
    out: dict[str, Any] = {}
    distributed = m.pop("distributed", False)
    if distributed is not False:
        _distributed(t, distributed, m, spec, out)
    for key in ("max_session", "max_trial", "log_frequency", "eval_frequency"):
        if key in m:
            out[key] = _int(m.pop(key))
            t.same(f"{w}.{key}", f"{w}.{key}")
    if "random_seed" in m:
        out["seed"] = m.pop("random_seed")
    rigorous = m.pop("rigorous_eval", None)
    if rigorous:
        out["eval_episodes"] = _int(rigorous)
    elif rigorous is not None:
        t.note(f"{w}.rigorous_eval", "0: SLM-Lab then reports training episodes; zoo always evaluates on a separate "
               "env (meta.eval_episodes, default 10)")
    if "num_gpus" in m:
        t.note(f"{w}.num_gpus", "unused: zoo places nets by meta.device")
        m.pop("num_gpus")
    if "search_resources" in m:
        t.note(f"{w}.search_resources", "Ray resources per trial; zoo's search runs Optuna workers instead (unused)")
        m.pop("search_resources")
    scheduler = m.pop("search_scheduler", None)
    if isinstance(scheduler, dict):
        scheduler = dict(scheduler)
        eval_frequency = out.get("eval_frequency", 10000)
        grace = _number(scheduler.pop("grace_period", eval_frequency)) or eval_frequency
        out["search_scheduler"] = "successive_halving"
        out["grace_period"] = max(1, math.ceil(grace / eval_frequency))
        if "reduction_factor" in scheduler:
            out["reduction_factor"] = _int(scheduler.pop("reduction_factor"))
        t.note(f"{w}.search_scheduler", f"Ray's ASHA -> zoo's successive_halving; grace_period {int(grace)} frames = "
               f"{out['grace_period']} evaluations")
        _leftover(t, scheduler, f"{w}.search_scheduler", ("grace_period", "reduction_factor"))
    elif scheduler is not None:
        t.error(f"{w}.search_scheduler", f"expected a mapping with grace_period, reduction_factor; got {scheduler!r}")
    for key in ("experiment", "trial", "session", "resume", "git_sha", "random_seed", "prepath"):
        m.pop(key, None)
    _leftover(t, m, w, ("distributed", "max_session", "max_trial", "log_frequency", "eval_frequency", "rigorous_eval",
                        "search_resources", "search_scheduler", "random_seed"))
    return out


def _distributed(t: Translation, mode: Any, m: dict[str, Any], spec: dict[str, Any], out: dict[str, Any]) -> None:
    """SLM-Lab's Hogwild: `meta.max_session` sessions are the workers of one trial (control.py,
    `run_distributed_sessions`), each stepping its own `num_envs` envs -> zoo's one session with that many
    asynchronous collector workers (`meta.distributed`, env.collector multi_async, zoo/components.py)."""
    w = "meta.distributed"
    workers = _int(m.pop("max_session", 1))
    if mode not in ("synced", "shared"):
        t.error(w, f"{mode!r}: allowed: false, synced, shared")
        return
    if not isinstance(workers, int) or workers < 2:
        t.error(w, f"'{mode}' with meta.max_session {workers}: SLM-Lab's sessions are the workers, and zoo's "
                "asynchronous actor-learners need 2 or more; allowed: false, or meta.max_session >= 2")
        return
    env = spec["env"]
    copies = env.get("num_envs", 1)
    env.update(num_envs=copies * workers, collector="multi_async", num_workers=workers)
    out["distributed"] = mode
    t.note(w, f"'{mode}': SLM-Lab's {workers} Hogwild sessions (meta.max_session) become one session with "
           f"{workers} multi_async workers of {copies} envs each (env.num_envs {copies * workers}); one learner "
           "applies each worker's batch (num_envs x time_horizon frames, all workers' envs' worth) as it arrives, "
           "so there are no racing gradient writes, and policy lag instead"
           + ("; workers act with the learner's shared-memory parameters" if mode == "shared" else
              "; weights pushed to the workers after every update"))


def _flatten(search: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in search.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if "__" not in str(key) and isinstance(value, dict):
            flat.update(_flatten(value, path))
        else:
            flat[path] = value
    return flat


def _search(t: Translation, search: Any) -> dict[str, Any]:
    if not isinstance(search, dict):
        t.error("search", f"expected a mapping, got {search!r}")
        return {}
    out = {}
    for key, value in _flatten(search).items():
        path, _, kind = key.rpartition("__")
        where = f"search.{key}"
        if not path:
            t.error(where, "needs a distribution suffix; allowed: __" + ", __".join(SEARCH_SUFFIXES))
        elif kind not in SEARCH_SUFFIXES:
            t.error(where, f"'__{kind}' has no zoo equivalent; allowed: __" + ", __".join(SEARCH_SUFFIXES))
        elif path in t.unused:
            t.note(where, f"not searched: {path} is {t.unused[path]}")
        elif path in t.renamed:
            out.update(_renamed_choice(t, where, kind, value, *t.renamed[path]))
        elif reason := _unread(t, path):
            t.note(where, f"not searched: {path} is {reason}")
        elif path not in t.paths:
            out[f"{SOURCE_PREFIX}{path}__{kind}"] = value
            t.note(where, f"{path} does not carry over to one zoo field unchanged, so each trial sets it in the "
                   "SLM-Lab spec and translates that again")
        else:
            out[f"{t.paths[path]}__{kind}"] = value
            if t.paths[path] != path:
                t.note(where, f"searches zoo's {t.paths[path]}")
    return out


def _renamed_choice(t: Translation, where: str, kind: str, value: Any, zoo_path: str,
                     names: dict[str, Any]) -> dict[str, Any]:
    """A search choice over a field whose values zoo names otherwise, each value renamed (duplicates dropped)."""
    allowed = ", ".join(names)
    if kind != "choice" or not isinstance(value, list) or not value:
        t.error(where, f"its values are names, searchable as __choice of a list of: {allowed}")
        return {}
    unknown = [v for v in value if v not in names]
    if unknown:
        t.error(where, f"{', '.join(map(str, unknown))}; allowed: {allowed}")
        return {}
    choices = list(dict.fromkeys(names[v] for v in value))
    if choices != value:
        t.note(where, f"searches zoo's {zoo_path} over {choices}")
    return {f"{zoo_path}__choice": choices}


def translate_file(path: str | Path, names: list[str] | None = None,
                   variables: dict[str, Any] | None = None) -> dict[str, tuple[dict[str, Any], list[str]]]:
    """The named specs of an SLM-Lab file (default: all) as {name: (zoo raw spec, notes)}, `${var}` templates
    filled from `variables` first. Raises `SlmSpecError` with every problem of every spec asked for."""
    path = Path(path)
    data = read_spec_file(path)
    available = spec_names(data)
    names = names or available or [path.stem]
    out, errors = {}, []
    for name in names:
        if available and name not in available:
            errors.append(f"{path}: no spec named '{name}'; allowed: " + ", ".join(available))
            continue
        raw = data[name] if available else data
        try:
            raw = apply_overrides(json.loads(json.dumps(raw)), dict(variables or {}))
            out[name] = translate_slm(raw, str(path))
        except SlmSpecError as err:
            errors += err.lines
        except SpecError as err:
            errors.append(f"{path}: {name}: {err.line()}")
    if errors:
        raise SlmSpecError(errors, str(path))
    return out


register_spec_format("slm", SpecFormat(detect=is_slm_spec, translate=translate_slm))
