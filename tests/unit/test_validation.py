"""What load_spec (and the build, where the env decides) rejects: every bad input is one SpecError naming its field.

Algorithms declare what they accept (`register_algorithm_spec(..., memories=, nets=, shared=, split_optims=,
compile=)`); fields the build would ignore are errors; sized fields are checked for range and shape.
"""

import dataclasses
import typing

import gymnasium as gym
import pytest
import torch
from torch import nn

import zoo
from tests.conftest import SPECS, run_cli
from tests.test_smoke import all_specs
from zoo.envs import make_env
from zoo.nets import ConvTorso
from zoo.spec import (
    ALGORITHM_SPECS,
    ALGORITHM_SUPPORT,
    EnvSpec,
    NetSpec,
    Spec,
    SpecError,
    load_spec,
    spec_to_dict,
)


def error_of(spec_file: str, *overrides: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(SPECS / spec_file, None, list(overrides))
    return info.value


@pytest.mark.parametrize(("spec_file", "overrides", "field", "fragment"), [
    # memories and nets each algorithm declares
    ("ppo_cartpole.yaml", ["agent.memory.name=PrioritizedReplay"], "agent.memory.name",
     "allowed: OnPolicyBatchReplay, OnPolicyReplay"),
    ("a2c_gae_cartpole.yaml", ["agent.memory.name=Replay"], "agent.memory.name", "A2C does not use 'Replay'"),
    ("reinforce_cartpole.yaml", ["agent.memory.name=PrioritizedReplay"], "agent.memory.name", "OnPolicyReplay"),
    ("sarsa_cartpole.yaml", ["agent.memory.name=Replay"], "agent.memory.name", "allowed: OnPolicyBatchReplay"),
    ("dqn_cartpole.yaml", ["agent.memory.name=OnPolicyBatchReplay"], "agent.memory.name",
     "allowed: Replay, PrioritizedReplay"),
    ("crossq_pendulum.yaml", ["agent.memory.name=PrioritizedReplay"], "agent.memory.name", "allowed: Replay"),
    ("sac_pendulum.yaml", ["agent.memory.name=OnPolicyReplay"], "agent.memory.name", "PrioritizedReplay"),
    ("td3_pendulum.yaml", ["agent.net.type=ConvNet"], "agent.net.type", "allowed: MLPNet"),
    ("crossq_pendulum.yaml", ["agent.net.type=DuelingMLPNet"], "agent.net.type", "allowed: MLPNet"),
    ("sac_pendulum.yaml", ["agent.net.type=DuelingMLPNet"], "agent.net.type", "allowed: MLPNet, ConvNet"),
    ("ppo_cartpole.yaml", ["agent.net.type=DuelingMLPNet"], "agent.net.type", "PPO does not build"),
    # shared trunks and their optimizers
    ("dqn_cartpole.yaml", ["agent.net.shared=true"], "agent.net.shared", "shared trunks: A2C, PPO"),
    ("reinforce_cartpole.yaml", ["agent.net.shared=true"], "agent.net.shared", "allowed: false"),
    ("a2c_gae_cartpole.yaml", ["agent.net.shared=true"], "agent.net.actor_optim_spec", "shared: true"),
    ("ppo_cartpole.yaml", ["agent.net.shared=true", "agent.net.critic_optim_spec={lr: 0.001}"],
     "agent.net.critic_optim_spec", "remove it or set shared: false"),
    ("dqn_cartpole.yaml", ["agent.net.actor_optim_spec={lr: 0.001}"], "agent.net.actor_optim_spec",
     "DQN trains with agent.net.optim_spec only"),
    ("reinforce_cartpole.yaml", ["agent.net.critic_optim_spec={lr: 0.001}"], "agent.net.critic_optim_spec",
     "Reinforce trains with agent.net.optim_spec only"),
    ("ppo_cartpole.yaml", ["agent.net.shared=true", "agent.net.hid_layers=[]"], "agent.net.hid_layers",
     "needs at least one hidden layer"),
    # meta.compile: only SAC and TD3 compile their update
    ("dqn_cartpole.yaml", ["meta.compile=true"], "meta.compile", "compiled updates: SoftActorCritic, TD3"),
    ("crossq_pendulum.yaml", ["meta.compile=true"], "meta.compile", "allowed: false"),
    ("ppo_cartpole.yaml", ["meta.compile=true"], "meta.compile", "PPO does not compile"),
    # memory fields and target updates nothing reads
    ("ppo_cartpole.yaml", ["agent.memory.batch_size=32"], "agent.memory.batch_size", "not used by OnPolicyBatchReplay"),
    ("dqn_cartpole.yaml", ["agent.memory.alpha=0.5"], "agent.memory.alpha", "not used by Replay"),
    ("ppo_cartpole.yaml", ["agent.net.update_type=polyak"], "agent.net.update_type", "PPO (no target network)"),
    ("crossq_pendulum.yaml", ["agent.net.polyak_coef=0.1"], "agent.net.polyak_coef", "no target network"),
    ("sac_pendulum.yaml", ["agent.net.update_type=replace"], "agent.net.update_type", "allowed: polyak"),
    ("td3_pendulum.yaml", ["agent.net.update_frequency=100"], "agent.net.update_frequency",
     "not used with agent.net.update_type: polyak"),
    ("dqn_cartpole.yaml", ["agent.net.polyak_coef=0.1"], "agent.net.polyak_coef", "update_type: replace"),
    # env fields that only one kind of env applies
    ("dqn_cartpole.yaml", ["env.clip_reward=false"], "env.clip_reward", "Atari (ALE/<Game>-v5) envs only"),
    ("ppo_cartpole.yaml", ["env.episode_life=false"], "env.episode_life", "not CartPole-v1"),
    ("ppo_pong.yaml", ["env.normalize_obs=true"], "env.normalize_obs", "not applied to Atari envs"),
    ("dqn_pong.yaml", ["env.normalize_reward=true"], "env.normalize_reward", "not applied to Atari envs"),
    ("ppo_cartpole.yaml", ["env.clip_obs=5"], "env.clip_obs", "needs env.normalize_obs: true"),
    ("ppo_cartpole.yaml", ["env.frame_stack=4"], "env.frame_stack", "VizDoom (Vizdoom<Scenario>-v1) envs only"),
    ("dqn_cartpole.yaml", ["env.frame_skip=4"], "env.frame_skip", "VizDoom (Vizdoom<Scenario>-v1) envs only"),
    ("ppo_pong.yaml", ["env.screen_size=[64, 64]"], "env.screen_size", "not ALE/Pong-v5"),
    ("ppo_vizdoom_basic.yaml", ["env.screen_size=[64]"], "env.screen_size", "expected 2 values"),
    ("ppo_vizdoom_basic.yaml", ["env.frame_stack=0"], "env.frame_stack", "allowed: [1, inf]"),
    ("ppo_pong.yaml", ["env.reward_scale=0.1"], "env.reward_scale", "not applied to Atari envs"),
    ("ppo_cartpole.yaml", ["env.reward_scale=0.1", "env.normalize_reward=true"], "env.reward_scale",
     "unused with env.normalize_reward: true"),
    ("ppo_cartpole.yaml", ["env.reward_scale=0"], "env.reward_scale", "out of range"),
    # sized fields: range of every element, shape of nested lists
    ("dqn_cartpole.yaml", ["agent.net.hid_layers=[0]"], "agent.net.hid_layers[0]", "allowed: [1, inf]"),
    ("sac_pendulum.yaml", ["agent.net.hid_layers=[64, -4]"], "agent.net.hid_layers[1]", "-4 is out of range"),
    ("ppo_pong.yaml", ["agent.net.conv_hid_layers=[[32, 8]]"], "agent.net.conv_hid_layers[0]",
     "expected 3 or 5 values ([out_channels, kernel, stride] or SLM-Lab's"),
    ("ppo_pong.yaml", ["agent.net.conv_hid_layers=[[32, 8, 4, 0]]"], "agent.net.conv_hid_layers[0]", "got 4"),
    ("ppo_pong.yaml", ["agent.net.conv_hid_layers=[[32, 8, 4], [64, 4, 0]]"], "agent.net.conv_hid_layers[1][2]",
     "0 (stride) is out of range; allowed: [1, inf]"),
    ("ppo_pong.yaml", ["agent.net.conv_hid_layers=[[32, 8, 4, -1, 1]]"], "agent.net.conv_hid_layers[0][3]",
     "(padding) is out of range; allowed: [0, inf]"),
    ("ppo_pong.yaml", ["agent.net.conv_hid_layers=[[0, 8, 4]]"], "agent.net.conv_hid_layers[0][0]", "out_channels"),
    ("ppo_pong.yaml", ["agent.net.conv_hid_layers=[[32, 8, 4, 0, 0]]"], "agent.net.conv_hid_layers[0][4]",
     "dilation"),
    ("ppo_pong.yaml", ["agent.net.conv_hid_layers=[32, 8, 4]"], "agent.net.conv_hid_layers[0]", "expected a list"),
])
def test_bad_input_is_one_spec_error_naming_the_field(spec_file, overrides, field, fragment):
    err = error_of(spec_file, *overrides)
    assert err.where == field, str(err)
    assert fragment in str(err), str(err)
    assert err.file == str(SPECS / spec_file) and "\n" not in str(err)


@pytest.mark.parametrize(("spec_file", "spec_name"), all_specs())
def test_every_spec_file_loads_and_builds(spec_file, spec_name, tmp_path):
    """A dry run in-process (tests/test_smoke.py trains each one for a few hundred frames through the CLI); the
    resolved spec a run directory keeps (spec.yaml, read on resume) loads again."""
    import yaml

    spec = load_spec(SPECS / spec_file, spec_name, ["meta.eval_episodes=1"])
    assert spec.agent.memory.name in ALGORITHM_SUPPORT[spec.agent.algorithm.name].memories
    resolved = tmp_path / "spec.yaml"
    resolved.write_text(yaml.safe_dump(spec_to_dict(spec)))
    assert spec_to_dict(load_spec(resolved)) == spec_to_dict(spec)
    components = zoo.build(spec, seed=0)
    assert "policy" in components.describe()
    components.env.close()
    components.eval_env.close()


def test_every_algorithm_declares_what_it_accepts():
    assert set(ALGORITHM_SUPPORT) == set(ALGORITHM_SPECS) == set(zoo.algos.ALGORITHMS)
    on_policy = {"PPO", "A2C", "Reinforce", "SARSA", "Random", "SIL", "PPOSIL"}  # SIL's replay: sil_replay_name
    for name, support in ALGORITHM_SUPPORT.items():
        replay = {"Replay", "PrioritizedReplay"} & set(support.memories)
        assert bool(replay) == (name not in on_policy), name
    assert {n for n, s in ALGORITHM_SUPPORT.items() if s.compile} == {"SoftActorCritic", "TD3"}
    assert {n for n, s in ALGORITHM_SUPPORT.items() if s.shared} == {"PPO", "A2C", "SIL", "PPOSIL"}
    assert {n for n, s in ALGORITHM_SUPPORT.items() if s.sil_replay} == {"SIL", "PPOSIL"}


def test_omitted_memory_is_the_algorithms_default_and_round_trips(tmp_path):
    import yaml

    assert load_spec(SPECS / "ppo_cartpole.yaml").agent.memory.name == "OnPolicyBatchReplay"
    spec = load_spec(SPECS / "sac_pendulum.yaml", None, ["agent.memory.name=PrioritizedReplay"])
    assert spec.agent.memory.name == "PrioritizedReplay"
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(spec_to_dict(load_spec(SPECS / "reinforce_cartpole.yaml"))))
    assert load_spec(path).agent.memory.name == "OnPolicyBatchReplay"


