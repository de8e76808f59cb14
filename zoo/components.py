"""Spec -> component graph: the TorchRL objects of one session, built once and handed to the loop."""

import random
from dataclasses import dataclass

import numpy as np
import torch
from torchrl.collectors import Collector
from torchrl.envs import EnvBase
from torchrl.modules.utils import get_primers_from_module

from zoo.agent import Agent
from zoo.algos import ALGORITHMS
from zoo.envs import env_info, make_env, normalizers, sync_eval_env
from zoo.spec import ALGORITHM_SUPPORT, Spec, SpecError


@dataclass
class Components:
    """Everything a session runs. Members are plain TorchRL / torch objects usable outside zoo."""

    spec: Spec
    seed: int
    device: torch.device
    env: EnvBase
    eval_env: EnvBase
    agent: Agent
    collector: Collector

    @property
    def policy(self):
        return self.agent.policy

    @property
    def actor(self):
        return self.agent.actor

    @property
    def loss(self):
        return self.agent.loss

    @property
    def buffer(self):
        return self.agent.buffer

    @property
    def optimizers(self):
        return self.agent.optimizers

    @property
    def target_updater(self):
        return self.agent.target_updater

    @property
    def exploration(self):
        """The policy's exploration module (or None): `step(frames)` after each collected batch anneals it."""
        return self.agent.exploration

    @property
    def schedules(self):
        return self.agent.schedules

    def sync_eval_env(self) -> None:
        """Give the eval env the train env's current (frozen) normalization statistics."""
        sync_eval_env(self.env, self.eval_env)

    def describe(self) -> str:
        """A readable summary of the graph, one component per line (for --dry-run)."""
        a, s = self.agent, self.spec
        lines = [
            f"spec        {s.name}: {s.agent.algorithm.name} on {s.env.name}, {s.env.max_frame} frames, "
            f"seed {self.seed}",
            f"env         {s.env.num_envs} x {s.env.name} -> {type(self.env).__name__}, "
            f"batch {tuple(self.env.batch_size)}",
            f"eval_env    {self.eval_env.batch_size[0]} x {s.env.name}, greedy, {s.meta.eval_episodes} episodes "
            f"every {s.meta.eval_frequency} frames",
            f"policy      {_oneline(a.policy)}",
            f"actor       {_oneline(a.actor)}",
            f"collector   {type(self.collector).__name__}(frames_per_batch={a.frames_per_batch}, "
            f"init_random_frames={a.init_random_frames})",
            f"buffer      {_buffer(a.buffer)}",
            f"loss        {_loss(a)}",
            f"target      {_target(a)}",
        ]
        for name, opt in a.optimizers.items():
            group = opt.param_groups[0]
            lines.append(f"optimizer   {name}: {type(opt).__name__}(lr={group['lr']:g})")
        lr = s.agent.net.lr_scheduler_spec
        lines.append(f"lr_schedule {lr.name if lr else 'constant'}")
        if a.exploration is not None:
            lines.append(f"exploration {type(a.exploration).__name__}: {a.exploration.schedule}")
        for name, schedule in a.schedules.items():
            lines.append(f"schedule    {name}: {schedule}")
        lines.append(f"device      {self.device}")
        return "\n".join(lines)


def _oneline(obj) -> str:
    if obj is None:
        return "none"
    if hasattr(obj, "module") and isinstance(getattr(obj, "module", None), torch.nn.ModuleList):
        return " -> ".join(type(m).__name__ for m in obj.module)
    text = repr(obj).split("\n")[0]
    return text if len(text) < 100 else type(obj).__name__


def _loss(agent: Agent) -> str:
    if agent.loss is None:
        return "none (nothing is learned)"
    return f"{type(agent.loss).__name__}, {sum(p.numel() for p in agent.loss.parameters())} parameters"


def _buffer(buffer) -> str:
    if buffer is None:
        return "none (on-policy batches)"
    storage, sampler = buffer._storage, buffer._sampler
    return (f"{type(buffer).__name__}({type(storage).__name__}(max_size={storage.max_size}), "
            f"{type(sampler).__name__}, batch_size={buffer._batch_size})")


