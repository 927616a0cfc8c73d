"""Bradley–Terry leaderboard: ours (labeling.ratings.leaderboard) against Chatbot Arena's way, one run.

    python bench/leaderboard.py [--battles 1000000] [--models 100] [--rounds 100]
                                [--style-rounds 4] [--seed 0]

Data: synthetic battles among M models with known strengths, uneven popularity (some models
play far more), a length effect on who wins (for style control), and ties from the Davidson
model (about 1 in 5 battles, split between "tie" and "tie (bothbad)").

1. Bootstrap, ties as half a win (both sides see the same Battles):
   reference  Chatbot Arena's tooling (FastChat's compute_bootstrap_bt): aggregate to unique
              (a, b, score) rows with np.unique, draw all rounds' multinomial counts over those
              rows, fit each round with scipy's L-BFGS-B (jac=True) on the BT log-likelihood,
              rounds spread over a ProcessPoolExecutor with all cores. One change: the
              tolerance is tightened (gtol 1e-10, ftol 0) so that the reference itself is
              accurate to well under 0.01 Elo; FastChat's 1e-6 is looser than the goal.
   ours       fit(battles, bootstrap=R): counts, one batched Newton solve for all rounds.
   Both draw the same resamples (same seed, same row order, rng.multinomial), so the
   interval comparison measures the fitting, not Monte Carlo noise; the Monte Carlo noise
   of 100 rounds (ours, seed 0 against seed 1) is printed for scale.
2. Style control: ours fit(style=True, ci="sandwich") against bootstrapping the style-controlled
   fit the reference way (per round: resample battles, scipy L-BFGS-B on model strengths plus
   the 4 style coefficients, with our ridge so that point estimates are comparable, rounds
   over the pool). One reference round on a million battles takes seconds, so --style-rounds
   rounds are timed and the time is extrapolated linearly to R rounds (said in the output).
3. Refit after 100 new votes: lb.counts.add(new) + fit(counts, ci="sandwich", previous=lb)
   against a cold fit(all battles, ci="sandwich") from the raw battles; also the
   style-controlled refit (sandwich) and a refit with R bootstrap rounds.

4. Robustness (labeling.ratings.robustness) of the sandwich fit: flip votes for every adjacent
   pair (greedy on this much data), provisional models and sampling shares; its time is
   printed beside the sandwich fit's, which it refits many times in batches.

Ratios are printed last, on lines starting with "ratio ". Absolute seconds on a shared
2-core machine are noise; the ratios come from one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path, where its other benchmarks would
# shadow standard modules of the same name (bench/queue.py vs. queue): use the repo root.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))
# One BLAS thread per process, for both sides (set before numpy loads): the reference's pool
# already has a process per core, and on a shared 2-core machine OpenBLAS threads that wait
# for each other turn millisecond matrix operations into tens of milliseconds.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from concurrent.futures import ProcessPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.optimize import minimize  # noqa: E402
from scipy.special import expit  # noqa: E402

from labeling.ratings.leaderboard import (  # noqa: E402
    ELO_SCALE,
    RIDGE,
    WINNERS,
    Battles,
    fit,
    make_battles,
    robustness,
)

LENGTH_EFFECT = 0.8  # nats per unit of (a − b)/(a + b) in length
DAVIDSON_NU = 0.5


# --- data -----------------------------------------------------------------------------------


def synthetic(n: int, m: int, seed: int) -> tuple[Battles, np.ndarray]:
    """n battles among m models; returns them and the true strengths (nats)."""
    rng = np.random.default_rng(seed)
    strength = rng.normal(0, 0.7, m)
    popularity = rng.lognormal(0, 0.7, m)
    popularity /= popularity.sum()
    a = rng.choice(m, n, p=popularity)
    b = rng.choice(m, n, p=popularity)
    while (same := np.flatnonzero(a == b)).size:
        b[same] = rng.choice(m, same.size, p=popularity)
    verbosity = rng.normal(6.0, 0.5, m)  # log tokens
    markdown = rng.uniform(0.2, 4.0, (m, 3))  # mean headers, list items, bold spans

    def side(models):
        length = np.round(rng.lognormal(verbosity[models], 0.4))
        marks = rng.poisson(markdown[models])
        return np.column_stack([length, marks]).astype(float)

    style_a, style_b = side(a), side(b)
    f_length = (style_a[:, 0] - style_b[:, 0]) / (style_a[:, 0] + style_b[:, 0])
    d = strength[a] - strength[b] + LENGTH_EFFECT * f_length
    z = np.exp(d / 2) + np.exp(-d / 2) + DAVIDSON_NU
    u = rng.random(n) * z
    code = np.where(u < np.exp(d / 2), 0, np.where(u < np.exp(d / 2) + DAVIDSON_NU, 2, 1))
    code[(code == 2) & (rng.random(n) < 0.3)] = 3  # some ties are "tie (bothbad)"
    # WINNERS order: model_a, model_b, tie, tie (bothbad)
    names = np.array([f"model-{i:03d}" for i in range(m)], dtype=object)
    winners = np.array(WINNERS, dtype=object)[code]
    battles = make_battles(names[a], names[b], winners, style_a=style_a, style_b=style_b)
    return battles, strength


# --- the reference (Chatbot Arena / FastChat style) ------------------------------------------


def preprocess_for_bt(battles: Battles):
    """FastChat's preprocess_for_bt: unique (a, b, score) rows and their counts."""
    n = len(battles)
    # sort=True (FastChat keeps first appearance) so rows come out in the order ours uses.
    index, models = pd.factorize(np.concatenate([battles.model_a, battles.model_b]), sort=True)
    matchups = np.column_stack([index[:n], index[n:]])
    outcomes = np.full(n, 0.5)
    outcomes[battles.winner == "model_a"] = 1.0
    outcomes[battles.winner == "model_b"] = 0.0
    schedule = np.column_stack([matchups, outcomes])
    rows, weights = np.unique(schedule, return_counts=True, axis=0)
    return rows[:, :2].astype(np.int64), rows[:, 2], weights, list(models)


