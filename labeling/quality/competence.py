"""Labeler competence: the Dawid–Skene model (1979) fitted by EM, vectorised with numpy.

Each item i has an unknown true class z_i with prior pi; labeler j answers l given z with
probability theta[j, z, l] (their confusion matrix). EM alternates:
  E-step  T[i, c] ∝ pi_c * prod over i's labels of theta[j, c, l]   (in logs)
  M-step  theta[j, c, l] ∝ alpha + sum of T[i, c] over j's labels l; pi ∝ alpha + sum_i T[i, c]
starting from the (soft) majority vote, until the log-likelihood stops improving. alpha is a
small symmetric Dirichlet prior so that a labeler with few labels, or a class they never
used, gets no zero probability (a zero would veto an item's class for good).

A labeler's reliability is the probability that their label equals the true class,
sum_c pi_c theta[j, c, c]: about 1/2 for a coin between A and B, near 0 for a contrarian.
The work per iteration is two sparse matrix products over the labels: linear, no Python
loop over items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRIOR = 0.5  # Dirichlet pseudo-count per confusion cell and class (Jeffreys-like)
MAX_ITERATIONS = 200
# EM stops when the log-likelihood changes by less than this share: on a million labels,
# about one nat; running on to 1e-9 (twice the iterations) moved reliabilities by < 0.001.
TOLERANCE = 1e-6


@dataclass
class DawidSkene:
    posterior: np.ndarray  # (items, C): P(true class | labels)
    confusion: np.ndarray  # (labelers, C, C): theta[j, true, given]
    prior: np.ndarray  # (C,)
    log_likelihood: float
    iterations: int

    @property
    def reliability(self) -> np.ndarray:
        """(labelers,) P(label == true class) = sum_c pi_c theta[j, c, c]."""
        return np.einsum("c,jcc->j", self.prior, self.confusion)


def majority(item: np.ndarray, value: np.ndarray, n_items: int, n_classes: int) -> np.ndarray:
    """Soft majority vote: each item's share of labels per class (n_items, C)."""
    counts = np.bincount(item * n_classes + value, minlength=n_items * n_classes)
    counts = counts.reshape(n_items, n_classes).astype(float)
    total = counts.sum(1, keepdims=True)
    return np.divide(counts, total, out=np.full_like(counts, 1 / n_classes), where=total > 0)


def fit(
    item: np.ndarray,
    labeler: np.ndarray,
    value: np.ndarray,
    n_items: int,
    n_labelers: int,
    n_classes: int,
    *,
    prior: float = PRIOR,
    max_iterations: int = MAX_ITERATIONS,
    tolerance: float = TOLERANCE,
) -> DawidSkene:
    """Dawid–Skene by EM over labels (item, labeler, value), indices from 0.

    Both steps are products with one sparse incidence matrix A (items x (labeler, given)):
    the E-step's sums of log theta over each item's labels are A @ log theta, the M-step's
    sums of posteriors over each labeler's labels are A.T @ T (scipy's compiled loops, about
    twice as fast as gathers and bincounts over a million labels)."""
    from scipy import sparse

    C = n_classes
    cell = labeler.astype(np.int64) * C + value  # (labeler, given) per label
    A = sparse.csr_matrix((np.ones(len(item)), (item, cell)), shape=(n_items, n_labelers * C))
    At = A.T.tocsr()
    T = majority(item, value, n_items, C)  # (items, C)
    previous = -np.inf
    log_likelihood = -np.inf
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        # M-step: confusion rows from the current posteriors of the labels' items
        counts = (At @ T).reshape(n_labelers, C, C).transpose(0, 2, 1) + prior  # [j, true, given]
        theta = counts / counts.sum(2, keepdims=True)
        pi = T.sum(0) + prior
        pi /= pi.sum()
        # E-step: log posterior of every item's class, class-major so that the reductions
        # over the few classes are elementwise operations between long rows
        log_theta = np.log(theta).transpose(0, 2, 1).reshape(n_labelers * C, C)
        log_T = np.ascontiguousarray((A @ log_theta).T) + np.log(pi)[:, None]  # (C, items)
        top = np.maximum.reduce(log_T, axis=0)
        weights = np.exp(log_T - top)
        total = np.add.reduce(weights, axis=0)
        T = np.ascontiguousarray((weights / total).T)
        log_likelihood = float((top + np.log(total)).sum())
        if abs(log_likelihood - previous) <= tolerance * abs(log_likelihood):
            break
        previous = log_likelihood
    return DawidSkene(T, theta, pi, log_likelihood, iterations)
