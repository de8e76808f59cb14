"""tools/benchmark.py and tools/speed.py on tiny budgets: outputs written, cells resumable, rates printed."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

from tests.conftest import ROOT, SPECS

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def run_tool(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=ENV)


def test_benchmark_writes_table_and_plot_and_resumes(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(SPECS / "dqn_cartpole.yaml", specs)
    args = [str(ROOT / "tools" / "benchmark.py"), "--suite", "classic", "--seeds", "1", "--max-frame", "300",
            "--jobs", "1", "--specs-dir", str(specs), "--out", str(tmp_path / "out"),
            "--report", str(tmp_path / "BENCHMARK.md")]
    first = run_tool(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    report = (tmp_path / "BENCHMARK.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| CartPole-v1 | DQN | dqn_cartpole |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert int(cells[3].replace(",", "")) >= 300 and cells[4] == "1"  # frames, seeds
    assert re.fullmatch(r"-?\d+\.\d ± \d+\.\d", cells[5]), cells[5]  # score mean ± std
    assert re.fullmatch(r"(\d[\d,]* )?\(\d/1\)", cells[8]), cells[8]  # frames to target (solved k/n)
    assert cells[9] == "240"  # SLM-Lab's published DQN CartPole score
    assert "--max-frame 300" in report and "QUICK PASS" in report
    assert (tmp_path / "out" / "plots" / "CartPole-v1.png").stat().st_size > 0
    assert "](out/plots/CartPole-v1.png)" in report  # linked relative to the report
    cache = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(cache["cells"]) == 1

    second = run_tool(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "cached   dqn_cartpole seed 0" in second.stdout and "0 cells to run" in second.stdout
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == cache  # nothing rerun
    assert (tmp_path / "BENCHMARK.md").read_text().count("<!-- benchmark:classic_max300 begin -->") == 1


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_cache_keeps_cells_of_a_benchmark_running_beside_it(tmp_path):
    benchmark = load_tool("benchmark")
    path = tmp_path / "results.json"
    benchmark.store_cell(path, "other|hash|seed0", {"score": 1.0})
    mine = benchmark.store_cell(path, "mine|hash|seed0", {"score": 2.0})
    assert set(mine["cells"]) == {"other|hash|seed0", "mine|hash|seed0"}
    assert benchmark.load_cache(path) == mine


def test_speed_prints_env_limit_collection_and_training_rates():
    result = run_tool(str(ROOT / "tools" / "speed.py"), str(SPECS / "dqn_cartpole.yaml"), "--max-frame", "300",
                      "--eval-every", "300", "--eval-episodes", "2", "--seconds", "0.3", "--profile-envs", "1", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    rates = {name: float(m.group(1).replace(",", "")) for name, pattern in (
        ("env", r"env limit .*?: ([\d,]+) frames/s"), ("collection", r"collection .*?: ([\d,]+) frames/s"),
        ("training", r"training frames/s\s+([\d,.]+)")) if (m := re.search(pattern, out))}
    assert set(rates) == {"env", "collection", "training"}, out
    assert all(rate > 0 for rate in rates.values()), rates
    assert "solved" in out and "0/1" in out  # 300 frames cannot reach 475
    assert "evaluating" in out and "process seconds to threshold" in out
    profile = re.findall(r"^\s+(\d+)((?:\s+[\d.]+){6})\s+([\d.]+)%$", out, re.M)  # envs, 6 parts, share
    assert [int(envs) for envs, _, _ in profile] == [1, 4], out
    assert all(float(x) > 0 for _, parts, _ in profile for x in parts.split()), profile


def test_benchmark_report_keeps_rows_its_cache_cannot_back(tmp_path):
    benchmark = load_tool("benchmark")
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(SPECS / "dqn_cartpole.yaml", specs)
    report = tmp_path / "BENCHMARK.md"
    args = benchmark.parse_args(["--suite", "classic", "--specs-dir", str(specs), "--out", str(tmp_path / "out"),
                                 "--report", str(report)])
    row = ("| CartPole-v1 | DQN | dqn_cartpole | 50,176 | 3 | 283.6 ± 26.5 | 402.0 | 500.0 | 22,528 (3/3) | 240 | "
           "179 | 332 | cpu (AMD EPYC, 2 cores) | B |")
    report.write_text(f"# Notes kept\n\n<!-- benchmark:classic begin -->\n{row}\n\nVersions: A: torch 2.0; "
                      "B: torch 2.14.1, zoo 0.1.0\n<!-- benchmark:classic end -->\n")
    plot = args.plots_dir / "CartPole-v1.png"
    plot.parent.mkdir(parents=True)
    plot.write_bytes(b"earlier curves")
    benchmark.update_outputs(args, benchmark.discover(specs, benchmark.SUITES["classic"]), {"cells": {}})
    text = report.read_text()
    assert text.startswith("# Notes kept") and text.count("<!-- benchmark:classic begin -->") == 1
    assert row.replace("| B |", "| A |") in text  # the same results, its versions relabelled
    assert "Versions: A: torch 2.14.1, zoo 0.1.0" in text
    assert "are not redrawn): dqn_cartpole." in text
    assert plot.read_bytes() == b"earlier curves" and "](out/plots/CartPole-v1.png)" in text


def test_speed_measures_each_collector_side_by_side():
    result = run_tool(str(ROOT / "tools" / "speed.py"), str(SPECS / "ppo_cartpole.yaml"), "--no-train", "--seconds",
                      "0.3", "--profile-envs", "--collectors", "sync", "multi_sync", "--workers", "2", "--repeats", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    rates = dict(re.findall(r"collection with env.collector (\w+).*?: ([\d,]+) frames/s", result.stdout))
    assert set(rates) == {"sync", "multi_sync"}, result.stdout
    assert all(float(rate.replace(",", "")) > 0 for rate in rates.values()), rates
    rounds = re.findall(r"\(median of ([\d,]+), ([\d,]+)\)", result.stdout)  # two rounds, side by side
    assert len(rounds) == 2 and "x sync (median of the rounds' ratios)" in result.stdout, result.stdout


def test_benchmark_cell_key_hashes_explicit_settings_only(tmp_path):
    """A field left at its default stays out of the key (a release adding fields keeps the cache); an edit counts."""
    benchmark = load_tool("benchmark")
    shutil.copy(SPECS / "dqn_cartpole.yaml", tmp_path)
    args = benchmark.parse_args(["--specs-dir", str(tmp_path)])
    [entry] = benchmark.discover(tmp_path, benchmark.SUITES["classic"])
    settings = benchmark.explicit_settings(benchmark.load_spec(entry.path))
    assert settings["env"]["name"] == "CartPole-v1"
    assert "max_session" not in settings["meta"] and "device" not in settings["meta"]  # defaults left out
    key = benchmark.cell_key(entry, args, 0)
    assert key.startswith("dqn_cartpole|") and key.endswith("|seed0")
    spec_file = tmp_path / "dqn_cartpole.yaml"
    spec_file.write_text(spec_file.read_text().replace("gamma: 0.99", "gamma: 0.98"))
    [edited] = benchmark.discover(tmp_path, benchmark.SUITES["classic"])
    assert benchmark.cell_key(edited, args, 0) != key


def test_benchmark_report_has_slm_labs_crossq_column(tmp_path):
    benchmark = load_tool("benchmark")
    specs = tmp_path / "specs"
    specs.mkdir()
    for name in ("crossq_pendulum.yaml", "sac_pendulum.yaml"):
        shutil.copy(SPECS / name, specs)
    args = benchmark.parse_args(["--suite", "classic", "--specs-dir", str(specs), "--out", str(tmp_path / "out"),
                                 "--report", str(tmp_path / "BENCHMARK.md")])
    entries = benchmark.discover(specs, benchmark.SUITES["classic"])
    assert [e.algorithm for e in entries] == ["SAC", "CrossQ"]
    rows = benchmark.report_section(args, entries, {}, [], {}).splitlines()
    crossq = [row for row in rows if "| CrossQ |" in row]
    assert "| Pendulum-v1 | CrossQ | crossq_pendulum | 20,000 | 0 | not run | - | - | - | -146 |" in crossq[2]
    assert [row.split(" | ")[0] for row in crossq] == ["| CartPole-v1", "| Acrobot-v1", "| Pendulum-v1",
                                                         "| LunarLander-v3", "| LunarLanderContinuous-v3"]
    assert rows.index(crossq[2]) == rows.index(next(r for r in rows if "sac_pendulum" in r)) + 1
