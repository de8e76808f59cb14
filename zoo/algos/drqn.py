"""DRQN: the DQN family with a recurrent Q-net (Hausknecht & Stone 2015), trained on replayed sequences.

`agent.net.type: RecurrentNet` in DQN / DoubleDQN / VanillaDQN (zoo/algos/dqn.py builds the rest). The Q-net is
zoo's recurrent torso (TorchRL's `LSTMModule` / `GRUModule`, zoo/nets.py) and an MLP head. Collection acts
through the TorchRL modules, which carry each env's hidden state and zero it at episode starts (`is_init`);
every stored step keeps the state it was acted from (R2D2's "stored state", Kapturowski et al. 2019).

The replay keeps each env's steps as one stream, in order: a `[time, env]` storage (TorchRL lays a `[num_envs, T]`
batch out so with `ndim=2`), from which TorchRL's `SliceSampler` draws windows of `agent.net.seq_len` consecutive
steps of one env. Every stream is as long as the others, so the windows are drawn uniformly, as DQN's transitions.
A window may cross an episode end: its steps after the end carry no loss. The first `burn_in` steps only warm up the
hidden state (no loss, no gradient), then the (double) DQN TD loss runs on the rest (`sequence_td_loss`).
"""

import math

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.data import LazyTensorStorage, SliceSampler, TensorDictReplayBuffer

from zoo.agent import regression
from zoo.nets import build_mlp, build_recurrent_torso, recurrent_state_keys
from zoo.spec import MemorySpec, Spec, SpecError

PREFIX = "recurrent_state"  # the Q-net's hidden state keys: recurrent_state_h (and _c for an LSTM)
STREAM_END = "stream_end"  # stored False on every step: each env's steps are one SliceSampler trajectory
STEP_KEYS = ("observation", "action", "is_init", ("next", "observation"), ("next", "reward"), ("next", "done"),
             ("next", "terminated"))


class RecurrentQNet(nn.Module):
    """Q-values of observation sequences `[B, T, obs]` from initial hidden states, in plain torch: the modules
    the TorchRL torso acts with (`fc_hid_layers` MLP, `nn.LSTM` / `nn.GRU`, the `hid_layers` head), without the
    TensorDict plumbing of recurrent mode. States are tuples of `[num_layers, B, hidden]` (h, c for an LSTM)."""

    def __init__(self, embed: nn.Module, rnn: nn.LSTM | nn.GRU, head: nn.Module):
        super().__init__()
        self.embed, self.rnn, self.head = embed, rnn, head

    def forward(self, obs: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple]:
        lstm = isinstance(self.rnn, nn.LSTM)
        features, final = self.rnn(self.embed(obs), state if lstm else state[0])
        return self.head(features), final if lstm else (final,)


def build_recurrent_q_net(obs_shape: tuple[int, ...], num_actions: int,
                          net_spec) -> tuple[TensorDictSequential, RecurrentQNet, list[str]]:
    """(the TensorDict Q-module that acts, writing `action_value` and the next hidden state; the same parameters
    as a `RecurrentQNet` for the loss; the hidden-state keys)."""
    if len(obs_shape) != 1:
        raise SpecError("agent.net.type", f"RecurrentNet reads 1-D observations; these have shape {list(obs_shape)}")
    torso = build_recurrent_torso(obs_shape[0], net_spec, PREFIX)
    head = build_mlp(net_spec.rnn_hidden_size, num_actions, net_spec)
    cell = torso.module[-1]
    embed = torso.module[0].module if len(torso.module) > 1 else nn.Identity()
    q_module = TensorDictSequential(torso, TensorDictModule(head, [f"{PREFIX}_features"], ["action_value"]))
    rnn = cell.lstm if net_spec.cell_type == "LSTM" else cell.gru
    return q_module, RecurrentQNet(embed, rnn, head), recurrent_state_keys(net_spec, PREFIX)


def check_drqn(spec: Spec) -> None:
    """SpecError unless the spec's replay and sequence settings fit a recurrent DQN."""
    algo_spec, net_spec, mem_spec = spec.agent.algorithm, spec.agent.net, spec.agent.memory
    seq_len = net_spec.seq_len
    if seq_len is None:
        raise SpecError("agent.net.seq_len", f"{algo_spec.name} with RecurrentNet replays sequences of seq_len steps; "
                        "set it (an integer > burn_in, e.g. 16)")
    if algo_spec.burn_in >= seq_len:
        raise SpecError("agent.algorithm.burn_in", f"{algo_spec.burn_in} leaves no trained step in sequences of "
                        f"agent.net.seq_len {seq_len}; allowed: 0 to {seq_len - 1}")
    if mem_spec.batch_size % seq_len:
        raise SpecError("agent.memory.batch_size", f"{mem_spec.batch_size} is not a multiple of agent.net.seq_len "
                        f"{seq_len}: batches hold whole sequences")
    if mem_spec.name != "Replay":
        raise SpecError("agent.memory.name", f"{mem_spec.name}: RecurrentNet replays sequences uniformly; allowed: "
                        "Replay")
    if mem_spec.use_cer:
        raise SpecError("agent.memory.use_cer", "combined experience replay is not supported with RecurrentNet; "
                        "allowed: false")
    if algo_spec.n_step > 1:
        raise SpecError("agent.algorithm.n_step", "n-step returns are not supported with RecurrentNet; allowed: 1")
    if algo_spec.training_start_step < seq_len * spec.env.num_envs:
        raise SpecError("agent.algorithm.training_start_step", f"{algo_spec.training_start_step} frames hold no "
                        f"sequence yet; allowed: at least agent.net.seq_len x env.num_envs = "
                        f"{seq_len * spec.env.num_envs}")
    if spec.env.collector != "sync":
        raise SpecError("env.collector", f"{spec.env.collector}: RecurrentNet DQN stores each env's steps as one "
                        "stream, which needs one env order; allowed: sync")