def test_omitted_target_update_is_the_algorithms_default():
    spec = load_spec(SPECS / "sac_pendulum.yaml", None, ["agent.net={type: MLPNet, hid_layers: [32]}"])
    assert spec.agent.net.update_type == "polyak"
    assert load_spec(SPECS / "ddqn_per_cartpole.yaml", None, ["agent.memory.alpha=0.5"]).agent.memory.alpha == 0.5


def test_default_atari_flags_and_shared_trunks_still_load():
    load_spec(SPECS / "dqn_cartpole.yaml", None, ["env.clip_reward=true", "env.episode_life=true"])
    load_spec(SPECS / "ppo_pong.yaml", None, ["env.clip_reward=false", "env.episode_life=false"])
    load_spec(SPECS / "a2c_gae_cartpole.yaml", None, ["agent.net.shared=true", "agent.net.actor_optim_spec=null",
                                                      "agent.net.critic_optim_spec=null"])


def _sections() -> set[type]:
    """Every dataclass a spec is made of, each algorithm's included."""
    found, todo = set(), [Spec, *ALGORITHM_SPECS.values()]
    while todo:
        cls = todo.pop()
        if cls in found:
            continue
        found.add(cls)
        for hint in typing.get_type_hints(cls).values():
            todo += [a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a)]
    return found


