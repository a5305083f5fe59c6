"""Is the challenger better than the champion? A test that may be looked at after every
label: a confidence sequence on the difference of their mean per-label score.

The method is the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha,
Kennedy and Ramdas, "Time-uniform central limit theory and asymptotic confidence
sequences" (Annals of Statistics, 2024; arXiv:2103.06476), applied as in its section on
randomised experiments: each label contributes an inverse-propensity weighted term

    psi_i = Z_i (Y_i - c_i) / p - (1 - Z_i) (Y_i - c_i) / (1 - p)

where Z_i says whether the challenger answered (with probability p, the rollout's
share), Y_i is the label's score (1 for a correct class, minus the squared or absolute
error for regression) and c_i the mean score of the labels before it. The mean of psi
estimates challenger minus champion whatever c_i is, as c_i is known before Z_i is
drawn; centring only shrinks the variance. With sigma_t the standard deviation of the
psi so far, the interval at t labels is

    mean(psi) +/- sqrt(2 v / (t^2 rho^2) * log(sqrt(v) / alpha)),  v = t sigma^2 rho^2 + 1

and the chance that it ever excludes the true difference, however often it is looked
at, tends to at most alpha. rho is fixed in advance to make the interval tightest near
`labels_hint` labels (the paper's choice of rho for a target sample size).
`bench/rollouts.py` measures the error rates on simulated rollouts. No decision is
taken before each arm has `min_labels` labels (MIN_LABELS by default): the interval is
asymptotic, and with a 10 % canary its first hundred labels hold ten of the
challenger's.

Decisions, with the model's tolerance d >= 0 on the same scale as the score
(`score_tolerance` converts the gate's):
promote when the lower end passes -d (better, or not worse by more than d), abort when
the upper end falls below -d (worse by more than d).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from mlops.contracts.model_definition import Metric

MIN_LABELS = 100
# Where the interval is made tightest: about where a five-point difference in accuracy is
# decided, 1,400 labels at a 50 % canary, 2,800 at 10 % (bench/rollouts.py).
LABELS_HINT = 2000
Floats = NDArray[np.float64]


class Decision(StrEnum):
    PROMOTE = "promote"
    ABORT = "abort"
    CONTINUE = "continue"


@dataclass(frozen=True)
class Interval:
    champion_labels: int
    challenger_labels: int
    difference: float  # challenger minus champion, in per-label score
    low: float
    high: float


def label_scores(metric: Metric, outputs: Floats, labels: Floats) -> Floats:
    """Each label's score, higher is better: its mean is the metric (accuracy), or
    minus it (mae), or minus its square (rmse: the mean squared error; also for r2,
    which orders versions on the same rows as the squared error does). f1_macro is not
    a mean over labels: accuracy stands for it."""
    if metric in (Metric.ACCURACY, Metric.F1_MACRO):
        return (outputs == labels).astype(np.float64)
    if metric is Metric.MAE:
        return -np.abs(outputs - labels)
    return -((outputs - labels) ** 2)


def score_tolerance(metric: Metric, tolerance: float, champion: Floats, labels: Floats) -> float:
    """The gate's tolerance (in its metric's units) on the per-label score's scale:
    the same for accuracy, f1_macro (accuracy stands for it) and mae; for rmse, what
    `tolerance` more rmse than the champion's adds to its mean squared error; for r2,
    `tolerance` of the labels' variance."""
    if tolerance == 0 or metric in (Metric.ACCURACY, Metric.F1_MACRO, Metric.MAE):
        return tolerance
    if len(labels) < 2:
        return 0.0
    if metric is Metric.RMSE:
        rmse = float(np.sqrt(np.mean((champion - labels) ** 2)))
        return 2 * rmse * tolerance + tolerance**2
    return tolerance * float(np.var(labels))


def _rho_squared(alpha: float, labels_hint: int) -> float:
    log_term = -2 * np.log(alpha)
    return float((log_term + np.log(log_term + 1)) / labels_hint)


def confidence_sequence(
    challenger: NDArray[np.bool_],
    scores: Floats,
    *,
    share: float,
    alpha: float,
    labels_hint: int = LABELS_HINT,
) -> tuple[Floats, Floats]:
    """The estimate of challenger minus champion after each label, and the interval's
    half-width; along the last axis (several runs at once as rows)."""
    z = challenger.astype(np.float64)
    t = np.arange(1, scores.shape[-1] + 1, dtype=np.float64)
    before = np.cumsum(scores, axis=-1) - scores
    centre = np.where(t > 1, before / np.maximum(t - 1, 1), 0.0)
    residual = scores - centre
    psi = z * residual / share - (1 - z) * residual / (1 - share)
    return _bounds(psi, alpha=alpha, labels_hint=labels_hint)