def _target(agent: Agent) -> str:
    updater = agent.target_updater
    if updater is None:
        return "none"
    interval = getattr(updater, "value_network_update_interval", None)
    if interval is not None:
        return f"{type(updater).__name__}(every {interval} gradient steps)"
    return f"{type(updater).__name__}(eps={float(getattr(updater, 'eps', 0)):.4f})"


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when present."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def derive_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for torch, numpy, the train env and the eval env, derived from one root seed."""
    torch_seed, numpy_seed, env_seed, eval_seed = np.random.SeedSequence(seed).generate_state(4)
    return {"torch": int(torch_seed), "numpy": int(numpy_seed), "env": int(env_seed), "eval_env": int(eval_seed)}


def seed_everything(seed: int) -> dict[str, int]:
    """Seed python, numpy and torch from the root seed; returns the derived seeds."""
    seeds = derive_seeds(seed)
    random.seed(seeds["numpy"])
    np.random.seed(seeds["numpy"])
    torch.manual_seed(seeds["torch"])
    return seeds


def make_collector(env: EnvBase, agent: Agent, total_frames: int = -1, init_random_frames: int = 0) -> Collector:
    """TorchRL's `Collector` of `agent.policy` on `env`, batches of `agent.frames_per_batch` frames."""
    return Collector(
        env, agent.policy, frames_per_batch=agent.frames_per_batch, total_frames=total_frames,
        init_random_frames=init_random_frames, auto_register_policy_transforms=False,
        track_traj_ids=False,  # no zoo learner reads ("collector", "traj_ids"), and tracking them costs per step
        device=env.device,  # one device for env, policy and storage: the collector then casts nothing per step
    )


def build(spec: Spec, seed: int | None = None, start_frame: int = 0, env: EnvBase | None = None) -> Components:
    """Build the component graph of one session. `seed` defaults to `spec.meta.seed`.

    `env` (a TorchRL env of the spec's task) replaces the train env zoo would make: the policy, actor and loss
    are then built for its specs, so their actions follow its action encoding (integer or one-hot); the eval
    env is zoo's, with the same encoding.
    """
    seed = spec.meta.seed if seed is None else seed
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] % 2**31)
    if spec.meta.num_threads is not None:
        torch.set_num_threads(spec.meta.num_threads)
    seeds = seed_everything(seed)
    device = resolve_device(spec.meta.device)
    gamma = spec.agent.algorithm.gamma
    # envs hand their outputs over on `device` (Atari frames stay uint8 until the net casts them there)
    if env is None:
        env = make_env(spec.env, seeds["env"], device=device, gamma=gamma)
    info, support = env_info(env), ALGORITHM_SUPPORT[spec.agent.algorithm.name]
    one_hot = info["one_hot"]
    if info["action_kind"] in ("MultiDiscrete", "MultiBinary") and not support.multi_actions:
        takers = ", ".join(sorted(name for name, s in ALGORITHM_SUPPORT.items() if s.multi_actions))
        raise SpecError("agent.algorithm.name", f"{spec.agent.algorithm.name} does not act in {info['action_kind']} "
                        f"action spaces ({spec.env.name}); algorithms that do: {takers}")
    if one_hot and not support.one_hot_actions:
        raise SpecError("agent.algorithm.name", f"{spec.agent.algorithm.name} needs integer-coded discrete actions; "
                        "the env given has one-hot actions (build it with categorical_action_encoding=True, or "
                        "use zoo.make_env)")
    eval_env = make_env(spec.env, seeds["eval_env"], num_envs=spec.meta.eval_episodes, device=device, gamma=gamma,
                        evaluation=True, categorical_action_encoding=not one_hot)
    with device:  # parameters, buffers and target copies are created where they run
        agent = ALGORITHMS[spec.agent.algorithm.name].build(spec, env)
    # recurrent policies: the envs carry their hidden states (zeros at each reset) from step to step
    primer, eval_primer = (get_primers_from_module(module, warn=False) for module in (agent.policy, agent.actor))
    if primer is not None:
        env = env.append_transform(primer)
    if eval_primer is not None:
        eval_env = eval_env.append_transform(eval_primer)
    agent.normalizers = normalizers(env) or None
    fpb = agent.frames_per_batch
    collector = make_collector(env, agent, total_frames=-(-max(spec.env.max_frame - start_frame, 1) // fpb) * fpb,
                               init_random_frames=-(-max(agent.init_random_frames - start_frame, 0) // fpb) * fpb)
    return Components(spec=spec, seed=seed, device=device, env=env, eval_env=eval_env, agent=agent,
                      collector=collector)
