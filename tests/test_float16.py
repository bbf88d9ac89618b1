"""round_to_float16, fp16 compression's rounding: bitwise NumPy's float16 conversion, for
every kind of float32 (normal, subnormal in float16 or in float32, ties, overflow, inf,
NaN, signed zeros)."""
import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from numpy_dl.distributed.float16 import round_to_float16

EDGES = np.array([0.0, -0.0, 2 ** -25, 3 * 2 ** -25, 1.5 * 2 ** -24, 2 ** -24, 2 ** -14,
                  2 ** -14 * (1 - 2 ** -12), -2 ** -14 * (1 - 2 ** -24), 65504, 65520, 1e9,
                  np.inf, -np.inf, np.nan, 1e-45, -1e-45, 5.96e-8, 2.98e-8, 2.99e-8],
                 dtype=np.float32)


def numpy_rounding(values, scale):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow to inf, as NumPy warns
        return (values * scale).astype(np.float16)


def bits(array):
    return np.asarray(array, dtype=np.float16).view(np.uint16)


def rounded(values, scale):
    out = np.empty(values.size, dtype=np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return round_to_float16(values, np.float32(scale), out)


def test_edges_round_as_numpy_does():
    np.testing.assert_array_equal(bits(rounded(EDGES, 1.0)), bits(numpy_rounding(EDGES, 1.0)))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(values=hnp.arrays(np.float32, st.integers(1, 300),
                         elements=st.floats(width=32, allow_nan=True, allow_infinity=True)),
       scale=st.sampled_from([1.0, 0.5, 0.25, 1 / 3, 1 / 96]))
def test_any_float32_rounds_as_numpy_does(values, scale):
    expected = numpy_rounding(values, np.float32(scale))
    np.testing.assert_array_equal(bits(rounded(values, scale)), bits(expected))


def test_gradient_sized_values_round_as_numpy_does():
    values = (np.random.default_rng(0).standard_normal(100_000) * 1e-6).astype(np.float32)
    np.testing.assert_array_equal(bits(rounded(values, 0.5)), bits(numpy_rounding(values, 0.5)))


def test_float64_values_round_once_as_numpy_does():
    """A float64 param group: rounding through float32 first would round twice."""
    values = np.array([1 + 2 ** -11 + 2 ** -40, 2 ** -24 * (0.5 + 2 ** -30), 3.0],
                      dtype=np.float64)
    out = np.empty(values.size, dtype=np.float16)
    expected = values.astype(np.float16)
    np.testing.assert_array_equal(bits(round_to_float16(values, 1.0, out)), bits(expected))
    assert bits(expected)[0] == 0x3C01  # 1 + 2^-10: the tie broken by the 2^-40 upward