def _bounds(psi: Floats, *, alpha: float, labels_hint: int) -> tuple[Floats, Floats]:
    """The running mean of `psi` and the half-width of its asymptotic sequence."""
    t = np.arange(1, psi.shape[-1] + 1, dtype=np.float64)
    mean = np.cumsum(psi, axis=-1) / t
    variance = np.maximum(np.cumsum(psi**2, axis=-1) / t - mean**2, 1e-12)
    rho2 = _rho_squared(alpha, labels_hint)
    spread = t * variance * rho2 + 1
    half = np.sqrt(2 * spread / (t**2 * rho2) * np.log(np.sqrt(spread) / alpha))
    return mean, half


def decide(found: Interval, *, tolerance: float, min_labels: int = MIN_LABELS) -> Decision:
    if min(found.champion_labels, found.challenger_labels) < min_labels:
        return Decision.CONTINUE
    if found.low > -tolerance:
        return Decision.PROMOTE
    if found.high < -tolerance:
        return Decision.ABORT
    return Decision.CONTINUE


def first_decisions(
    challenger: NDArray[np.bool_],
    mean: Floats,
    half: Floats,
    *,
    tolerance: float,
    min_labels: int = MIN_LABELS,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """For each run (row): the label count at which it would first promote, and first
    abort (0: never), as `decide` would say when asked after every label."""
    taken = np.cumsum(challenger, axis=-1)
    labels = np.arange(1, mean.shape[-1] + 1)
    ready = (taken >= min_labels) & (labels - taken >= min_labels)
    promote = ready & (mean - half > -tolerance)
    abort = ready & (mean + half < -tolerance)

    def first(hit: NDArray[np.bool_]) -> NDArray[np.int64]:
        return np.where(hit.any(axis=-1), hit.argmax(axis=-1) + 1, 0)

    return first(promote), first(abort)


def paired_interval(differences: Floats, *, alpha: float) -> Interval | None:
    """Both sides answered each labelled request (a shadow): the interval on the mean
    of the paired differences (challenger's score minus champion's), no weighting."""
    if len(differences) == 0:
        return None
    mean, half = _bounds(differences, alpha=alpha, labels_hint=LABELS_HINT)
    return _last(mean, half, champion_labels=len(differences), challenger_labels=len(differences))


def interval(
    challenger: NDArray[np.bool_], scores: Floats, *, share: float, alpha: float
) -> Interval | None:
    """The interval after the last of these labels (in order of arrival); None without
    labels of both arms."""
    if not challenger.any() or challenger.all():
        return None
    mean, half = confidence_sequence(challenger, scores, share=share, alpha=alpha)
    taken = int(challenger.sum())
    return _last(mean, half, champion_labels=len(scores) - taken, challenger_labels=taken)


def _last(mean: Floats, half: Floats, *, champion_labels: int, challenger_labels: int) -> Interval:
    """The sequence's interval after its last label."""
    return Interval(
        champion_labels=champion_labels,
        challenger_labels=challenger_labels,
        difference=float(mean[-1]),
        low=float(mean[-1] - half[-1]),
        high=float(mean[-1] + half[-1]),
    )


@dataclass(frozen=True)
class Simulated:
    """Rollouts of a challenger of accuracy `challenger` against a champion of
    `champion`, decided as `decide` would after every label."""

    runs: int
    promoted: int
    aborted: int
    labels_to_promote: float | None  # median over the runs promoted
    labels_to_abort: float | None

    @property
    def undecided(self) -> int:
        return self.runs - self.promoted - self.aborted


def simulate(
    champion: float,
    challenger: float,
    *,
    runs: int,
    share: float,
    alpha: float,
    tolerance: float = 0.0,
    max_labels: int = 20_000,
    seed: int = 0,
    min_labels: int = MIN_LABELS,
) -> Simulated:
    """Each run's labels drawn at random: the arm with probability `share`, then a
    correct answer with that arm's accuracy. A run ends at its first decision."""
    rng = np.random.default_rng(seed)
    promote_at: list[NDArray[np.int64]] = []
    abort_at: list[NDArray[np.int64]] = []
    for start in range(0, runs, 100):  # 100 runs at a time bounds the memory
        rows = min(100, runs - start)
        arm = rng.random((rows, max_labels)) < share
        correct = rng.random((rows, max_labels)) < np.where(arm, challenger, champion)
        mean, half = confidence_sequence(arm, correct.astype(np.float64), share=share, alpha=alpha)
        promote, abort = first_decisions(
            arm, mean, half, tolerance=tolerance, min_labels=min_labels
        )
        # Whichever came first ends the run.
        promote_first = (promote > 0) & ((abort == 0) | (promote < abort))
        abort_first = (abort > 0) & ~promote_first
        promote_at.append(promote[promote_first])
        abort_at.append(abort[abort_first])
    promoted, aborted = np.concatenate(promote_at), np.concatenate(abort_at)
    return Simulated(
        runs=runs,
        promoted=len(promoted),
        aborted=len(aborted),
        labels_to_promote=float(np.median(promoted)) if len(promoted) else None,
        labels_to_abort=float(np.median(aborted)) if len(aborted) else None,
    )