def make_sequence_replay(memory_spec: MemorySpec, num_envs: int, seq_len: int,
                         device: torch.device | str) -> TensorDictReplayBuffer:
    """A `[time, env]` storage of `max_size` steps (rounded up to whole vector-env steps) and TorchRL's
    `SliceSampler` drawing windows of `seq_len` steps of one env's stream. The sampler leaves the stored flags as
    they are (`truncated_key=None`, `init_key=None`): the loss reads the true episode ends from them."""
    max_size = math.ceil(memory_spec.max_size / num_envs) * num_envs
    sampler = SliceSampler(slice_len=seq_len, end_key=STREAM_END, strict_length=True, truncated_key=None,
                           init_key=None)
    return TensorDictReplayBuffer(storage=LazyTensorStorage(max_size, device=device, ndim=2), sampler=sampler)


def store_steps(buffer: TensorDictReplayBuffer, data: TensorDictBase, terminated_key: str,
                state_keys: tuple[str, ...]) -> None:
    """Store a collected `[num_envs, T]` batch step by step, with the hidden state each step acted from (zeros at
    episode starts, as the recurrent module made them while acting)."""
    steps = data.select(*STEP_KEYS, *state_keys)
    if terminated_key != "terminated":
        steps["next", "terminated"] = data["next", terminated_key]
    start = data["is_init"].unsqueeze(-1)
    for key in state_keys:
        steps[key] = data[key].masked_fill(start, 0.0)
    steps[STREAM_END] = torch.zeros(data.shape, dtype=torch.bool, device=data.device)
    buffer.extend(steps)


def sequence_td_loss(q_net: RecurrentQNet, target_net: RecurrentQNet | None, batch: TensorDictBase, *,
                     gamma: float, double_dqn: bool, burn_in: int, huber: bool,
                     state_keys: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, |TD error| `[B, L]`, zero where no loss) of a batch of sequences `[B, L]`.

    The nets run over the observations o_0 .. o_{L-1} and the last next observation, i.e. o_0 followed by each
    step's next observation, from the stored state of step 0: inside an episode next_o_t = o_{t+1}, and at an
    episode's last step t the next input is its true final observation, so step t bootstraps from
    Q(next_o_t | h_{t+1}) where it was truncated (and not at all where terminated). Steps after an episode end in
    the sequence (or a fresh start, `is_init`) carry no loss; the first `burn_in` steps run without gradient and
    carry none. The loss is the mean over the steps that carry one. DoubleDQN: the online net picks the next
    action, the target net scores it; without a target net (VanillaDQN) the online net does both."""
    obs, next_obs = batch["observation"], batch["next", "observation"]
    inputs = torch.cat([obs[:, :1], next_obs], 1)  # [B, L + 1, obs]
    initial = tuple(batch[key][:, 0].transpose(0, 1).contiguous() for key in state_keys)
    state = initial
    if burn_in:
        with torch.no_grad():
            _, state = q_net(inputs[:, :burn_in], initial)
    q_all, _ = q_net(inputs[:, burn_in:], state)  # [B, L + 1 - burn_in, A]
    action = batch["action"][:, burn_in:]
    if action.shape == q_all[:, :-1].shape:  # one-hot actions
        q = (q_all[:, :-1] * action).sum(-1)
    else:
        q = q_all[:, :-1].gather(-1, action.unsqueeze(-1)).squeeze(-1)
    reward = batch["next", "reward"][:, burn_in:].squeeze(-1)
    with torch.no_grad():
        online_next = q_all[:, 1:].detach()
        next_q = online_next if target_net is None else target_net(inputs, initial)[0][:, burn_in + 1:]
        if double_dqn:
            next_value = next_q.gather(-1, online_next.argmax(-1, keepdim=True)).squeeze(-1)
        else:
            next_value = next_q.max(-1).values
        not_terminal = (~batch["next", "terminated"][:, burn_in:]).squeeze(-1).to(reward.dtype)
        target = reward + gamma * not_terminal * next_value
        cut = batch["next", "done"].squeeze(-1).clone()  # the sequence leaves its first episode after step t
        cut[:, :-1] |= batch["is_init"][:, 1:].squeeze(-1)
        valid = ((cut.cumsum(1) - cut.long()) == 0)[:, burn_in:].to(reward.dtype)  # no end before step t
    elementwise = regression(q, target, huber) * valid
    td_error = torch.zeros(batch.shape, dtype=q.dtype, device=q.device)
    td_error[:, burn_in:] = (q - target).detach().abs() * valid
    return elementwise.sum() / valid.sum().clamp_min(1.0), td_error
