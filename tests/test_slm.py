"""SLM-Lab v5 spec files (zoo/slm.py): translation, all-errors-at-once, conversion round trip, dev runs of a corpus.

The corpus in tests/fixtures/slm/ is written in SLM-Lab's published format (slm_lab/spec/demo.json and
benchmark_arc/*.yaml): JSON and YAML, one spec and several named specs per file, anchor blocks, TorchArc nets.
"""

import json
import math

import pytest
import torch
import yaml
from tensordict import TensorDict

from tests.conftest import ROOT, only_run_dir, read_metrics, run_cli
from tools.convert_slm import convert
from zoo.algos.actor_critic import optimizer_step
from zoo.components import build
from zoo.memory import CombinedReplay, make_replay_buffer, replay_updates
from zoo.nets import build_mlp
from zoo.record import TIMING_COLUMNS
from zoo.schedules import Schedule
from zoo.slm import SlmSpecError, is_slm_spec, translate_slm
from zoo.spec import (
    MemorySpec,
    NetSpec,
    Spec,
    SpecError,
    build_dataclass,
    load_spec,
    read_spec_file,
    spec_names,
    spec_to_dict,
    validate,
)

FIXTURES = ROOT / "tests" / "fixtures" / "slm"
TEMPLATES = ["-s", "env=ALE/Pong-v5", "-s", "max_frame=256"]  # as SLM-Lab's `-s` fills its ${var} templates


def slm(algorithm: dict, net: dict | None = None, memory: dict | None = None, env: dict | None = None) -> dict:
    """A minimal SLM-Lab spec around the given sections."""
    return {"agent": {"name": algorithm["name"], "algorithm": algorithm, "memory": memory or {},
                      "net": net or {"type": "MLPNet", "hid_layers": [16]}},
            "env": env or {"name": "CartPole-v1", "max_frame": 1000}, "meta": {"distributed": False}}


def corpus() -> list[tuple[str, str | None]]:
    cases = []
    for path in sorted(FIXTURES.glob("*")):
        if path.name == "bad.json":
            continue
        cases += [(path.name, name) for name in spec_names(read_spec_file(path)) or [None]]
    return cases


# ------------------------------------------------------------------------------------------ recognition
def test_recognised_by_shape_and_anchor_blocks_are_not_spec_names():
    data = read_spec_file(FIXTURES / "a2c.yaml")
    assert is_slm_spec(data) and is_slm_spec(read_spec_file(FIXTURES / "sac_single.yaml"))
    assert spec_names(data) == ["a2c_gae_cartpole", "a2c_nstep_cartpole", "a2c_mc_cartpole"]
    assert not is_slm_spec(read_spec_file(ROOT / "specs" / "dqn_cartpole.yaml"))


def test_format_can_be_named(tmp_path):
    raw = slm({"name": "PPO", "time_horizon": 16, "minibatch_size": 16}, net={"type": "MLPNet", "shared": False})
    del raw["agent"]["name"]  # no agent.name: not recognised by shape, but --format slm reads it
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(raw))
    assert load_spec(path, fmt="slm").agent.algorithm.minibatch_size == 16


# ----------------------------------------------------------------------------------------- semantics
def test_dqn_is_translated_to_the_double_dqn_target_it_computes():
    raw, notes = translate_slm(slm({"name": "DQN", "explore_var_spec": {"name": "no_decay", "start_val": 0.1}}),
                               "f")
    assert raw["agent"]["algorithm"]["name"] == "DoubleDQN"
    assert any("Double-DQN target" in note for note in notes)
    raw, _ = translate_slm(slm({"name": "VanillaDQN", "explore_var_spec": {"name": "no_decay", "start_val": 0.1},
                                "training_iter": 2, "training_batch_iter": 3}), "f")
    algo = raw["agent"]["algorithm"]
    assert algo["name"] == "VanillaDQN" and algo["training_start_step"] == 32
    assert (algo["training_iter"], algo["training_batch_iter"]) == (2, 3)


@pytest.mark.parametrize(("returns", "expected"), [
    ({"lam": 0.9}, {"lam": 0.9}),
    ({"lam": None, "num_step_returns": 5}, {"lam": None, "num_step_returns": 5}),
    ({"lam": None, "num_step_returns": None}, {"lam": 1.0}),
])
def test_actor_critic_returns(returns, expected):
    raw, _ = translate_slm(slm({"name": "ActorCritic", **returns}), "f")
    algo = raw["agent"]["algorithm"]
    assert algo["name"] == "A2C"
    assert {k: algo.get(k) for k in expected} == expected
    assert algo["val_loss_coef"] == 1.0  # SLM-Lab's default, not zoo's 0.5
    assert algo["entropy_coef_spec"]["start_val"] == 0.0  # absent in SLM-Lab: no entropy bonus


