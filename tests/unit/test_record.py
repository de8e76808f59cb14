"""Run directories: which run a `@latest` mode picks, metrics CSV columns and their names."""

import csv
import json
import os

import pytest

from zoo.record import CheckpointError, RunDir, newest_run, read_metrics, resolve_run_dir, run_spec_name
from zoo.search import newest_experiment
from zoo.session import metric_name


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


def test_algorithm_metrics_are_namespaced_once():
    assert metric_name("loss") == "loss/main"
    assert metric_name("loss_critic") == "loss/critic"
    assert metric_name("kl_approx") == "train/kl_approx"
    assert metric_name("alpha") == "train/alpha"
    assert metric_name("loss/actor") == "loss/actor" and metric_name("train/entropy") == "train/entropy"


def test_csv_grows_a_column_per_new_metric(tmp_path):
    run = RunDir(tmp_path, tensorboard=False)
    run.log({"frame": 10, "train/return": 1.0, "time/collect": 0.5})
    run.log({"frame": 20, "train/return": 2.0, "loss/main": 0.25, "time/collect": 0.75, "train/kl_approx": 0.01})
    run.log({"frame": 30, "eval/return": 9.0, "train/return": 3.0})
    with open(tmp_path / "metrics.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["frame", "train/return", "train/kl_approx", "eval/return", "loss/main", "time/collect"]
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["frame"] for r in rows] == ["10", "20", "30"]
    assert rows[0]["loss/main"] == "" and rows[1]["loss/main"] == "0.25" and rows[2]["eval/return"] == "9"
    assert RunDir(tmp_path, tensorboard=False).read_metrics() == rows


def test_old_metrics_csv_reads_and_continues_under_the_new_names(tmp_path):
    (tmp_path / "metrics.csv").write_text("frame,wall_time,fps,train_return_ma,eval_return,loss,time_collect\n"
                                          "100,1.5,66,12.5,20,0.3,0.9\n")
    (old,) = read_metrics(tmp_path / "metrics.csv")
    assert old == {"frame": "100", "time/wall": "1.5", "train/fps": "66", "train/return_ma": "12.5",
                   "eval/return": "20", "loss/main": "0.3", "time/collect": "0.9"}
    run = RunDir(tmp_path, tensorboard=False)
    run.log({"frame": 200, "train/return_ma": 15.0, "train/entropy": 0.5})
    with open(tmp_path / "metrics.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["frame", "train/fps", "train/return_ma", "train/entropy", "eval/return", "loss/main",
                      "time/wall", "time/collect"]
    rows = read_metrics(tmp_path / "metrics.csv")
    assert rows[0]["eval/return"] == "20" and rows[1] == {**dict.fromkeys(header, ""), "frame": "200",
                                                          "train/return_ma": "15", "train/entropy": "0.5"}
