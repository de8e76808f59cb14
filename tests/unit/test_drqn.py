"""DRQN (DQN / DoubleDQN with `agent.net.type: RecurrentNet`): the sequence TD loss against a hand-computed oracle,
replayed sequences that reproduce what acting computed, and the spec checks."""

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torchrl.envs import ExplorationType, set_exploration_type

from tests.conftest import SPECS
from zoo.algos.drqn import sequence_td_loss, store_steps
from zoo.components import build
from zoo.spec import SpecError, load_spec

SPEC = SPECS / "drqn_cartpole_novel.yaml"
TINY = ["env.num_envs=4", "agent.net.fc_hid_layers=[8]", "agent.net.rnn_hidden_size=8", "agent.net.hid_layers=[8]",
        "agent.net.seq_len=8", "agent.algorithm.burn_in=2", "agent.memory.batch_size=64",
        "agent.algorithm.training_start_step=64", "agent.algorithm.training_frequency=256", "meta.seed=1"]


class ToyNet(nn.Module):
    """Q(x | h) = w * (x + h): the state is added unchanged at every step, so the oracle is a line of arithmetic."""

    def __init__(self, w: float):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, obs, state):
        return self.w * (obs + state[0].transpose(0, 1)), state


def toy_batch(terminated_at_end: bool) -> TensorDict:
    """One sequence of 5 steps, 2 actions; observations are the Q-values at w = 1 and h = 0.5. The episode ends
    at step 2 (truncated), a new one starts at step 3; `terminated_at_end` instead ends it at step 4, terminated."""
    obs = torch.tensor([[0.0, 1.0], [2.0, 0.0], [1.0, 3.0], [0.0, 0.0], [5.0, 4.0]])
    next_obs = torch.cat([obs[1:], torch.tensor([[1.0, 2.0]])])
    done, terminated, is_init = (torch.zeros(5, 1, dtype=torch.bool) for _ in range(3))
    if terminated_at_end:
        done[4] = terminated[4] = True
    else:
        next_obs[2] = torch.tensor([4.0, 6.0])  # the episode's final observation (obs[3] is a reset one)
        done[2] = is_init[3] = True
    return TensorDict({
        "observation": obs, "action": torch.tensor([1, 0, 1, 0, 1]), "is_init": is_init,
        "recurrent_state_h": torch.full((5, 1, 2), 0.5),
        "next": {"observation": next_obs, "reward": torch.arange(1.0, 6.0).unsqueeze(-1), "done": done,
                 "terminated": terminated}}, batch_size=[5]).unsqueeze(0)


@pytest.mark.parametrize("double", [False, True])
def test_sequence_td_loss_equals_the_hand_computed_oracle(double):
    """burn_in 1, gamma 0.5, l2: step 0 warms up only; steps 1 and 2 learn, step 2 bootstrapping through its
    truncation from its final observation; steps 3 and 4 lie after the episode end and carry no loss."""
    online, target = ToyNet(1.0), ToyNet(2.0)
    loss, td_error = sequence_td_loss(online, target, toy_batch(False), gamma=0.5, double_dqn=double, burn_in=1,
                                      huber=False, state_keys=("recurrent_state_h",))
    q1, q2 = 2.0 + 0.5, 3.0 + 0.5  # Q(o_1)[a=0], Q(o_2)[a=1]
    # next values: target net 2 * (next_obs + 0.5); DoubleDQN takes the online net's argmax (same order here
    # except where it differs: at step 1, next_obs [1, 3] -> argmax 1 either way; at step 2, [4, 6] -> 1)
    next1, next2 = 2 * (3.0 + 0.5), 2 * (6.0 + 0.5)
    target1, target2 = 2.0 + 0.5 * next1, 3.0 + 0.5 * next2
    expected = ((q1 - target1) ** 2 + (q2 - target2) ** 2) / 2
    torch.testing.assert_close(loss, torch.tensor(expected))
    torch.testing.assert_close(td_error, torch.tensor([[0.0, abs(q1 - target1), abs(q2 - target2), 0.0, 0.0]]))
    loss.backward()
    assert online.w.grad is not None and target.w.grad is None


def test_double_dqn_lets_the_online_net_pick_the_next_action():
    """A target net that ranks the actions the other way round: DQN takes its max, DoubleDQN the online argmax."""
    batch = toy_batch(True)
    batch["next", "observation"][0, 1] = torch.tensor([3.0, 1.0])  # online picks action 0 after step 1

    class Flipped(ToyNet):
        def forward(self, obs, state):
            q, state = super().forward(obs, state)
            return q.flip(-1), state

    for double, next1 in ((False, 2 * 3.5), (True, 2 * 1.5)):
        loss, td_error = sequence_td_loss(ToyNet(1.0), Flipped(2.0), batch, gamma=0.5, double_dqn=double, burn_in=1,
                                          huber=False, state_keys=("recurrent_state_h",))
        assert td_error[0, 1] == pytest.approx(abs(2.5 - (2.0 + 0.5 * next1)))