def _ints_or_lists(tp) -> bool:
    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) else [tp]
    return any(a is int or typing.get_origin(a) is list for a in args)


def test_every_sized_field_declares_its_bounds():
    """Integers and lists (of any depth) carry a range or per-element / per-position constraints."""
    unbounded = []
    for cls in _sections():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init and _ints_or_lists(hints[f.name]) and not {"low", "high", "item", "choices"} & set(f.metadata):
                unbounded.append(f"{cls.__name__}.{f.name}")
    assert not unbounded


def test_slm_conv_layers_honour_padding_and_dilation():
    layers = [[32, 8, 4, 2, 1], [64, 3, 1, 1, 2]]
    spec = load_spec(SPECS / "ppo_pong.yaml", None, [f"agent.net.conv_hid_layers={layers}"])
    torso = ConvTorso((4, 84, 84), spec.agent.net)
    convs = [m for m in torso.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.padding, c.dilation) for c in convs] == [((2, 2), (1, 1)), ((1, 1), (2, 2))]
    expected = nn.Sequential(nn.Conv2d(4, 32, 8, 4, 2, 1), nn.Conv2d(32, 64, 3, 1, 1, 2))(torch.zeros(1, 4, 84, 84))
    assert torso.out_dim == expected.numel()
    three = ConvTorso((4, 84, 84), NetSpec(conv_hid_layers=[[32, 8, 4, 0, 1], [64, 4, 2]]))
    assert three.out_dim == ConvTorso((4, 84, 84), NetSpec(conv_hid_layers=[[32, 8, 4], [64, 4, 2]])).out_dim