def test_slm_defaults_are_filled_where_zoo_differs():
    ppo, _ = translate_slm(slm({"name": "PPO"}), "f")
    assert ppo["agent"]["algorithm"]["minibatch_size"] == 4 and ppo["agent"]["algorithm"]["val_loss_coef"] == 1.0
    reinforce, _ = translate_slm(slm({"name": "Reinforce", "training_frequency": 64}), "f")
    assert reinforce["agent"]["algorithm"]["center_return"] is False
    assert reinforce["agent"]["algorithm"]["time_horizon"] == 64
    assert reinforce["agent"]["algorithm"]["episodic"] is False  # OnPolicyBatchReplay: each batch alone
    episodic, _ = translate_slm(slm({"name": "Reinforce", "training_frequency": 1}, memory={"name": "OnPolicyReplay"}),
                                "f")
    assert "episodic" not in episodic["agent"]["algorithm"]  # OnPolicyReplay: whole episodes, zoo's default
    per, _ = translate_slm(slm({"name": "DoubleDQN", "explore_var_spec": {"name": "no_decay", "start_val": 0.1}},
                               memory={"name": "PrioritizedReplay", "alpha": 0.6, "epsilon": 1e-4}), "f")
    assert per["agent"]["memory"] == {"name": "PrioritizedReplay", "alpha": 0.6, "epsilon": 1e-4, "beta": 0.0}


@pytest.mark.parametrize(("schedule", "expected", "value"), [
    ({"name": "linear_decay", "start_val": 0.001, "end_val": 0.0, "start_step": 0, "end_step": 200000},
     {"name": "no_decay", "start_val": 0.001}, 0.001),  # `if not end_val: end_val = start_val`: constant
    ({"name": "linear_decay", "start_val": 0.01, "start_step": 0, "end_step": 100},
     {"name": "no_decay", "start_val": 0.01}, 0.01),
    ({"name": "no_decay", "start_val": 0.01, "end_val": 0.001}, {"name": "no_decay", "start_val": 0.001}, 0.001),
    ({"name": "linear_decay", "start_val": 0.01, "end_val": 0.001, "start_step": 0, "end_step": 200000},
     {"name": "linear_decay", "start_val": 0.01, "end_val": 0.001, "start_step": 0, "end_step": 200000}, 0.0055),
])
def test_schedules_as_slm_lab_var_scheduler_reads_them(schedule, expected, value):
    """SLM-Lab's VarScheduler replaces a falsy end_val by start_val, and its no_decay returns end_val."""
    raw, notes = translate_slm(slm({"name": "Reinforce", "entropy_coef_spec": schedule}), "f")
    assert raw["agent"]["algorithm"]["entropy_coef_spec"] == expected
    assert any("end_val" in note for note in notes) == (expected != schedule)
    spec = build_dataclass(Spec, raw, "")
    assert Schedule(spec.agent.algorithm.entropy_coef_spec)(100_000) == pytest.approx(value)


def test_advantage_normalisation_as_slm_lab_does_it():
    """SLM-Lab's REINFORCE and ActorCritic standardize every batch; its PPO every minibatch, or by percentiles."""
    for name in ("Reinforce", "ActorCritic", "PPO"):
        raw, _ = translate_slm(slm({"name": name}), "f")
        assert raw["agent"]["algorithm"]["normalize_advantage"] is True
    raw, notes = translate_slm(slm({"name": "PPO", "normalize_advantages": "percentile", "symlog": True,
                                    "normalize_v_targets": True, "action_pdtype": "Beta"}), "f")
    algo = raw["agent"]["algorithm"]
    assert algo["advantage_normalizer"] == "percentile" and algo["symlog"] and algo["normalize_v_targets"]
    assert algo["action_pdtype"] == "Beta" and any("percentile" in note for note in notes)