def test_terminated_steps_do_not_bootstrap():
    """No episode end before step 4, which terminated: every step after burn-in learns, step 4 from its reward."""
    loss, td_error = sequence_td_loss(ToyNet(1.0), None, toy_batch(True), gamma=0.5, double_dqn=False, burn_in=2,
                                      huber=False, state_keys=("recurrent_state_h",))
    q = torch.tensor([3.5, 0.5, 4.5])  # steps 2, 3, 4: Q(o_t)[a_t]
    next_max = torch.tensor([0.5, 5.5, 0.0])  # VanillaDQN: the online net's max at next_obs; none at the end
    target = torch.tensor([3.0, 4.0, 5.0]) + 0.5 * next_max
    torch.testing.assert_close(loss, ((q - target) ** 2).mean())
    assert td_error[0, :2].eq(0).all() and td_error[0, 2:].gt(0).all()


def collected(*overrides: str):
    components = build(load_spec(SPEC, None, [*TINY, *overrides]))
    with set_exploration_type(ExplorationType.RANDOM):
        data = next(iter(components.collector))
    components.collector.shutdown()
    return components, data


@pytest.mark.parametrize("overrides", [[], ["agent.net.cell_type=GRU"], ["agent.net.rnn_num_layers=2"]])
def test_replayed_sequences_reproduce_what_acting_computed(overrides):
    """The buffer's windows are consecutive steps of one env, and the loss's plain-torch net run from the stored
    initial state gives the Q-values the collector's TorchRL modules computed step by step."""
    components, data = collected(*overrides)
    agent = components.agent
    assert data["is_init"][:, 1:].any()  # episodes start inside the rows
    store_steps(agent.buffer, data, "terminated", agent.loss.state_keys)
    batch = agent.buffer.sample(64).reshape(-1, 8)
    index = batch["index"]
    assert (index[:, 1:, 0] - index[:, :-1, 0]).eq(1).all() and (index[..., 1] == index[:, :1, 1]).all()
    continuing = ~batch["next", "done"][:, :-1].squeeze(-1)
    assert torch.equal(batch["observation"][:, 1:][continuing], batch["next", "observation"][:, :-1][continuing])
    q_net, keys = agent.loss.value_network, agent.loss.state_keys
    start = data["is_init"]
    state = tuple(data[key][:, 0].masked_fill(start[:, 0, :, None], 0.0).transpose(0, 1).contiguous() for key in keys)
    with torch.no_grad():
        q, _ = q_net(data["observation"], state)
    for env in range(data.shape[0]):
        first_end = int(start[env, 1:, 0].nonzero().min()) + 1
        torch.testing.assert_close(q[env, :first_end], data["action_value"][env, :first_end])


def test_update_trains_on_sequences():
    components, data = collected()
    agent = components.agent
    before = [p.detach().clone() for p in agent.params]
    metrics = agent.update(data, 256)
    assert torch.isfinite(metrics["loss"])
    assert all(not torch.equal(a, b) for a, b in zip(before, agent.params, strict=True))


def test_eval_env_carries_the_q_nets_hidden_state():
    components, _ = collected()
    td = components.eval_env.reset()
    assert "recurrent_state_h" in td and "recurrent_state_c" in td
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        td, _ = components.eval_env.step_and_maybe_reset(components.actor(td))
    assert td["next", "recurrent_state_h"].abs().sum() > 0


def test_bad_burn_in_is_a_one_line_spec_error():
    with pytest.raises(SpecError) as info:
        load_spec(SPEC, None, ["agent.algorithm.burn_in=-1"])
    assert info.value.where == "agent.algorithm.burn_in" and "\n" not in str(info.value)


@pytest.mark.parametrize(("overrides", "field", "fragment"), [
    (["agent.algorithm.burn_in=8"], "agent.algorithm.burn_in", "allowed: 0 to 7"),
    (["agent.net.seq_len=null"], "agent.net.seq_len", "set it"),
    (["agent.memory.batch_size=60"], "agent.memory.batch_size", "not a multiple"),
    (["agent.memory.name=PrioritizedReplay"], "agent.memory.name", "allowed: Replay"),
    (["agent.algorithm.n_step=3"], "agent.algorithm.n_step", "allowed: 1"),
    (["agent.algorithm.training_start_step=16"], "agent.algorithm.training_start_step", "at least"),
])
def test_recurrent_dqn_settings_that_do_not_fit_fail_at_build(overrides, field, fragment):
    with pytest.raises(SpecError) as info:
        build(load_spec(SPEC, None, [*TINY, *overrides]))
    assert info.value.where == field and fragment in str(info.value) and "\n" not in str(info.value)


def test_burn_in_needs_a_recurrent_net():
    with pytest.raises(SpecError) as info:
        build(load_spec(SPECS / "dqn_cartpole.yaml", None, ["agent.algorithm.burn_in=2"]))
    assert info.value.where == "agent.algorithm.burn_in" and "RecurrentNet only" in str(info.value)


def test_sarsa_refuses_a_recurrent_net():
    with pytest.raises(SpecError) as info:
        load_spec(SPECS / "sarsa_cartpole.yaml", None, ["agent.net.type=RecurrentNet"])
    assert info.value.where == "agent.net.type" and "SARSA does not build 'RecurrentNet'" in str(info.value)