def test_conv_stack_below_one_pixel_and_convnet_on_vectors_are_spec_errors():
    with pytest.raises(SpecError) as info:
        ConvTorso((4, 84, 84), NetSpec(type="ConvNet", conv_hid_layers=[[32, 8, 4], [64, 8, 4], [64, 8, 4]]))
    assert info.value.where == "agent.net.conv_hid_layers[2]" and "below 1x1" in str(info.value)
    spec = load_spec(SPECS / "dqn_cartpole.yaml", None, ["agent.net.type=ConvNet"])
    with pytest.raises(SpecError) as info:
        zoo.build(spec, seed=0)
    assert info.value.where == "agent.net.type" and "image observations" in str(info.value)


def test_discrete_observations_are_one_hot():
    env = make_env(EnvSpec(name="FrozenLake-v1", num_envs=2, max_frame=1), seed=0)
    obs = env.reset()["observation"]
    assert obs.shape == (2, 16) and obs.dtype == torch.float32
    assert obs.sum(-1).tolist() == [1.0, 1.0] and obs[:, 0].tolist() == [1.0, 1.0]  # both start in state 0
    spec = load_spec(SPECS / "ppo_cartpole.yaml", None, ["env.name=FrozenLake-v1", "agent.algorithm.time_horizon=8",
                                                         "agent.algorithm.minibatch_size=8", "env.num_envs=1"])
    batch = next(iter(zoo.build(spec, seed=0).collector))
    assert batch["observation"].shape[-1] == 16