def bt_loss_and_grad(ratings, matchups, outcomes, weights):
    """FastChat's bt_loss_and_grad, in Elo units (alpha = ln 10 / 400)."""
    logits = (ratings[matchups[:, 0]] - ratings[matchups[:, 1]]) / ELO_SCALE
    probs = expit(logits)
    loss = -((np.log(probs) * outcomes + np.log(1.0 - probs) * (1.0 - outcomes)) * weights).sum()
    g = -(outcomes - probs) * weights / ELO_SCALE
    m = len(ratings)
    grad = np.bincount(matchups[:, 0], g, m) - np.bincount(matchups[:, 1], g, m)
    return loss, grad


def fit_bt(weights, matchups, outcomes, m):
    result = minimize(
        bt_loss_and_grad,
        np.zeros(m),
        args=(matchups, outcomes, weights),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-10, "ftol": 0.0, "maxiter": 1000},
    )
    r = result.x
    return r - r.mean() + 1000.0


_WORKER: dict = {}


def _init_worker(data):
    """Each worker gets the rows once; a round then only ships its weights."""
    _WORKER.update(data)


def _bt_round(weights):
    return fit_bt(weights, _WORKER["matchups"], _WORKER["outcomes"], _WORKER["m"])


def reference_bootstrap(battles: Battles, rounds: int, seed: int, workers: int):
    matchups, outcomes, counts, models = preprocess_for_bt(battles)
    n, m = counts.sum(), len(models)
    point = fit_bt(counts / n, matchups, outcomes, m)
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=rounds)
    data = {"matchups": matchups, "outcomes": outcomes, "m": m}
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(data,)) as pool:
        boot = np.array(list(pool.map(_bt_round, draws / n)))
    low, high = np.quantile(boot, [0.025, 0.975], axis=0)
    return models, point, low, high


def contextual_loss_and_grad(params, m, matchups, features, outcomes, ridge):
    """FastChat's contextual_bt_loss_and_grad (style control), natural-log units."""
    theta, beta = params[:m], params[m:]
    d = theta[matchups[:, 0]] - theta[matchups[:, 1]] + features @ beta
    loss = (
        outcomes * np.logaddexp(0, -d) + (1 - outcomes) * np.logaddexp(0, d)
    ).sum() + 0.5 * ridge * (params @ params)
    g = expit(d) - outcomes
    grad = ridge * params
    grad[:m] += np.bincount(matchups[:, 0], g, m) - np.bincount(matchups[:, 1], g, m)
    grad[m:] += features.T @ g
    return loss, grad


def fit_contextual(matchups, features, outcomes, m):
    result = minimize(
        contextual_loss_and_grad,
        np.zeros(m + features.shape[1]),
        args=(m, matchups, features, outcomes, RIDGE),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-6, "ftol": 0.0, "maxiter": 1000},
    )
    return result.x


