"""Two runs with the same seed on CPU write the same metrics, apart from timing columns."""

from tests.conftest import SPECS, only_run_dir, read_metrics, run_cli
from zoo.record import TIMING_COLUMNS


def run_metrics(tmp_path, name, seed):
    data_dir = tmp_path / name
    result = run_cli(str(SPECS / "dqn_cartpole.yaml"), "dev", "-s", "env.max_frame=3000", "-s",
                     "meta.log_frequency=500", "-s", f"meta.seed={seed}", data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_metrics(only_run_dir(data_dir))
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def test_same_seed_same_metrics(tmp_path):
    first, second = run_metrics(tmp_path, "a", 3), run_metrics(tmp_path, "b", 3)
    assert len(first) >= 5
    assert first == second
    assert any(row["loss/main"] for row in first)  # learning happened, so the comparison covers updates


def test_different_seed_differs(tmp_path):
    assert run_metrics(tmp_path, "a", 3) != run_metrics(tmp_path, "c", 4)