def text_observation_env() -> gym.Env:
    """CartPole whose observations are a Dict with a Text part: not flattenable into a vector."""
    env = gym.make("CartPole-v1")
    return gym.wrappers.TransformObservation(env, lambda obs: {"x": obs, "note": "a"}, gym.spaces.Dict(
        {"x": env.observation_space, "note": gym.spaces.Text(4)}))


def test_tuple_observations_are_flattened_and_unflattenable_ones_are_spec_errors_naming_env_name():
    obs = make_env(EnvSpec(name="Blackjack-v1", num_envs=2, max_frame=1), seed=0).reset()["observation"]
    assert obs.shape == (2, 32 + 11 + 2) and obs.dtype == torch.float32  # three Discrete parts, one-hot each
    assert obs.sum(-1).tolist() == [3.0, 3.0]
    with pytest.raises(SpecError) as info:
        make_env(EnvSpec(name="tests.unit.test_validation:text_observation_env", max_frame=1), seed=0)
    assert info.value.where == "env.name" and "Dict observations with parts that cannot be flattened" in str(
        info.value)


def test_cli_rejects_a_bad_combination_in_one_line_before_building(tmp_path):
    result = run_cli(str(SPECS / "ppo_cartpole.yaml"), "--dry-run", "-s", "agent.memory.name=PrioritizedReplay",
                     data_dir=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ppo_cartpole.yaml: agent.memory.name: PPO does not use 'PrioritizedReplay'" in lines[0]


def test_cli_build_time_spec_error_is_one_line_naming_the_file(tmp_path):
    result = run_cli(str(SPECS / "dqn_cartpole.yaml"), "--dry-run", "-s", "agent.net.type=ConvNet", data_dir=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "dqn_cartpole.yaml: agent.net.type:" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize(("spec_file", "key", "values", "inner"), [
    ("ppo_cartpole.yaml", "agent.memory.name__choice", ["OnPolicyBatchReplay", "PrioritizedReplay"],
     "agent.memory.name"),
    ("dqn_cartpole.yaml", "agent.net.hid_layers__choice", [[64], [64, 0]], "agent.net.hid_layers[1]"),
    ("td3_pendulum.yaml", "agent.net.type__choice", ["MLPNet", "DuelingMLPNet"], "agent.net.type"),
])
def test_search_rejects_a_value_the_algorithm_does_not_accept(spec_file, key, values, inner):
    from zoo.search import parse_search

    spec = load_spec(SPECS / spec_file)
    spec.search = {key: values}
    with pytest.raises(SpecError) as info:
        parse_search(spec, str(SPECS / spec_file), None, {})
    assert info.value.where == f"search.{key}" and inner in str(info.value) and "\n" not in str(info.value)


def test_validate_without_raw_data_keeps_every_field():
    from zoo.spec import validate

    spec = load_spec(SPECS / "sac_pendulum.yaml", None, ["agent.memory.name=PrioritizedReplay"])
    validate(spec)
    assert spec.agent.memory.name == "PrioritizedReplay" and spec.agent.net.update_type == "polyak"
    spec.agent.memory.name = "OnPolicyReplay"
    with pytest.raises(SpecError, match="agent.memory.name"):
        validate(spec)
