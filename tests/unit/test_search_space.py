"""The search block: SLM-style distributions, nested keys, one-line errors, values as the spec sees them."""

import json
from pathlib import Path

import optuna
import pytest

from zoo.search import check_param, flatten_search, parse_search
from zoo.spec import SpecError, load_spec

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "search_cartpole.yaml"


def test_nested_and_dotted_keys_flatten():
    flat = flatten_search({"agent": {"net": {"optim_spec.lr__loguniform": [1e-4, 1e-2]}}, "env.max_t__choice": [5]})
    assert flat == {"agent.net.optim_spec.lr__loguniform": [1e-4, 1e-2], "env.max_t__choice": [5]}


@pytest.mark.parametrize(("name", "args", "message"), [
    ("agent.algorithm.gamma__gaussian", [0, 1], "unknown distribution '__gaussian'"),
    ("agent.algorithm.gamma__uniform", [0.99, 0.9], "needs low < high"),
    ("agent.algorithm.gamma__uniform", 0.9, "expected a list"),
    ("agent.net.optim_spec.lr__loguniform", [0, 0.1], "needs low > 0"),
    ("agent.algorithm.training_iter__randint", [1.5, 4], "expected integers"),
    ("agent.algorithm.training_iter__qrandint", [1, 8], "expected [low, high, q]"),
    ("agent.algorithm.gamma__normal", [0.99, 0], "std must be > 0"),
    ("env.num_envs__choice", [], "needs at least one choice"),
])
def test_bad_distributions_are_one_line_errors(name, args, message):
    with pytest.raises(SpecError, match=None) as err:
        check_param(name, args)
    assert message in str(err.value) and f"search.{name}" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("search", "where"), [
    ({"agent.algorithm.gama__uniform": [0.9, 0.99]}, "search.agent.algorithm.gama__uniform"),
    ({"agent.algorithm.gamma__uniform": [0.9, 1.5]}, "search.agent.algorithm.gamma__uniform"),
    ({"env.num_envs__choice": [4, "many"]}, "search.env.num_envs__choice"),
    ({"agent": {"algorithm": {"gamma": [0.9]}}}, "search.agent.algorithm.gamma"),
])
def test_values_are_checked_against_the_spec(search, where):
    spec = load_spec(FIXTURE)
    spec.search = search
    with pytest.raises(SpecError) as err:
        parse_search(spec, str(FIXTURE), None, {})
    assert str(err.value).startswith(f"{FIXTURE}: {where}:"), str(err.value)


def test_suggested_values_reach_the_spec():
    spec = load_spec(FIXTURE)
    spec.search = {"agent.net.hid_layers__choice": [[16], [32, 32]], "agent.algorithm.gamma__normal": [0.95, 0.01],
                   "agent.algorithm.training_iter__randint": [1, 3], "env.num_envs__qrandint": [4, 16, 4]}
    params = {p.key: p for p in parse_search(spec, str(FIXTURE), None, {})}
    trial = optuna.trial.FixedTrial({"agent.net.hid_layers": json.dumps([32, 32]), "agent.algorithm.gamma": 0.5,
                                     "agent.algorithm.training_iter": 2, "env.num_envs": 8})
    values = {k: p.suggest(trial) for k, p in params.items()}
    assert values == {"agent.net.hid_layers": [32, 32], "agent.algorithm.gamma": pytest.approx(0.95),
                      "agent.algorithm.training_iter": 2, "env.num_envs": 8}
    assert params["agent.algorithm.gamma"].encode(0.95) == pytest.approx(0.5)
    tuned = load_spec(FIXTURE, overrides=values)
    assert tuned.agent.net.hid_layers == [32, 32] and tuned.env.num_envs == 8
