import numpy as np
import pytest

from clsx.core.agreement import compare


def test_identical_logits_agree_fully():
    x = np.random.default_rng(0).normal(size=(8, 10)).astype(np.float32)
    a = compare(x, x.copy())
    assert (a.top1, a.ref_top1_in_topk, a.topk_jaccard, a.max_abs_diff, a.flips) == (1.0, 1.0, 1.0, 0.0, ())
    assert a.mean_kl == pytest.approx(0.0, abs=1e-9)


def test_flips_are_counted():
    ref = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    cand = np.array([[2.0, 3.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])  # first image: top-1 swapped with top-2
    a = compare(ref, cand, topk=2)
    assert a.top1 == 0.5 and a.flips == (0,)
    assert a.ref_top1_in_topk == 1.0 and a.topk_jaccard == 1.0
    assert a.max_abs_diff == 1.0 and a.mean_kl > 0
    b = compare(ref, cand[:, ::-1].copy(), topk=1)
    assert b.ref_top1_in_topk == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        compare(ref, cand[:, :3])