def test_a_one_transition_batch_is_not_standardized_as_slm_lab():
    """SLM-Lab's policy loss standardizes only batches of more than one transition (`if len(advs) > 1`)."""
    for algorithm in ({"name": "ActorCritic", "lam": 0.95, "training_frequency": 1},
                      {"name": "Reinforce", "training_frequency": 1}):
        raw, notes = translate_slm(slm(algorithm), "f")
        assert raw["agent"]["algorithm"]["normalize_advantage"] is False
        assert any("one transition" in note for note in notes)
        validate(build_dataclass(Spec, raw, ""), raw=raw)  # zoo refuses to standardize one transition
    raw, _ = translate_slm(slm({"name": "Reinforce", "training_frequency": 1}, env={
        "name": "CartPole-v1", "max_frame": 1000, "num_envs": 2}), "f")
    assert raw["agent"]["algorithm"]["normalize_advantage"] is True  # two envs: two transitions


def test_sac_temperature_as_slm_lab_tunes_it():
    sac = {"name": "SoftActorCritic", "action_pdtype": "Categorical"}
    algo = translate_slm(slm(sac), "f")[0]["agent"]["algorithm"]
    assert (algo["log_alpha_min"], algo["log_alpha_max"]) == (-5.0, 2.0)  # SLM-Lab always clamps
    assert algo["entropy_anneal"] == {"start_ratio": 0.6, "end_ratio": 0.6, "frames": 0}  # its discrete target
    assert algo["policy_delay"] == 1 and algo["training_start_step"] == 1000
    assert algo["twin_q"] == "mean"  # its discrete target and actor average the twin critics
    fixed = translate_slm(slm({**sac, "fixed_alpha": 0.02, "alpha_anneal_frames": 1e4}), "f")[0]["agent"]["algorithm"]
    assert fixed["fixed_alpha"] and fixed["alpha_init"] == 0.02 and fixed["alpha_anneal_frames"] == 10000
    assert "log_alpha_min" not in fixed and "entropy_anneal" not in fixed
    crossq = translate_slm(slm({"name": "CrossQ", "action_pdtype": "Categorical", "log_alpha_max": 0.5}), "f")
    algo = crossq[0]["agent"]["algorithm"]  # CrossQ inherits SAC's defaults; CartPole's 2 actions read from the env
    assert algo["log_alpha_max"] == 0.5 and algo["policy_delay"] == 1
    assert algo["target_entropy"] == pytest.approx(0.6 * math.log(2))
    spec = build_dataclass(Spec, crossq[0], "")
    validate(spec)
    agent = build(spec, seed=0).agent
    agent.loss.log_alpha.data.fill_(3.0)
    batch = TensorDict({"observation": torch.zeros(8, 4), "action": torch.zeros(8, dtype=torch.long),
                        ("next", "observation"): torch.zeros(8, 4), ("next", "reward"): torch.zeros(8, 1),
                        ("next", "terminated"): torch.zeros(8, 1, dtype=torch.bool)}, [8])
    agent.gradient_step(batch)  # the first step trains the temperature, then clamps it
    assert agent.loss.log_alpha.item() == 0.5
    continuous = translate_slm(slm({"name": "SoftActorCritic", "entropy_anneal": {"start_ratio": 0.3}},
                                   env={"name": "Pendulum-v1", "max_frame": 1000}), "f")[0]["agent"]["algorithm"]
    assert "entropy_anneal" not in continuous and "target_entropy" not in continuous and "twin_q" not in continuous


def test_random_and_self_imitation_algorithms():
    raw, _ = translate_slm(slm({"name": "Random"}, net={}, memory={"name": "OnPolicyReplay"}), "f")
    assert raw["agent"]["algorithm"] == {"name": "Random"} and "net" not in raw["agent"]
    sil = slm({"name": "PPOSIL", "gamma": 0.99, "sil_policy_loss_coef": 0.5, "sil_val_loss_coef": 0.02,
               "training_iter": 4, "training_batch_iter": 2, "time_horizon": 32, "minibatch_size": 32},
              memory={"name": "OnPolicyBatchReplay", "sil_replay_name": "Replay", "batch_size": 64,
                      "max_size": 1000})
    raw, notes = translate_slm(sil, "f")
    algorithm, memory = raw["agent"]["algorithm"], raw["agent"]["memory"]
    assert algorithm["name"] == "PPOSIL" and algorithm["time_horizon"] == 32  # PPO's fields, translated as PPO's
    assert {k: algorithm[k] for k in ("sil_policy_loss_coef", "sil_val_loss_coef", "training_iter",
                                      "training_batch_iter")} == {"sil_policy_loss_coef": 0.5,
                                                                  "sil_val_loss_coef": 0.02, "training_iter": 4,
                                                                  "training_batch_iter": 2}
    assert memory == {"name": "OnPolicyBatchReplay", "sil_replay_name": "Replay", "batch_size": 64, "max_size": 1000}
    assert any("Monte-Carlo returns" in note for note in notes)
    validate(build_dataclass(Spec, raw, ""))  # zoo accepts it
    a2c_sil = translate_slm(slm({"name": "SIL", "gamma": 0.99}, memory={"name": "OnPolicyReplay"}), "f")[0]
    assert a2c_sil["agent"]["algorithm"]["name"] == "SIL"