def _style_round(seed):
    matchups, features, outcomes, m = (_WORKER[k] for k in ("matchups", "features", "y", "m"))
    idx = np.random.default_rng(seed).integers(0, len(outcomes), len(outcomes))
    return fit_contextual(matchups[idx], features[idx], outcomes[idx], m)


def style_reference_data(battles: Battles):
    n = len(battles)
    index, models = pd.factorize(np.concatenate([battles.model_a, battles.model_b]), sort=True)
    matchups = np.column_stack([index[:n], index[n:]])
    outcomes = np.full(n, 0.5)
    outcomes[battles.winner == "model_a"] = 1.0
    outcomes[battles.winner == "model_b"] = 0.0
    total = battles.style_a + battles.style_b
    features = np.divide(
        battles.style_a - battles.style_b, total, out=np.zeros_like(total), where=total > 0
    )
    return matchups, features, outcomes, list(models)


# --- the run --------------------------------------------------------------------------------


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def robustness_line(board, fit_s: float) -> str:
    """Time the robustness report of a fitted board; one line of figures."""
    report, seconds = timed(robustness, board)
    flips = [r.flip_votes for r in report.rows if r.flip_votes is not None]
    methods = sorted({r.method for r in report.rows if r.method})
    fragile = sum("rests on" in w for w in report.warnings)
    return (
        f"ours robustness ({len(flips)} adjacent pairs, {'/'.join(methods) or 'none'}): "
        f"{seconds:.2f} s ({seconds / fit_s:.1f}x the sandwich fit's {fit_s:.2f} s); flip votes "
        f"median {np.median(flips) if flips else float('nan'):.0f}, min "
        f"{min(flips, default=0)}; {fragile} ranks rest on under 1% of the votes; sampling "
        f"ratio {report.sampling_ratio or 0:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--battles", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--style-rounds", type=int, default=0, help="default: 2 per core")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    style_rounds = args.style_rounds or 2 * workers

    # The data get their own seed: drawn from the same stream as the bootstrap's seed, the
    # resamples would be correlated with the data.
    battles, _ = synthetic(args.battles, args.models, args.seed + 1000)
    print(
        f"data: {len(battles):,} battles among {args.models} models "
        f"({(battles.winner != 'model_a').sum() - (battles.winner == 'model_b').sum():,} ties), "
        f"{workers} cores for the reference's process pool, "
        f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}"
    )

    # 1. bootstrap
    (models, ref_point, ref_low, ref_high), ref_s = timed(
        reference_bootstrap, battles, args.rounds, args.seed, workers
    )
    print(f"reference bootstrap ({args.rounds} rounds, scipy L-BFGS-B, pool): {ref_s:.2f} s")
    lb, ours_s = timed(fit, battles, bootstrap=args.rounds, seed=args.seed)
    print(f"ours      bootstrap ({args.rounds} rounds, batched Newton):       {ours_s:.2f} s")
    rows = {r.model: r for r in lb.rows}
    ours_point = np.array([rows[name].rating for name in models])
    ours_width = np.array([rows[name].ci_high - rows[name].ci_low for name in models])
    ref_width = ref_high - ref_low
    width_diff = np.abs(ours_width - ref_width) / ref_width
    print(
        f"max |rating difference| ours vs reference: {np.abs(ours_point - ref_point).max():.5f} Elo"
    )
    print(
        f"CI width relative difference: median {np.median(width_diff):.3%}, "
        f"max {width_diff.max():.3%} (goal within 5%)"
    )
    other = fit(battles, bootstrap=args.rounds, seed=args.seed + 1)
    other_rows = {r.model: r for r in other.rows}
    other_width = np.array([other_rows[n].ci_high - other_rows[n].ci_low for n in models])
    noise = np.abs(other_width - ours_width) / ours_width
    print(
        f"  for scale, Monte Carlo noise of {args.rounds} rounds (ours, seed {args.seed} vs "
        f"{args.seed + 1}): median {np.median(noise):.1%}, max {noise.max():.1%}"
    )
    sandwich, sandwich_s = timed(fit, battles, ci="sandwich")
    sandwich_rows = {r.model: r for r in sandwich.rows}
    sandwich_width = np.array([sandwich_rows[n].ci_high - sandwich_rows[n].ci_low for n in models])
    vs_boot = np.abs(sandwich_width - ours_width) / ours_width
    print(
        f"ours sandwich (no resampling): {sandwich_s:.2f} s; CI width vs bootstrap: median "
        f"{np.median(vs_boot):.1%}, max {vs_boot.max():.1%}"
    )

    # 2. style control
    style_lb, style_s = timed(fit, battles, style=True, ci="sandwich")
    print(
        f"ours style control, sandwich CIs: {style_s:.2f} s; style coefficients (Elo): "
        + ", ".join(f"{k} {v:+.1f}" for k, v in style_lb.style_coefficients.items())
        + f" (true length effect {LENGTH_EFFECT * ELO_SCALE:+.1f})"
    )
    davidson = fit(battles, style=True, ci="sandwich", ties="davidson")
    print(
        f"  (ties as half flatten the win curve of these Davidson-tie data; with ties='davidson' "
        f"the length effect is {davidson.style_coefficients['length']:+.1f} Elo, "
        f"ν = {davidson.settings['davidson_nu']:.3f}, true {DAVIDSON_NU})"
    )
    matchups, features, outcomes, style_models = style_reference_data(battles)
    m = len(style_models)
    ref_style_point, ref_style_point_s = timed(fit_contextual, matchups, features, outcomes, m)
    theta = ref_style_point[:m]
    ref_style_ratings = ELO_SCALE * (theta - theta.mean()) + 1000
    style_rows = {r.model: r.rating for r in style_lb.rows}
    diff = np.abs(np.array([style_rows[n] for n in style_models]) - ref_style_ratings).max()
    print(
        f"reference style fit (scipy L-BFGS-B, full data): {ref_style_point_s:.2f} s; "
        f"max |rating difference| vs ours {diff:.4f} Elo"
    )
    data = {"matchups": matchups, "features": features, "y": outcomes, "m": m}
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(data,)) as pool:
        start = time.perf_counter()
        list(pool.map(_style_round, range(style_rounds)))
        measured = time.perf_counter() - start
    style_ref_s = measured * args.rounds / style_rounds
    print(
        f"reference style bootstrap: {style_rounds} rounds measured on {workers} workers in "
        f"{measured:.1f} s, extrapolated linearly to {args.rounds} rounds: {style_ref_s:.0f} s"
    )

    # 3. refit after 100 new votes
    new, _ = synthetic(100, args.models, args.seed + 2000)
    start = time.perf_counter()
    refit = fit(sandwich.counts.add(new), ci="sandwich", previous=sandwich)
    refit_s = time.perf_counter() - start
    everything = make_battles(
        *(np.concatenate([getattr(battles, c), getattr(new, c)]) for c in ("model_a", "model_b")),
        np.concatenate([battles.winner, new.winner]),
    )
    cold, cold_s = timed(fit, everything, ci="sandwich")
    warm_vs_cold = max(abs(a.rating - b.rating) for a, b in zip(refit.rows, cold.rows, strict=True))
    print(
        f"refit after 100 new votes, lb.counts.add(new) + fit(ci='sandwich', previous=lb): "
        f"{refit_s:.3f} s (goal < 1 s); cold fit of all {len(everything):,} battles: "
        f"{cold_s:.3f} s; max |warm - cold| {warm_vs_cold:.1e} Elo"
    )
    start = time.perf_counter()
    fit(style_lb.counts.add(new), style=True, ci="sandwich", previous=style_lb)
    refit_style_s = time.perf_counter() - start
    print(
        f"refit, style control: lb.counts.add(new) + fit(style=True, ci='sandwich', "
        f"previous=lb): {refit_style_s:.3f} s"
    )
    start = time.perf_counter()
    fit(lb.counts.add(new), bootstrap=args.rounds, previous=lb)
    refit_boot_s = time.perf_counter() - start
    print(
        f"refit with {args.rounds} bootstrap rounds: {refit_boot_s:.3f} s (the resampling is "
        f"redone for the new total, so this costs about a cold bootstrap fit)"
    )

    # 4. robustness
    print(robustness_line(sandwich, sandwich_s))

    print(f"ratio bootstrap reference/ours: {ref_s / ours_s:.1f}x (goal >= 3x)")
    print(
        f"ratio style bootstrap (reference, extrapolated)/ours style sandwich: "
        f"{style_ref_s / style_s:.0f}x (goal >= 50x)"
    )
    print(f"ratio refit cold/warm (sandwich): {cold_s / refit_s:.1f}x (warm refit {refit_s:.3f} s)")


if __name__ == "__main__":
    main()
