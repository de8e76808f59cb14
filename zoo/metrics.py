"""Run metrics after SLM-Lab (slm_lab/experiment/analysis.py): strength, efficiency, stability, consistency, IQM.

A session is summarised from its evaluation checkpoints: frames `t_i`, gradient steps `o_i` and mean eval
returns `R_i`. With the random-policy baseline `R_rand` of the env:
    strength            str_i = R_i - R_rand;  str = mean_i str_i
    sample efficiency   sum_i (str_i / t_i) / sum_i str_i       (as SLM-Lab's code computes it; its docstring's
    training efficiency the same with gradient steps o_i         formula divides by sum_i 1/t_i instead)
    stability           1 - |sum_i min(str_{i+1} - str_i, 0) / sum_{i<N} str_i|
    final_return_ma     mean of the last FINAL_WINDOW checkpoint returns (the trial's score)
A trial averages its sessions and adds consistency = 1 - 2 sum_i std_j(str_ij) / sum_i mean_j(str_ij), plus the
interquartile mean of the sessions' scores with a percentile-bootstrap confidence interval (as rliable).
"""

import math

import numpy as np

FINAL_WINDOW = 100  # checkpoints in final_return_ma, SLM-Lab's PLOT_MA_WINDOW
SESSION_KEYS = ("final_return_ma", "strength", "max_strength", "final_strength", "sample_efficiency",
                "training_efficiency", "stability")


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den != 0 else float("nan")


def strength(returns: np.ndarray, random_return: float) -> np.ndarray:
    """Local strengths: checkpoint returns above the random-policy baseline."""
    return np.asarray(returns, dtype=float) - random_return


def efficiency(local_strengths: np.ndarray, times: np.ndarray) -> float:
    """sum(str_i / t_i) / sum(str_i), skipping checkpoints at t = 0 (SLM-Lab drops the infinities)."""
    times = np.asarray(times, dtype=float)
    keep = times > 0
    return _ratio(np.sum(local_strengths[keep] / times[keep]), np.sum(local_strengths))


def stability(local_strengths: np.ndarray) -> float:
    """1 - |sum of drops between consecutive checkpoints / sum of strengths before them|."""
    if len(local_strengths) < 2:
        return float("nan")
    drops = np.minimum(np.diff(local_strengths), 0.0)
    return 1.0 - abs(_ratio(drops.sum(), local_strengths[:-1].sum()))


def consistency(local_strengths_list: list[np.ndarray]) -> float:
    """1 - 2 sum_i std_j / sum_i mean_j over checkpoints i and sessions j (sample std, as pandas)."""
    if len(local_strengths_list) < 2:
        return float("nan")
    n = min(len(s) for s in local_strengths_list)
    table = np.stack([np.asarray(s[:n], dtype=float) for s in local_strengths_list])
    return 1.0 - 2.0 * _ratio(table.std(axis=0, ddof=1).sum(), table.mean(axis=0).sum())


def session_metrics(frames, opt_steps, returns, random_return: float) -> dict[str, float]:
    """Scalar metrics of one session from its checkpoint series."""
    returns = np.asarray(returns, dtype=float)
    if returns.size == 0:
        return dict.fromkeys(SESSION_KEYS, float("nan"))
    local = strength(returns, random_return)
    return {
        "final_return_ma": float(returns[-FINAL_WINDOW:].mean()),
        "strength": float(local.mean()),
        "max_strength": float(local.max()),
        "final_strength": float(local[-1]),
        "sample_efficiency": efficiency(local, frames),
        "training_efficiency": efficiency(local, opt_steps),
        "stability": stability(local),
    }


def iqm(values) -> float:
    """Interquartile mean: the mean after trimming int(n/4) values from each end (scipy's trim_mean(0.25))."""
    values = np.sort(np.asarray(values, dtype=float))
    cut = int(0.25 * len(values))
    kept = values[cut:len(values) - cut]
    return float(kept.mean()) if kept.size else float("nan")


def bootstrap_ci(values, statistic=iqm, samples: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of `statistic` over resampled `values`."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = values[rng.integers(0, values.size, size=(samples, values.size))]
    stats = np.array([statistic(row) for row in draws])
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def trial_metrics(sessions: list[dict], random_return: float) -> dict:
    """Aggregate sessions given as {"frames", "opt_steps", "returns"} checkpoint series (plus any other keys)."""
    per_session = [session_metrics(s["frames"], s["opt_steps"], s["returns"], random_return) for s in sessions]
    mean = {k: float(np.nanmean([m[k] for m in per_session])) if any(not math.isnan(m[k]) for m in per_session)
            else float("nan") for k in SESSION_KEYS}
    mean["consistency"] = consistency([strength(s["returns"], random_return) for s in sessions])
    scores = [m["final_return_ma"] for m in per_session]
    low, high = bootstrap_ci(scores)
    return {"score": mean["final_return_ma"], "mean": mean, "sessions": per_session,
            "iqm": {"final_return_ma": iqm(scores), "ci95": [low, high]}, "random_return": random_return}