def test_lunar_lander_continuous_runs_on_the_continuous_action_space():
    spec = load_spec(FIXTURES / "demo_ppo.json", "ppo_lunar_continuous")
    assert spec.env.kwargs == {"continuous": True}
    assert spec.env.clip_obs == 10.0  # SLM-Lab's clip with normalize_obs
    components = build(spec, seed=0)
    assert components.env.action_spec.shape[-1] == 2 and components.env.action_spec.dtype == torch.float32


def test_torcharc_arcs_become_zoo_nets():
    spec = load_spec(FIXTURES / "atari.yaml", "ppo_arc_atari", TEMPLATES[1::2])
    net = spec.agent.net
    assert net.type == "ConvNet" and net.conv_hid_layers == [[16, 8, 4, 0, 1], [32, 4, 2, 0, 1]]
    assert net.hid_layers == [64] and net.hid_layers_activation == "relu" and net.init_fn == "orthogonal"
    assert net.shared and net.lr_scheduler_spec.name == "linear_to_zero"
    crossq = load_spec(FIXTURES / "crossq.yaml", "crossq_pendulum")
    assert crossq.agent.net.hid_layers == [32, 32] and crossq.agent.algorithm.brn_warmup_steps == 500
    assert crossq.agent.net.critic_optim_spec.lr == 1e-3 and crossq.agent.net.optim_spec.lr == 3e-4



def test_init_gains_as_slm_lab_sets_them():
    """init_layers: the activation's gain on every layer; init_tails: the stds on a shared net's heads only."""
    net = {"type": "MLPNet", "hid_layers": [16], "hid_layers_activation": "tanh", "init_fn": "orthogonal_",
           "actor_init_std": 0.01, "critic_init_std": 1.0}
    separate, notes = translate_slm(slm({"name": "ActorCritic"}, net={**net, "shared": False}), "f")
    assert separate["agent"]["net"]["init_gain"] == separate["agent"]["net"]["actor_init_gain"] == pytest.approx(5 / 3)
    assert "critic_init_gain" not in separate["agent"]["net"] and any("unused for separate nets" in n for n in notes)
    shared, _ = translate_slm(slm({"name": "ActorCritic"}, net={**net, "shared": True}), "f")
    assert (shared["agent"]["net"]["actor_init_gain"], shared["agent"]["net"]["critic_init_gain"]) == (0.01, 1.0)
    dqn, _ = translate_slm(slm({"name": "DoubleDQN", "explore_var_spec": {"name": "no_decay", "start_val": 0.1}},
                               net={"type": "MLPNet", "hid_layers": [16], "init_fn": "xavier_uniform_"}), "f")
    assert dqn["agent"]["net"]["init_gain"] == pytest.approx(2 ** 0.5)  # SLM-Lab's default activation: relu
    assert "actor_init_gain" not in dqn["agent"]["net"]

def test_env_kwargs_atari_life_loss_and_meta():
    spec = load_spec(FIXTURES / "atari.yaml", "ppo_arc_atari", TEMPLATES[1::2])
    assert spec.env.name == "ALE/Pong-v5" and spec.env.max_frame == 256 and spec.env.episode_life
    assert spec.env.kwargs == {"repeat_action_probability": 0.0}
    dqn = load_spec(FIXTURES / "dqn.yaml", "ddqn_per_dueling_acrobot")
    assert dqn.meta.search_scheduler == "successive_halving" and dqn.meta.grace_period == 2
    assert dqn.agent.net.update_type == "polyak" and dqn.agent.net.init_fn == "xavier_uniform"


