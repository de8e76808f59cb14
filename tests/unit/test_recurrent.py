"""RecurrentNet (TorchRL's LSTMModule / GRUModule) in PPO and A2C: hidden states carried through collection and reset at
episode starts, training sequences that replay exactly what acting computed, and `env.obs_mask`."""

import pytest
import torch
from torchrl.envs import ExplorationType, set_exploration_type
from torchrl.modules import set_recurrent_mode

from tests.conftest import SPECS
from zoo.algos.actor_critic import sequences
from zoo.components import build
from zoo.spec import SpecError, field_docs, load_spec

SPEC = SPECS / "ppo_lstm_cartpole_novel.yaml"
TINY = ["env.num_envs=4", "agent.algorithm.time_horizon=32", "agent.algorithm.minibatch_size=64",
        "agent.net.fc_hid_layers=[8]", "agent.net.rnn_hidden_size=8", "agent.net.hid_layers=[8]", "meta.seed=1"]


def collected(*overrides: str):
    """The components of the tiny spec and one collected batch `[num_envs, T]` (several episodes per row)."""
    components = build(load_spec(SPEC, None, [*TINY, *overrides]))
    with set_exploration_type(ExplorationType.RANDOM):
        data = next(iter(components.collector))
    components.collector.shutdown()
    return components, data


@pytest.mark.parametrize("overrides", [[], ["agent.net.cell_type=GRU"], ["agent.net.shared=true"],
                                       ["agent.net.rnn_num_layers=2", "agent.net.fc_hid_layers=[]"]])
def test_collection_carries_hidden_states_and_resets_them_at_episode_starts(overrides):
    components, data = collected(*overrides)
    nets = components.loss.nets
    assert nets.state_keys and data["is_init"][:, 1:].any()  # episodes start inside the rows
    for key in nets.state_keys:
        state, after = data[key], data["next", key]
        start = data["is_init"].squeeze(-1)
        assert state.shape[:2] == data.shape and not torch.equal(state, torch.zeros_like(state))
        # each step acts from the state the previous step left, except at an episode start (zeros)
        assert torch.equal(state[:, 1:][~start[:, 1:]], after[:, :-1][~start[:, 1:]])
        assert not state[start].any()


@pytest.mark.parametrize("overrides", [[], ["agent.net.cell_type=GRU"], ["agent.net.shared=true"],
                                       ["agent.net.seq_len=8"]])
