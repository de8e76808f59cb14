"""SLM-Lab metrics, IQM and the random-baseline cache against hand-computed values."""

import json

import numpy as np
import pytest

from zoo.metrics import bootstrap_ci, iqm, session_metrics, trial_metrics
from zoo.spec import EnvSpec
from zoo.trial import random_baseline, write_trial_metrics

FRAMES, OPT_STEPS = [100, 200, 300, 400], [10, 20, 30, 40]
RETURNS_A, RETURNS_B = [10, 30, 20, 40], [10, 50, 60, 40]  # strengths over a baseline of 10: [0,20,10,30], [0,40,50,30]


def test_session_metrics_by_hand():
    m = session_metrics(FRAMES, OPT_STEPS, RETURNS_A, random_return=10.0)
    assert m["final_return_ma"] == pytest.approx(25.0)
    assert m["strength"] == pytest.approx(15.0)
    assert (m["max_strength"], m["final_strength"]) == (30.0, 30.0)
    assert m["sample_efficiency"] == pytest.approx((20 / 200 + 10 / 300 + 30 / 400) / 60)
    assert m["training_efficiency"] == pytest.approx((20 / 20 + 10 / 30 + 30 / 40) / 60)
    assert m["stability"] == pytest.approx(1 - 10 / 30)  # one drop of 10 over strengths 0 + 20 + 10


def test_trial_metrics_by_hand():
    sessions = [{"frames": FRAMES, "opt_steps": OPT_STEPS, "returns": r} for r in (RETURNS_A, RETURNS_B)]
    t = trial_metrics(sessions, random_return=10.0)
    assert t["score"] == pytest.approx((25.0 + 40.0) / 2)
    assert t["mean"]["strength"] == pytest.approx((15.0 + 30.0) / 2)
    assert t["mean"]["stability"] == pytest.approx(((1 - 10 / 30) + (1 - 20 / 90)) / 2)
    std_sum = np.std([20, 40], ddof=1) + np.std([10, 50], ddof=1)  # the other checkpoints agree
    assert t["mean"]["consistency"] == pytest.approx(1 - 2 * std_sum / (0 + 30 + 30 + 30))
    assert t["iqm"]["final_return_ma"] == pytest.approx(32.5)
    low, high = t["iqm"]["ci95"]
    assert 25.0 <= low <= 32.5 <= high <= 40.0


def test_iqm_and_bootstrap():
    assert iqm([100, 1, 2, 3, 4]) == pytest.approx(3.0)  # trims one value from each end of five
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)
    assert bootstrap_ci([5.0, 5.0, 5.0]) == (5.0, 5.0)
    low, high = bootstrap_ci(list(range(20)), samples=500)
    assert low < iqm(list(range(20))) < high


def test_random_baseline_is_measured_once_and_cached(tmp_path):
    env_spec = EnvSpec(name="CartPole-v1", max_frame=1)
    measured = random_baseline(env_spec, tmp_path)
    assert 10 < measured < 40  # uniform random CartPole lasts about 22 steps
    cache = tmp_path / "random_baselines.json"
    data = json.loads(cache.read_text())
    data["CartPole-v1"]["mean"] = 123.0
    cache.write_text(json.dumps(data))
    assert random_baseline(env_spec, tmp_path) == 123.0
    assert random_baseline(EnvSpec(name="CartPole-v1", max_frame=1, max_t=5), tmp_path) == 5.0


def test_session_files_hold_their_metrics_under_slm_lab_names(tmp_path):
    sessions = []
    for i, returns in enumerate((RETURNS_A, RETURNS_B)):
        run_dir = tmp_path / "sessions" / f"s{i}"
        run_dir.mkdir(parents=True)
        sessions.append({"frames": FRAMES, "opt_steps": OPT_STEPS, "returns": returns, "seed": i,
                         "run_dir": str(run_dir), "frame": 400})
    trial = write_trial_metrics(tmp_path, sessions, baseline=10.0)
    assert set(trial["mean"]) == {"final_return_ma", "strength", "max_strength", "final_strength",
                                  "sample_efficiency", "training_efficiency", "stability", "consistency"}
    saved = json.loads((tmp_path / "sessions" / "s1" / "session_metrics.json").read_text())
    assert saved["returns"] == RETURNS_B
    assert saved["metrics"] == session_metrics(FRAMES, OPT_STEPS, RETURNS_B, random_return=10.0)
