"""Label-free agreement between two sets of logits for the same images (reference vs candidate).

Used by export verification, INT8 calibration reports and ``clsx parity``: top-1 agreement, how
often the reference top-1 is within the candidate's top-k, mean Jaccard overlap of the top-k sets,
logit differences and the KL divergence of the softmax distributions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Agreement:
    images: int
    top1: float  # fraction of images whose top-1 class is the same
    ref_top1_in_topk: float  # fraction where the reference top-1 is in the candidate's top-k
    topk_jaccard: float  # mean |A ∩ B| / |A ∪ B| of the two top-k sets
    max_abs_diff: float
    mean_abs_diff: float
    mean_kl: float  # KL(softmax(ref) || softmax(candidate)), mean over images
    topk: int
    flips: tuple[int, ...] = ()  # indices of images whose top-1 differs

    @property
    def top1_count(self) -> int:
        """Images whose top-1 class is the same."""
        return self.images - len(self.flips)

    @property
    def top1_interval(self) -> tuple[float, float]:
        """95 % Wilson interval of the top-1 agreement over these ``images`` (:func:`wilson_interval`)."""
        return wilson_interval(self.top1_count, self.images)

    @property
    def top1_low(self) -> float:
        """The interval's lower bound: what the accuracy gates judge."""
        return self.top1_interval[0]

    def describe_top1(self) -> str:
        """``93.8 % (60/64; 95 % CI 85.0-97.5 %)``: the agreement with its sample size and interval."""
        low, high = self.top1_interval
        return f"{self.top1:.1%} ({self.top1_count}/{self.images}; 95% CI {100 * low:.1f}-{100 * high:.1f}%)"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["flips"] = list(self.flips)
        d["top1_count"] = self.top1_count
        d["top1_ci95"] = list(self.top1_interval)
        return d


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def topk_indices(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest logits per row, best first (stable for ties)."""
    k = min(k, logits.shape[1])
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def compare(ref: np.ndarray, cand: np.ndarray, topk: int = 5) -> Agreement:
    """Compare logits of shape (N, classes) from a reference and a candidate run."""
    if ref.shape != cand.shape:
        raise ValueError(f"logit shapes differ: reference {ref.shape} vs candidate {cand.shape}")
    n = ref.shape[0]
    if n == 0:
        raise ValueError("no images to compare")
    rk, ck = topk_indices(ref, topk), topk_indices(cand, topk)
    same1 = rk[:, 0] == ck[:, 0]
    in_topk = np.array([rk[i, 0] in ck[i] for i in range(n)])
    jacc = np.array([len(set(rk[i]) & set(ck[i])) / len(set(rk[i]) | set(ck[i])) for i in range(n)])
    diff = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
    p, q = softmax(ref), softmax(cand)
    kl = np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis=1)
    return Agreement(
        images=n,
        top1=float(same1.mean()),
        ref_top1_in_topk=float(in_topk.mean()),
        topk_jaccard=float(jacc.mean()),
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        mean_kl=float(max(kl.mean(), 0.0)),
        topk=int(min(topk, ref.shape[1])),
        flips=tuple(int(i) for i in np.flatnonzero(~same1)),
    )


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``successes / n`` (z = 1.96: 95 %).

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or n successes,
    which is what small evaluation sets need (``clsx val``): 10/10 correct gives about [0.72, 1.0].
    """
    if n < 1:
        raise ValueError(f"a proportion needs at least one trial; got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}; got {successes}")
    if z <= 0:
        raise ValueError(f"z must be positive; got {z}")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    return float(max(0.0, center - half)), float(min(1.0, center + half))