def test_training_sequences_equal_the_step_by_step_forward(overrides):
    """Recurrent mode over the stored sequences (split where episodes start) reproduces the log-probs and values
    the collector computed one step at a time."""
    components, data = collected(*overrides)
    nets = components.loss.nets
    rows = sequences(data.clone(), nets, components.spec.agent.net.seq_len)
    with torch.no_grad():
        features, value_features = nets.features(rows)
        log_prob = nets.dist(features).log_prob(rows["action"])
        value = nets.value(value_features)
    torch.testing.assert_close(log_prob, rows["action_log_prob"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(value, rows["state_value"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("overrides", [[], ["agent.net.shared=true", "agent.net.hid_layers=[]",
                                           "agent.net.cell_type=LSTM", "agent.net.seq_len=8"]])
def test_a2c_loss_modules_in_recurrent_mode_equal_the_step_by_step_forward(overrides):
    """A2C trains through TorchRL's own actor and critic modules (`A2CLoss`): under recurrent mode, on the
    stored sequences, they give what the collector computed."""
    spec = load_spec(SPECS / "a2c_gru_cartpole_novel.yaml", None, [*TINY[:2], *TINY[3:], *overrides])
    components = build(spec)
    with set_exploration_type(ExplorationType.RANDOM):
        data = next(iter(components.collector))
    agent = components.agent
    rows = sequences(data.clone(), agent.nets, spec.agent.net.seq_len)
    with torch.no_grad(), set_recurrent_mode(True):
        log_prob = agent.loss.actor_network.get_dist(rows.clone()).log_prob(rows["action"])
        value = agent.loss.critic_network(rows.clone())["state_value"]
    torch.testing.assert_close(log_prob, rows["action_log_prob"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(value, rows["state_value"], rtol=1e-5, atol=1e-5)
    before = [p.detach().clone() for p in agent.params]
    assert torch.isfinite(agent.update(data, data.numel())["loss"])
    assert all(not torch.equal(a, b) for a, b in zip(before, agent.params, strict=True))


def test_update_trains_on_sequences():
    components, data = collected("agent.net.seq_len=16")
    before = [p.detach().clone() for p in components.agent.params]
    metrics = components.agent.update(data, data.numel())
    assert torch.isfinite(metrics["loss"])
    assert all(not torch.equal(a, b) for a, b in zip(before, components.agent.params, strict=True))


def test_eval_env_carries_the_actors_hidden_state():
    components, _ = collected()
    td = components.eval_env.reset()
    assert "actor_state_h" in td and "critic_state_h" not in td
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        td, _ = components.eval_env.step_and_maybe_reset(components.actor(td))
    assert td["next", "actor_state_h"].abs().sum() > 0


@pytest.mark.parametrize(("overrides", "field", "fragment"), [
    (["agent.net.type=MLPNet"], "agent.net.fc_hid_layers",
     "not used by MLPNet (RecurrentNet, StatelessRecurrentNet only)"),
    (["agent.net.cell_type=RNN"], "agent.net.cell_type", "allowed: LSTM, GRU"),
    (["agent.net.rnn_hidden_size=0"], "agent.net.rnn_hidden_size", "out of range"),
    (["env.obs_mask=[1, 2, 0, 0]"], "env.obs_mask[1]", "allowed: [0, 1]"),
])
def test_bad_recurrent_fields_are_one_line_spec_errors(overrides, field, fragment):
    with pytest.raises(SpecError) as info:
        load_spec(SPEC, None, overrides)
    assert info.value.where == field and fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("overrides", "field", "fragment"), [
    (["agent.net.seq_len=24"], "agent.net.seq_len", "does not divide time_horizon 64"),
    (["agent.net.seq_len=64", "agent.algorithm.minibatch_size=96"], "agent.algorithm.minibatch_size",
     "not a multiple"),
    (["env.obs_mask=[1, 0, 1]"], "env.obs_mask", "has 3 flags; CartPole-v1 observations have 4"),
    (["env.obs_mask=[0, 0, 0, 0]"], "env.obs_mask", "keeps no component"),
])
def test_recurrent_settings_that_do_not_fit_fail_at_build(overrides, field, fragment):
    with pytest.raises(SpecError) as info:
        build(load_spec(SPEC, None, overrides))
    assert info.value.where == field and fragment in str(info.value)


def test_recurrent_fields_are_documented():
    docs = {row[0]: row[2] for row in field_docs()}
    for key in ("cell_type", "fc_hid_layers", "rnn_hidden_size", "rnn_num_layers", "seq_len"):
        assert docs[f"agent.net.{key}"]
    assert "velocities" in docs["env.obs_mask"]


# ------------------------------------------------------------------------ StatelessRecurrentNet (SLM-Lab's)
STATELESS = SPECS / "reinforce_cartpole.yaml"
STATELESS_NET = ["agent.net.type=StatelessRecurrentNet", "agent.net.cell_type=GRU", "agent.net.seq_len=4",
                 "agent.net.fc_hid_layers=[8]", "agent.net.rnn_hidden_size=6", "agent.net.hid_layers=[]"]


@pytest.mark.parametrize("overrides", [[], ["agent.net.cell_type=LSTM", "agent.net.rnn_num_layers=2"],
                                       ["agent.net.fc_hid_layers=[]"]])
def test_stateless_recurrent_net_runs_its_rnn_over_the_repeated_observation_from_zeros(overrides):
    """SLM-Lab's RecurrentNet.forward: x.unsqueeze(1).repeat(1, seq_len, 1) through fc, RNN from zeros, h_n[-1]."""
    actor = build(load_spec(STATELESS, None, ["env.num_envs=2", *STATELESS_NET, *overrides])).actor
    torso, head = actor.module[0].module[0], actor.module[0].module[1]
    obs = torch.randn(5, 3, 4)  # [batch, time, obs]: every step alone, no state between them
    repeated = torso.fc(obs.reshape(-1, 4)).unsqueeze(1).repeat(1, 4, 1)  # SLM-Lab's x.unsqueeze(1).repeat
    hidden = torso.rnn(repeated)[1]  # torch's own RNN from a zero state
    features = (hidden[0] if isinstance(torso.rnn, torch.nn.LSTM) else hidden)[-1].reshape(5, 3, -1)
    assert torch.allclose(torso(obs), features, atol=1e-6)
    assert torch.allclose(torso(obs[:, -1]), features[:, -1], atol=1e-6)  # the same step alone: the same output
    assert torch.allclose(torch.vmap(torso)(obs), features, atol=1e-6)  # TorchRL's estimators vmap the critic
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.in_features for m in linears] == [6]  # SLM-Lab's tail: one Linear on the hidden state


def test_stateless_recurrent_net_initialises_as_slm_lab():
    """init_fn with the gain on the fc layers and a GRU's weights; an LSTM keeps torch's init (SLM-Lab's init_params
    matches GRU by name only)."""
    orthogonal = ["agent.net.init_fn=orthogonal", "agent.net.init_gain=2.0"]
    gru = build(load_spec(STATELESS, None, ["env.num_envs=2", *STATELESS_NET, *orthogonal])).actor
    rnn = gru.module[0].module[0].rnn
    assert torch.allclose(torch.linalg.svdvals(rnn.weight_hh_l0), torch.full((6,), 2.0), atol=1e-5)
    assert not rnn.bias_ih_l0.any() and not rnn.bias_hh_l0.any()
    lstm = build(load_spec(STATELESS, None, ["env.num_envs=2", *STATELESS_NET, *orthogonal,
                                             "agent.net.cell_type=LSTM"])).actor.module[0].module[0].rnn
    assert lstm.bias_ih_l0.abs().max() > 0  # torch's uniform init, untouched


@pytest.mark.parametrize(("spec_file", "overrides"), [
    (SPECS / "ppo_cartpole.yaml", ["agent.net.shared=true"]), (SPECS / "dqn_cartpole.yaml", []),
    (SPECS / "a2c_gae_cartpole.yaml", []), (SPECS / "sarsa_cartpole.yaml", [])])
def test_stateless_recurrent_net_builds_wherever_mlp_net_does(spec_file, overrides):
    components = build(load_spec(spec_file, None, [*STATELESS_NET, *overrides]))
    torsos = [m for m in components.actor.modules() if type(m).__name__ == "StatelessRecurrentTorso"]
    assert torsos and torsos[0].seq_len == 4


def test_stateless_recurrent_net_needs_its_seq_len():
    with pytest.raises(SpecError, match="agent.net.seq_len"):
        load_spec(STATELESS, None, ["agent.net.type=StatelessRecurrentNet"])