@pytest.mark.parametrize("mode", ["synced", "shared"])
def test_hogwild_sessions_become_asynchronous_workers(mode):
    """SLM-Lab's a3c specs: meta.max_session Hogwild sessions of num_envs envs each, GlobalAdam -> one session,
    that many multi_async workers, Adam."""
    raw = slm({"name": "ActorCritic", "lam": 0.95, "training_frequency": 32},
              net={"type": "MLPNet", "hid_layers": [16], "actor_optim_spec": {"name": "GlobalAdam", "lr": 7e-4},
                   "critic_optim_spec": {"name": "GlobalAdam", "lr": 7e-4}},
              memory={"name": "OnPolicyBatchReplay"}, env={"name": "CartPole-v1", "num_envs": 4, "max_frame": 1000})
    raw["meta"] = {"distributed": mode, "max_session": 4}
    out, notes = translate_slm(raw, "a3c.json")
    assert out["env"] | {"max_frame": 0} == {"name": "CartPole-v1", "num_envs": 16, "max_frame": 0,
                                            "collector": "multi_async", "num_workers": 4}
    assert out["meta"]["distributed"] == mode and "max_session" not in out["meta"]
    assert out["agent"]["net"]["actor_optim_spec"]["name"] == "Adam"
    assert any("meta.distributed" in n and "4 multi_async workers" in n for n in notes)
    validate(build_dataclass(Spec, out, ""))
    raw["meta"]["max_session"] = 1
    with pytest.raises(SlmSpecError, match="meta.distributed"):
        translate_slm(raw, "a3c.json")


def test_search_block_keeps_slm_suffixes():
    spec = load_spec(FIXTURES / "a2c.yaml", "a2c_gae_cartpole")
    assert spec.search == {"agent.algorithm.gamma__uniform": [0.95, 0.999],
                           "agent.algorithm.lam__uniform": [0.9, 0.99],
                           "agent.net.actor_optim_spec.lr__loguniform": [1e-4, 1e-3]}


def test_every_untranslatable_field_is_reported_at_once():
    with pytest.raises(SlmSpecError) as err:
        translate_slm(read_spec_file(FIXTURES / "bad.json")["bad_dqn"], "bad.json")
    fields = [line.split(": ")[1] for line in err.value.lines]
    assert fields == ["env.clip_obs", "agent.algorithm.action_policy", "agent.algorithm.lr_decay",
                      "agent.memory.name", "agent.net.type", "agent.net.hid_layers_activation", "agent.net.init_fn",
                      "meta.distributed", "search.agent.algorithm.gamma__grid_search"]


