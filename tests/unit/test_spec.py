"""Spec parsing, templating, overrides and every class of validation error."""

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import SPECS, run_cli
from zoo.agent import make_optimizer
from zoo.spec import Spec, SpecError, field_docs, load_spec, spec_to_dict

MINIMAL = """
agent:
  algorithm:
    name: DQN
    gamma: 0.99
  memory: {name: Replay, max_size: 1000, batch_size: 32}
  net: {type: MLPNet, hid_layers: [32], optim_spec: {name: Adam, lr: 0.001}}
env:
  name: CartPole-v1
  max_frame: 1000
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path, *args, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(path, *args, **kwargs)
    return info.value


def test_minimal_spec_gets_defaults(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL))
    assert isinstance(spec, Spec)
    assert spec.name == "spec"
    assert spec.agent.algorithm.gamma == 0.99
    assert spec.agent.net.hid_layers == [32]
    assert spec.env.num_envs == 1 and spec.meta.eval_episodes == 10


def test_json_spec(tmp_path):
    import yaml

    spec = load_spec(write(tmp_path, json.dumps(yaml.safe_load(MINIMAL)), "x.json"))
    assert spec.agent.algorithm.name == "DQN"


def test_dotted_override_is_typed(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL), overrides=["agent.algorithm.gamma=0.98", "env.max_frame=1e4",
                                                          "agent.net.hid_layers=[8, 8]"])
    assert spec.agent.algorithm.gamma == 0.98
    assert spec.env.max_frame == 10000 and isinstance(spec.env.max_frame, int)
    assert spec.agent.net.hid_layers == [8, 8]


def test_templates_filled_from_overrides(tmp_path):
    text = MINIMAL.replace("CartPole-v1", "${env}").replace("gamma: 0.99", "gamma: ${gamma}")
    spec = load_spec(write(tmp_path, text), overrides=["env=Acrobot-v1", "gamma=0.9"])
    assert spec.env.name == "Acrobot-v1" and spec.agent.algorithm.gamma == 0.9
    err = error_of(write(tmp_path, text), overrides=["env=Acrobot-v1"])
    assert "gamma" in str(err) and "-s gamma=" in str(err)


def test_named_specs(tmp_path):
    body = "\n".join("  " + line for line in MINIMAL.strip().splitlines())
    path = write(tmp_path, f"first:\n{body}\nsecond:\n{body}\n")
    assert load_spec(path, "second").name == "second"
    assert "name one of: first, second" in str(error_of(path))
    assert "did you mean 'second'" in str(error_of(path, "secnd"))


def test_round_trip(tmp_path):
    import yaml

    spec = load_spec(write(tmp_path, MINIMAL))
    again = load_spec(write(tmp_path, yaml.safe_dump(spec_to_dict(spec)), "again.yaml"))
    assert spec_to_dict(again) == spec_to_dict(spec)


@pytest.mark.parametrize(("override", "field", "fragment"), [
    ("agent.algorithm.gama=0.9", "agent.algorithm.gama", "did you mean 'gamma'"),
    ("agent.algorithm.gamma=1.5", "agent.algorithm.gamma", "allowed: (0.0, 1.0]"),
    ("agent.algorithm.gamma=0", "agent.algorithm.gamma", "out of range"),
    ("agent.net.optim_spec.lr=-0.1", "agent.net.optim_spec.lr", "out of range"),
    ("agent.net.hid_layers=abc", "agent.net.hid_layers", "expected a list"),
    ("env.num_envs=2.5", "env.num_envs", "expected an integer"),
    ("env.normalize_obs=maybe", "env.normalize_obs", "expected true or false"),
    ("agent.algorithm.name=DQM", "agent.algorithm.name", "did you mean 'DQN'"),
    ("agent.algorithm.name=Nope", "agent.algorithm.name", "allowed: "),
    ("agent.memory.name=Replya", "agent.memory.name", "did you mean 'Replay'"),
    ("agent.net.type=MLP", "agent.net.type", "allowed: MLPNet"),
    ("agent.memory.batch_size=5000", "agent.memory.batch_size", "exceeds max_size"),
    ("meta.devic=cpu", "meta.devic", "did you mean 'device'"),
    ("agent.net.optim_spec.betas=[0.5]", "agent.net.optim_spec.betas", "expected 2 values, got 1"),
    ("agent.net.optim_spec.betas=[0.5, 1.0]", "agent.net.optim_spec.betas[1]", "allowed: [0.0, 1.0)"),
    ("agent.net.optim_spec.betas=[-0.1, 0.9]", "agent.net.optim_spec.betas[0]", "out of range"),
    ("agent.net.optim_spec.betas=0.5", "agent.net.optim_spec.betas", "expected a list"),
])
def test_validation_errors_name_field_and_allowed(tmp_path, override, field, fragment):
    path = write(tmp_path, MINIMAL)
    err = error_of(path, overrides=[override])
    assert err.where == field
    assert fragment in str(err)
    assert str(path) in str(err)
    assert "\n" not in str(err)


def test_adam_betas_reach_the_optimizer(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL), overrides=["agent.net.optim_spec.betas=[0.5, 0.999]"])
    opt = make_optimizer([torch.zeros(1, requires_grad=True)], spec.agent.net.optim_spec)
    assert opt.param_groups[0]["betas"] == (0.5, 0.999)
    default_spec = load_spec(write(tmp_path, MINIMAL)).agent.net.optim_spec
    default = make_optimizer([torch.zeros(1, requires_grad=True)], default_spec)
    assert default.param_groups[0]["betas"] == (0.9, 0.999)


def test_missing_required_fields(tmp_path):
    err = error_of(write(tmp_path, MINIMAL.replace("max_frame: 1000", "num_envs: 1")))
    assert err.where == "env.max_frame" and "missing required" in str(err)
    err = error_of(write(tmp_path, MINIMAL.replace("name: DQN", "")))
    assert err.where == "agent.algorithm.name" and "DQN" in str(err)


def test_unreadable_and_malformed_files(tmp_path):
    assert "cannot read" in str(error_of(tmp_path / "absent.yaml"))
    assert "malformed yaml file at line" in str(error_of(write(tmp_path, "agent: [1, 2\nenv: {")))
    assert "must hold a mapping" in str(error_of(write(tmp_path, "- 1\n- 2\n")))


def test_unknown_dotless_override(tmp_path):
    err = error_of(write(tmp_path, MINIMAL), overrides=["seed=3"])
    assert err.where == "seed"


def test_every_field_documented():
    rows = field_docs()
    assert len(rows) > 40
    undocumented = [path for path, _, doc in rows if not doc]
    assert not undocumented


def test_cli_error_is_one_line_exit_2(tmp_path):
    result = run_cli(str(SPECS / "dqn_cartpole.yaml"), "-s", "agent.algorithm.gama=0.9", data_dir=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "agent.algorithm.gama" in lines[0] and "did you mean 'gamma'" in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_unknown_env_id(tmp_path):
    result = run_cli(str(SPECS / "dqn_cartpole.yaml"), "-s", "env.name=CartPole-v9", data_dir=tmp_path)
    assert result.returncode == 2
    assert "env.name" in result.stderr and "CartPole-v1" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_dry_run_prints_graph(tmp_path):
    result = run_cli(str(SPECS / "dqn_cartpole.yaml"), "--dry-run", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    for component in ("env", "eval_env", "policy", "actor", "collector", "buffer", "loss", "target", "optimizer"):
        assert any(line.startswith(component) for line in result.stdout.splitlines()), component
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
