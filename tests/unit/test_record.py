"""Run directories: which run a `@latest` mode picks, metrics CSV columns and their names."""

import json
import os

import pytest

from zoo.record import CheckpointError, newest_run, resolve_run_dir, run_spec_name
from zoo.search import newest_experiment


def make_run(root, name, spec_name, mtime, record_name=True):
    path = root / name
    path.mkdir()
    (path / "run.json").write_text(json.dumps({"spec_name": spec_name} if record_name else {"seed": 0}))
    os.utime(path, (mtime, mtime))
    return path


def test_latest_run_is_of_the_exact_spec(tmp_path):
    lunar = make_run(tmp_path, "ppo_lunar_2026_01_02_030405", "ppo_lunar", 1000)
    continuous = make_run(tmp_path, "ppo_lunar_continuous_2026_01_02_030406", "ppo_lunar_continuous", 2000)
    assert newest_run(tmp_path, "ppo_lunar") == lunar
    assert newest_run(tmp_path, "ppo_lunar_continuous") == continuous
    assert resolve_run_dir("latest", tmp_path, "ppo_lunar") == lunar
    assert newest_run(tmp_path, "ppo") is None
    with pytest.raises(CheckpointError, match="no run of spec 'ppo'"):
        resolve_run_dir("latest", tmp_path, "ppo")


def test_latest_run_reads_the_spec_name_not_the_folder_name(tmp_path):
    named = make_run(tmp_path, "my_experiment", "ppo_lunar", 1000)
    make_run(tmp_path, "ppo_lunar_2026_01_02_030405", "ppo_lunar_v2", 2000)  # renamed spec, old folder name
    assert newest_run(tmp_path, "ppo_lunar") == named


def test_runs_without_a_recorded_spec_name_fall_back_to_the_folder_name(tmp_path):
    old = make_run(tmp_path, "ppo_lunar_2026_01_02_030405_2", None, 1000, record_name=False)
    make_run(tmp_path, "ppo_lunar_continuous_2026_01_02_030406", None, 2000, record_name=False)
    assert run_spec_name(old) == "ppo_lunar"
    assert newest_run(tmp_path, "ppo_lunar") == old
    assert run_spec_name(make_run(tmp_path, "unnamed", None, 3000, record_name=False)) is None


def test_latest_search_experiment_is_of_the_exact_spec(tmp_path):
    for name, mtime in (("ppo_lunar_search_2026_01_02_030405", 1000),
                        ("ppo_lunar_continuous_search_2026_01_02_030406", 2000)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "search.json").write_text("{}")
        os.utime(tmp_path / name, (mtime, mtime))
    assert newest_experiment(tmp_path, "ppo_lunar") == tmp_path / "ppo_lunar_search_2026_01_02_030405"
    assert newest_experiment(tmp_path, "ppo") is None
