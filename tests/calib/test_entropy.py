"""Entropy calibration against the reference algorithm and against ONNX Runtime's collection of the same tensors."""

from collections import Counter

import numpy as np
import pytest
from scipy.stats import entropy as kl

from clsx.calib import entropy
from clsx.calib.quantize import _entropy_collector

import onnxruntime.quantization.calibrate as cal


def reference_amax(hist, edges, num_bits=8, start_bin=128):
    """NVIDIA's ``_compute_amax_entropy`` (pytorch-quantization / ModelOpt), transcribed loop for loop."""
    bins = hist[:].astype(np.float64)
    bins[0] = bins[1]
    nbins = 1 << (num_bits - 1)
    divergences, arguments = [], []
    for i in range(start_bin, len(bins) + 1):
        space = np.linspace(0, i, num=nbins + 1)
        digitized = np.digitize(range(i), space) - 1
        digitized[bins[:i] == 0] = -1
        dens = np.zeros(nbins)
        for idx, d in enumerate(digitized):
            if d != -1:
                dens[d] += bins[idx]
        for key, val in Counter(digitized).items():
            if key != -1:
                dens[key] /= val
        new = np.array([dens[d] if d != -1 else 0.0 for d in digitized])
        new = new / new.sum()
        ref = np.array(bins[:i])
        ref[-1] += bins[i:].sum()
        divergences.append(kl(ref / ref.sum(), new))
        arguments.append(i)
    divergences = np.array(divergences)
    last_argmin = len(divergences) - 1 - np.argmin(divergences[::-1])
    return edges[arguments[last_argmin]]


def _tensors(rng):
    """Activation-like tensors: ReLU6 outputs with a saturated pile, a heavy-tailed residual, an image."""
    relu6 = np.clip(rng.normal(0.8, 1.5, (8, 16, 20, 20)), 0, 6).astype(np.float32)
    residual = (rng.laplace(0, 1.0, (8, 16, 20, 20)) * rng.choice([1, 1, 1, 8], (8, 16, 1, 1))).astype(np.float32)
    image = rng.uniform(-1, 1, (8, 3, 32, 32)).astype(np.float32)
    return {"relu6": relu6, "residual": residual, "image": image}


@pytest.mark.parametrize("name", ["relu6", "residual", "image"])
def test_thresholds_match_the_reference_algorithm(name):
    """Same |x| histogram (ONNX Runtime's own collector, 512 bins to keep the loop reference fast): clsx's
    vectorised search picks exactly the reference's bin edge."""
    x = _tensors(np.random.default_rng(0))[name]
    collector = cal.HistogramCollector("percentile", True, 512, 128, 99.9, "same")
    collector.collect_absolute_value({name: x})
    hist, edges, _, _ = collector.histogram_dict[name]
    assert entropy.entropy_threshold(hist, edges) == pytest.approx(float(reference_amax(hist, edges)), rel=1e-6)


def test_chunked_collection_matches_onnx_runtime_on_all_data_at_once():
    """clsx's collector fed in chunks (as the calibration job feeds it) against ONNX Runtime's histogram
    of every value at once, then the reference search: thresholds within 2 % of the tensor's maximum
    (chunks can only change the bin grid, never drop values: the old every-2nd-row subsampling and the
    7-bit signed search moved thresholds by 10-40 %)."""
    tensors = _tensors(np.random.default_rng(1))
    ours = _entropy_collector(cal, entropy.HISTOGRAM_BINS)
    for start in range(0, 8, 2):
        ours.collect({k: [v[start:start + 1], v[start + 1:start + 2]] for k, v in tensors.items()})
    result = ours.compute_collection_result()
    whole = cal.HistogramCollector("percentile", True, entropy.HISTOGRAM_BINS, 128, 99.9, "same")
    whole.collect_absolute_value(tensors)
    for name, x in tensors.items():
        hist, edges, _, _ = whole.histogram_dict[name]
        ref = entropy.entropy_threshold(hist, edges)  # equal to the reference loop (test above)
        amax = float(np.abs(x).max())
        low, high = float(result[name][0]), float(result[name][1])
        assert max(-low, high) == pytest.approx(ref, abs=0.02 * amax), name
        assert low >= float(x.min()) - 1e-6 and high <= amax + 1e-6


def test_onnx_runtime_entropy_calibrater_clips_relu6_too_hard():
    """Why clsx does not use ONNX Runtime's EntropyCalibrater search: on the same ReLU6 tensor its signed,
    128-level search (the old clsx setting) clips more than 10 % below the reference threshold."""
    x = _tensors(np.random.default_rng(0))["relu6"]
    ort = cal.HistogramCollector("entropy", True, 1024, 128, 99.9, "same")
    ort.collect({"relu6": x})
    ort_high = float(ort.compute_entropy()["relu6"][1])
    ours = _entropy_collector(cal, entropy.HISTOGRAM_BINS)
    ours.collect({"relu6": x})
    our_high = float(ours.compute_collection_result()["relu6"][1])
    assert ort_high < 0.9 * our_high, (ort_high, our_high)