def test_bad_file_exits_2_with_one_line_per_field_and_no_traceback(tmp_path):
    result = run_cli(str(FIXTURES / "bad.json"), "bad_dqn", "dev", data_dir=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 9 and all(line.startswith(f"error: {FIXTURES / 'bad.json'}: ") for line in lines)
    assert "Traceback" not in result.stderr
    refused = run_cli(str(FIXTURES / "bad.json"), "sil_cartpole", "dev", data_dir=tmp_path)
    assert refused.returncode == 2 and "sil_replay_name: 'OnPolicyReplay' has no zoo equivalent" in refused.stderr


def test_dry_run_prints_the_zoo_spec_and_the_differences(tmp_path):
    result = run_cli(str(FIXTURES / "dqn.yaml"), "dqn_cer_cartpole", "--dry-run", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "name: DoubleDQN" in result.stdout and "use_cer: true" in result.stdout
    assert "Double-DQN target" in result.stdout and "TorchArc arc -> zoo MLPNet" in result.stdout


# ---------------------------------------------------------------------------------------------- CER
def test_combined_replay_puts_the_newest_transitions_in_the_next_batch():
    buffer = make_replay_buffer(MemorySpec(max_size=100, batch_size=4, use_cer=True))
    assert isinstance(buffer, CombinedReplay)
    buffer.extend(TensorDict({"x": torch.arange(10.0)}, batch_size=[10]))
    assert buffer.sample(4)["x"].tolist() == [0.0, 1.0, 2.0, 3.0]  # oldest unseen first, one batch's worth
    buffer.sample(4)
    buffer.sample(4)
    buffer.extend(TensorDict({"x": torch.tensor([42.0])}, batch_size=[1]))
    batch = buffer.sample(4)
    assert batch["x"][-1] == 42.0 and batch["index"][-1] == 10


def test_training_batch_iter_steps_several_times_on_each_batch():
    """SLM-Lab's DQN draws training_iter batches and takes training_batch_iter gradient steps on each."""
    for name in ("Replay", "PrioritizedReplay"):
        buffer = make_replay_buffer(MemorySpec(name=name, max_size=100, batch_size=4))
        buffer.extend(TensorDict({"x": torch.arange(50.0)}, batch_size=[50]))
        seen = []

        def step(batch, seen=seen):
            seen.append(batch["index"].tolist())
            return {}, torch.ones(4)

        assert len(replay_updates(buffer, 4, 2, None, step, reuse=3)) == 6
        assert seen[0] == seen[1] == seen[2] and seen[3] == seen[4] == seen[5]


def test_clip_grad_val_bounds_each_net_as_slm_lab():
    raw, _ = translate_slm(slm({"name": "PPO"}, net={"type": "MLPNet", "hid_layers": [8], "clip_grad_val": 0.5}), "f")
    assert raw["agent"]["net"]["clip_grad_per_net"] is True
    actor, critic = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    optimizers = {"actor": torch.optim.SGD(actor.parameters(), lr=0.0),
                  "critic": torch.optim.SGD(critic.parameters(), lr=0.0)}
    x = torch.ones(4, 3)
    optimizer_step(optimizers, 100 * actor(x).sum() + critic(x).sum(), [], 0.5, per_net=True)
    for net in (actor, critic):
        norm = torch.cat([p.grad.flatten() for p in net.parameters()]).norm()
        assert norm.item() == pytest.approx(0.5)
    with pytest.raises(SpecError, match="clip_grad_per_net"):
        load_spec(FIXTURES / "dqn.yaml", "ddqn_per_dueling_acrobot", ["agent.net.clip_grad_per_net=true"])


# ------------------------------------------------------------------------------------------ conversion
def test_conversion_round_trip_gives_the_same_spec(tmp_path):
    for path, name in corpus():
        variables = {"env": "ALE/Pong-v5", "max_frame": 256}
        written = convert(FIXTURES / path, [name] if name else [], tmp_path, variables)
        converted = load_spec(written[0])
        direct = load_spec(FIXTURES / path, name, {k: v for k, v in variables.items()})
        assert spec_to_dict(converted) == spec_to_dict(direct), (path, name)
        assert yaml.safe_load(written[0].read_text())["agent"]["algorithm"]["name"] == direct.agent.algorithm.name


def metrics(tmp_path, *args):
    data_dir = tmp_path / str(len(list(tmp_path.iterdir())))
    result = run_cli(*args, "dev", "--seed", "3", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in read_metrics(only_run_dir(data_dir))]


def test_converted_spec_trains_identically(tmp_path):
    (converted,) = convert(FIXTURES / "dqn.yaml", ["dqn_cer_cartpole"], tmp_path / "specs", {})
    runs = tmp_path / "runs"
    runs.mkdir()
    direct = metrics(runs, str(FIXTURES / "dqn.yaml"), "dqn_cer_cartpole")
    assert direct and any(row["loss/main"] for row in direct)
    assert metrics(runs, str(converted)) == direct


# ---------------------------------------------------------------------------------------- corpus runs
@pytest.mark.smoke
@pytest.mark.parametrize(("spec_file", "spec_name"), corpus())
def test_slm_spec_runs_in_dev_mode(tmp_path, spec_file, spec_name):
    args = [str(FIXTURES / spec_file), *([spec_name] if spec_name else []), "dev", *TEMPLATES]
    result = run_cli(*args, data_dir=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_metrics(only_run_dir(tmp_path))
    assert rows and rows[-1]["eval/return"] != ""


# ---------------------------------------------------------------------------- zoo fields SLM-Lab needed
def test_layer_norm_and_critic_widths(tmp_path):
    mlp = build_mlp(4, 2, NetSpec(hid_layers=[8, 8], layer_norm=True))
    assert [type(m).__name__ for m in mlp] == ["Linear", "LayerNorm", "ReLU", "Linear", "LayerNorm", "ReLU",
                                              "Linear"]
    path = tmp_path / "crossq.yaml"
    path.write_text((FIXTURES / "crossq.yaml").read_text().replace("out_features: 32}\n        - LazyBatch",
                                                                   "out_features: 64}\n        - LazyBatch"))
    spec = load_spec(path, "crossq_pendulum")
    assert spec.agent.net.critic_hid_layers == [64, 64] and spec.agent.net.hid_layers == [32, 32]
    critic = build(spec, seed=0).loss.qvalue_network_params
    assert any(p.shape[-2:] == (64, 64) for p in critic.values(True, True))  # twin critics stacked
    td3 = tmp_path / "td3.yaml"
    td3.write_text("agent: {algorithm: {name: TD3}, net: {layer_norm: true}}\n"
                   "env: {name: Pendulum-v1, max_frame: 100}\n")
    with pytest.raises(SpecError, match="agent.net.layer_norm"):
        load_spec(td3)  # its fast loss reads the Linear layers


def test_recurrent_net_becomes_the_stateless_net_slm_lab_runs():
    """SLM-Lab v5's RecurrentNet repeats the current state seq_len times (no history): StatelessRecurrentNet, its heads
    on the hidden state (hid_layers unread, so not searched)."""
    net = {"type": "RecurrentNet", "shared": True, "cell_type": "GRU", "fc_hid_layers": [8], "hid_layers": [32],
           "hid_layers_activation": "tanh", "rnn_hidden_size": 16, "rnn_num_layers": 1, "seq_len": 4,
           "init_fn": "orthogonal_"}
    raw = slm({"name": "PPO", "time_horizon": 16, "minibatch_size": 16}, net=net,
              memory={"name": "OnPolicyBatchReplay"})
    raw["search"] = {"agent": {"net": {"hid_layers__choice": [[32], [64]], "rnn_hidden_size__choice": [16, 32]}}}
    out, notes = translate_slm(raw, "f")
    zoo_net = out["agent"]["net"]
    assert {k: zoo_net[k] for k in ("type", "cell_type", "fc_hid_layers", "rnn_hidden_size", "seq_len", "hid_layers")
            } == {"type": "StatelessRecurrentNet", "cell_type": "GRU", "fc_hid_layers": [8], "rnn_hidden_size": 16,
                  "seq_len": 4, "hid_layers": []}
    assert zoo_net["actor_init_gain"] == zoo_net["critic_init_gain"] == pytest.approx(5 / 3)  # no init_tails
    assert out["search"] == {"agent.net.rnn_hidden_size__choice": [16, 32]}
    assert any("not searched" in note for note in notes)
    spec = build_dataclass(Spec, out, "")
    validate(spec, raw=out)
    assert build(spec, seed=0).agent is not None
    with pytest.raises(SlmSpecError, match="bidirectional"):
        translate_slm(slm({"name": "PPO"}, net={**net, "bidirectional": True}), "f")


def test_search_over_activations_renames_each_choice():
    """SLM-Lab's activation names become zoo's value by value; a range over names or an unknown name is refused."""
    net = {"type": "MLPNet", "hid_layers": [16], "hid_layers_activation": "relu"}
    raw = slm({"name": "PPO", "time_horizon": 16, "minibatch_size": 16}, net=net,
              memory={"name": "OnPolicyBatchReplay"})
    raw["search"] = {"agent": {"net": {"hid_layers_activation__choice": ["relu", "lrelu", "linear"]}}}
    out, notes = translate_slm(raw, "f")
    assert out["search"] == {"agent.net.hid_layers_activation__choice": ["relu", "leaky_relu", "identity"]}
    validate(build_dataclass(Spec, out, ""))  # zoo's search accepts the renamed choice
    for bad, message in ((["relu", "swish"], "swish; allowed: relu"), (["relu"], "")):
        kind = "choice" if message else "uniform"
        raw["search"] = {"agent": {"net": {f"hid_layers_activation__{kind}": bad}}}
        with pytest.raises(SlmSpecError, match=message or "searchable as __choice") as err:
            translate_slm(raw, "f")
        assert len(err.value.lines) == 1 and "search.agent.net.hid_layers_activation" in err.value.lines[0]


def test_argmax_under_boltzmann_acts_greedily_as_slm_lab():
    """SLM-Lab's boltzmann divides the Q-values by tau, then its Argmax 'distribution' takes their argmax."""
    algorithm = {"name": "VanillaDQN", "action_pdtype": "Argmax", "action_policy": "boltzmann",
                 "explore_var_spec": {"name": "linear_decay", "start_val": 5.0, "end_val": 0.5, "start_step": 0,
                                      "end_step": 1000}}
    raw, notes = translate_slm(slm(algorithm, memory={"name": "Replay"}), "f")
    assert raw["agent"]["algorithm"]["action_policy"] == "epsilon_greedy"
    assert raw["agent"]["algorithm"]["explore_var_spec"] == {"name": "no_decay", "start_val": 0.0}
    assert any("acts greedily" in note for note in notes)


def test_keys_slm_lab_v5_does_not_read_are_noted_not_refused():
    """SLM-Lab v5 takes only its own keys from a spec: an older file's or another algorithm's keys have no effect
    there, so they are reported as unused; a key no SLM-Lab algorithm reads stays an error."""
    ppo = {"name": "PPO", "time_horizon": 16, "minibatch_size": 16, "training_frequency": 1,
           "sil_policy_loss_coef": 1.0}
    net = {"type": "MLPNet", "hid_layers": [16], "lr_decay_frequency": 5000}
    memory = {"name": "OnPolicyReplay", "sil_replay_name": "Replay"}
    raw, notes = translate_slm(slm(ppo, net=net, memory=memory), "f")
    assert "training_frequency" not in raw["agent"]["algorithm"] and "lr_decay_frequency" not in raw["agent"]["net"]
    unread = [note.split(":")[0] for note in notes if "no effect" in note]
    assert unread == ["agent.algorithm.sil_policy_loss_coef", "agent.algorithm.training_frequency",
                      "agent.net.lr_decay_frequency"]
    assert "agent.memory.sil_replay_name: not read by SLM-Lab v5's PPO memory (only SIL and PPOSIL read it)" in notes
    with pytest.raises(SlmSpecError, match="agent.algorithm.trainig_frequency: unknown SLM-Lab key"):
        translate_slm(slm({**ppo, "trainig_frequency": 1}, memory={"name": "OnPolicyReplay"}), "f")


def test_search_over_a_field_without_one_zoo_field_runs_each_trial_through_the_translation(tmp_path):
    """`lam` chooses between SLM-Lab's n-step and GAE returns: a search over it sets SLM-Lab's field and translates
    each trial again (`source.` overrides); a search over a field SLM-Lab ignores is dropped with a note."""
    a2c = {"name": "ActorCritic", "lam": None, "num_step_returns": 8, "training_frequency": 8, "gamma": 0.99}
    raw = slm(a2c, memory={"name": "OnPolicyBatchReplay"})
    raw["search"] = {"agent": {"algorithm": {"lam__uniform": [0.9, 1.0], "entropy_coef__uniform": [0.01, 0.1]}}}
    out, notes = translate_slm(raw, "f")
    assert out["search"] == {"source.agent.algorithm.lam__uniform": [0.9, 1.0]}
    assert any("not searched: agent.algorithm.entropy_coef" in note for note in notes)
    path = tmp_path / "a2c.json"
    path.write_text(json.dumps({"a2c_cartpole": raw}))
    nstep, gae = load_spec(path), load_spec(path, overrides={"source.agent.algorithm.lam": 0.95})
    assert nstep.agent.algorithm.num_step_returns == 8 and nstep.agent.algorithm.lam is None
    assert gae.agent.algorithm.lam == 0.95 and gae.agent.algorithm.num_step_returns is None
    zoo_file = ROOT / "specs" / "a2c_gae_cartpole.yaml"
    with pytest.raises(SpecError, match="this file is zoo's own format"):
        load_spec(zoo_file, overrides={"source.agent.algorithm.lam": 0.95})


def test_random_memory_zero_priority_epsilon_and_crossq_batch_norm():
    raw, notes = translate_slm(slm({"name": "Random"}, memory={"name": "Replay", "batch_size": 32}), "f")
    assert "memory" not in raw["agent"] and "agent.memory: unused by Random (as in SLM-Lab)" in notes
    per = {"name": "PrioritizedReplay", "alpha": 0.6, "epsilon": 0.0, "batch_size": 32, "max_size": 1000}
    raw, _ = translate_slm(slm({"name": "DoubleDQN", "explore_var_spec": None, "action_policy": "random"},
                               memory=per), "f")
    assert 0 < raw["agent"]["memory"]["epsilon"] <= 1e-8
    validate(build_dataclass(Spec, raw, ""))
    net = {"type": "MLPNet", "hid_layers": [16], "batch_norm": True}
    crossq = slm({"name": "CrossQ", "action_pdtype": "Categorical"}, net=net, memory={"name": "Replay"})
    assert any("batch-renormalize" in note for note in translate_slm(crossq, "f")[1])
    with pytest.raises(SlmSpecError, match="batch_norm"):
        translate_slm(slm({"name": "SoftActorCritic", "action_pdtype": "Categorical"}, net=net,
                          memory={"name": "Replay"}), "f")


def test_cross_entropy_memory_filters_reinforce_episodes():
    memory = {"name": "OnPolicyCrossEntropy", "cross_entropy": 0.8}
    raw, notes = translate_slm(slm({"name": "Reinforce", "training_frequency": 1}, memory=memory), "f")
    assert raw["agent"]["memory"] == {"name": "OnPolicyReplay"} and raw["agent"]["algorithm"]["cross_entropy"] == 0.8
    assert raw["agent"]["algorithm"].get("episodic", True)
    validate(build_dataclass(Spec, raw, ""))
    with pytest.raises(SlmSpecError, match="OnPolicyCrossEntropy' with A2C"):
        translate_slm(slm({"name": "ActorCritic", "lam": 0.95}, memory=memory), "f")
