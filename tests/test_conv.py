"""conv2d and conv_transpose2d against direct loop references (plain Python loops over
every output element, float64): values and the gradients of input, weight and bias."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numpy_dl as ndl
from numpy_dl import functional as F
from numpy_dl.functional import conv as conv_module
from numpy_dl import nn
from numpy_dl.autograd import Tensor

from conftest import gradcheck


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# ---------------------------------------------------------------------- references
def ref_conv2d(x, w, b, stride, padding):
    """out[n, o, i, j] = b[o] + sum_{c,u,v} xpad[n, c, i*sh + u, j*sw + v] * w[o, c, u, v]."""
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    n_, c_, h, wd = x.shape
    o_, _, kh, kw = w.shape
    xp = np.zeros((n_, c_, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((n_, o_, oh, ow))
    for n in range(n_):
        for o in range(o_):
            for i in range(oh):
                for j in range(ow):
                    total = b[o] if b is not None else 0.0
                    for c in range(c_):
                        for u in range(kh):
                            for v in range(kw):
                                total += xp[n, c, i * sh + u, j * sw + v] * w[o, c, u, v]
                    out[n, o, i, j] = total
    return out


def ref_conv2d_grads(x, w, g, stride, padding):
    """The same loops, sending g[n, o, i, j] back to every term it multiplied."""
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    n_, c_, h, wd = x.shape
    o_, _, kh, kw = w.shape
    xp = np.zeros((n_, c_, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    gxp, gw, gb = np.zeros_like(xp), np.zeros_like(w), np.zeros(o_)
    for n in range(n_):
        for o in range(o_):
            for i in range(g.shape[2]):
                for j in range(g.shape[3]):
                    gb[o] += g[n, o, i, j]
                    for c in range(c_):
                        for u in range(kh):
                            for v in range(kw):
                                gxp[n, c, i * sh + u, j * sw + v] += g[n, o, i, j] * w[o, c, u, v]
                                gw[o, c, u, v] += g[n, o, i, j] * xp[n, c, i * sh + u, j * sw + v]
    return gxp[:, :, ph:ph + h, pw:pw + wd], gw, gb


def ref_conv_transpose2d(x, w, b, stride, padding, output_padding):
    """Each input pixel scatters x[n, c, i, j] * w[c, o, u, v] to output position
    (i*sh + u - ph, j*sw + v - pw); the output is (H-1)*s - 2p + k + output_padding."""
    (sh, sw), (ph, pw), (oph, opw) = _pair(stride), _pair(padding), _pair(output_padding)
    n_, c_, h, wd = x.shape
    _, o_, kh, kw = w.shape
    oh, ow = (h - 1) * sh - 2 * ph + kh + oph, (wd - 1) * sw - 2 * pw + kw + opw
    out = np.zeros((n_, o_, oh, ow))
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    for n in range(n_):
        for c in range(c_):
            for i in range(h):
                for j in range(wd):
                    for o in range(o_):
                        for u in range(kh):
                            for v in range(kw):
                                r, s = i * sh + u - ph, j * sw + v - pw
                                if 0 <= r < oh and 0 <= s < ow:
                                    out[n, o, r, s] += x[n, c, i, j] * w[c, o, u, v]
    return out


def ref_conv_transpose2d_grads(x, w, g, stride, padding):
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    n_, c_, h, wd = x.shape
    _, o_, kh, kw = w.shape
    oh, ow = g.shape[2:]
    gx, gw, gb = np.zeros_like(x), np.zeros_like(w), g.sum(axis=(0, 2, 3))
    for n in range(n_):
        for c in range(c_):
            for i in range(h):
                for j in range(wd):
                    for o in range(o_):
                        for u in range(kh):
                            for v in range(kw):
                                r, s = i * sh + u - ph, j * sw + v - pw
                                if 0 <= r < oh and 0 <= s < ow:
                                    gx[n, c, i, j] += g[n, o, r, s] * w[c, o, u, v]
                                    gw[c, o, u, v] += g[n, o, r, s] * x[n, c, i, j]
    return gx, gw, gb


def test_references_agree_with_hand_computed_values():
    """The references themselves, on cases small enough to do by hand."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    np.testing.assert_array_equal(ref_conv2d(x, w, np.array([0.5]), 1, 0)[0, 0],
                                  [[-3.5, -3.5], [-3.5, -3.5]])
    # transposed: a single pixel stamps the kernel at stride offsets
    x = np.array([[[[1.0, 2.0]]]])
    w = np.array([[[[1.0, 10.0]]]])
    np.testing.assert_array_equal(ref_conv_transpose2d(x, w, None, 3, 0, 1)[0, 0],
                                  [[1.0, 10.0, 0.0, 2.0, 20.0, 0.0], [0.0] * 6])
    np.testing.assert_array_equal(ref_conv_transpose2d(x, w, None, 3, (0, 1), 0)[0, 0],
                                  [[10.0, 0.0, 2.0]])


# ---------------------------------------------------------------------- conv2d
CONV2D = [
    # (x shape, out channels, kernel, stride, padding)
    ((2, 3, 5, 6), 2, (3, 3), 1, 0),
    ((2, 2, 6, 5), 3, (3, 2), 2, 1),
    ((1, 3, 7, 5), 2, (2, 3), (3, 1), (2, 0)),
    ((2, 1, 4, 4), 2, (1, 1), 1, 0),
    ((1, 2, 5, 7), 2, (5, 3), (1, 2), (2, 1)),
    ((2, 2, 7, 5), 3, (3, 3), 3, 1),
    ((1, 2, 7, 7), 2, (4, 4), 2, 2),
    ((1, 2, 2, 2), 2, (3, 3), 1, 1),
    ((1, 1, 3, 8), 1, (3, 1), (1, 3), (0, 2)),
    ((1, 2, 3, 3), 2, (1, 1), 1, 1),  # the border outputs' windows are all padding
    ((2, 16, 7, 7), 3, (3, 3), 2, 1),  # 16 channels and more: patches and products
    ((1, 17, 4, 5), 16, (3, 2), 1, (1, 0)),  # take the other memory layouts
]


@pytest.mark.parametrize("xshape, out_channels, kernel, stride, padding", CONV2D)
def test_conv2d_matches_loop_reference(xshape, out_channels, kernel, stride, padding):
    rng = np.random.default_rng(sum(xshape) + out_channels)
    x = rng.standard_normal(xshape)
    w = rng.standard_normal((out_channels, xshape[1]) + kernel)
    b = rng.standard_normal(out_channels)
    expected = ref_conv2d(x, w, b, stride, padding)

    xt = ndl.tensor(x, requires_grad=True, dtype=np.float64)
    wt = ndl.tensor(w, requires_grad=True, dtype=np.float64)
    bt = ndl.tensor(b, requires_grad=True, dtype=np.float64)
    out = F.conv2d(xt, wt, bt, stride=stride, padding=padding)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-10)

    g = rng.standard_normal(expected.shape)
    out.backward(g)
    gx, gw, gb = ref_conv2d_grads(x, w, g, stride, padding)
    np.testing.assert_allclose(xt.grad, gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(wt.grad, gw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(bt.grad, gb, rtol=1e-10, atol=1e-10)

    # float32 computes the same values, in float32
    out32 = F.conv2d(ndl.tensor(x), ndl.tensor(w), ndl.tensor(b), stride=stride, padding=padding)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32.data, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("xshape, out_channels, kernel, stride, padding", CONV2D[:4])
def test_conv2d_gradients_match_finite_differences_of_the_reference(
        xshape, out_channels, kernel, stride, padding):
    """A second, independent gradient reference: central differences of the loop reference."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xshape)
    w = rng.standard_normal((out_channels, xshape[1]) + kernel)
    b = rng.standard_normal(out_channels)
    g = rng.standard_normal(ref_conv2d(x, w, b, stride, padding).shape)
    xt, wt, bt = (ndl.tensor(a, requires_grad=True, dtype=np.float64) for a in (x, w, b))
    F.conv2d(xt, wt, bt, stride, padding).backward(g)
    for array, analytic in ((x, xt.grad), (w, wt.grad), (b, bt.grad)):
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            original = array[index]
            array[index] = original + 1e-6
            plus = np.sum(ref_conv2d(x, w, b, stride, padding) * g)
            array[index] = original - 1e-6
            minus = np.sum(ref_conv2d(x, w, b, stride, padding) * g)
            array[index] = original
            numeric[index] = (plus - minus) / 2e-6
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------- conv_transpose2d
CONV_T = [
    # (x shape, out channels, kernel, stride, padding, output_padding)
    ((2, 3, 3, 4), 2, (3, 3), 1, 0, 0),
    ((2, 2, 4, 3), 3, (3, 3), 2, 1, 1),
    ((1, 3, 3, 3), 2, (3, 2), (2, 3), (0, 1), (1, 2)),
    ((2, 2, 3, 3), 2, (4, 4), 2, 1, 0),
    ((1, 2, 3, 4), 3, (2, 3), 3, 2, 2),
    ((2, 1, 3, 2), 2, (1, 1), 2, 0, 1),
    ((1, 2, 3, 5), 2, (5, 3), 3, (1, 2), (0, 1)),
    ((1, 2, 5, 5), 1, (3, 3), 2, 2, 1),
    ((2, 3, 1, 1), 2, (2, 2), 1, 0, 0),
    ((1, 2, 4, 4), 2, (1, 1), 1, 1, 0),  # the border pixels reach only the cropped padding
    ((2, 3, 4, 4), 16, (3, 3), 2, 1, 1),  # 16 channels and more: patches and products
    ((1, 16, 3, 4), 17, (2, 3), 1, (0, 1), 0),  # take the other memory layouts
]


@pytest.mark.parametrize("xshape, out_channels, kernel, stride, padding, output_padding", CONV_T)
def test_conv_transpose2d_matches_loop_reference(xshape, out_channels, kernel, stride, padding,
                                                 output_padding):
    rng = np.random.default_rng(sum(xshape) + 7 * out_channels)
    x = rng.standard_normal(xshape)
    w = rng.standard_normal((xshape[1], out_channels) + kernel)
    b = rng.standard_normal(out_channels)
    expected = ref_conv_transpose2d(x, w, b, stride, padding, output_padding)

    xt, wt, bt = (ndl.tensor(a, requires_grad=True, dtype=np.float64) for a in (x, w, b))
    out = F.conv_transpose2d(xt, wt, bt, stride=stride, padding=padding,
                             output_padding=output_padding)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-10)

    g = rng.standard_normal(expected.shape)
    out.backward(g)
    gx, gw, gb = ref_conv_transpose2d_grads(x, w, g, stride, padding)
    np.testing.assert_allclose(xt.grad, gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(wt.grad, gw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(bt.grad, gb, rtol=1e-10, atol=1e-10)

    out32 = F.conv_transpose2d(ndl.tensor(x), ndl.tensor(w), ndl.tensor(b), stride, padding,
                               output_padding)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32.data, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("xshape, out_channels, kernel, stride, padding, output_padding",
                         CONV_T[1:4] + CONV_T[-1:])
def test_conv_transpose2d_gradcheck(xshape, out_channels, kernel, stride, padding,
                                    output_padding):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(xshape)
    w = rng.standard_normal((xshape[1], out_channels) + kernel)
    b = rng.standard_normal(out_channels)
    gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding, output_padding),
              x, w, b)


@pytest.mark.parametrize("xshape, out_channels, kernel, stride, padding, output_padding",
                         [c for c in CONV_T if c[0][1] > 0])
def test_conv_transpose2d_is_the_adjoint_of_conv2d(xshape, out_channels, kernel, stride, padding,
                                                   output_padding):
    """<conv2d(y, w), x> == <y, conv_transpose2d(x, w)> for the same weight."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xshape)
    w = rng.standard_normal((xshape[1], out_channels) + kernel)
    y = rng.standard_normal(ref_conv_transpose2d(x, w, None, stride, padding, output_padding).shape)
    t = F.conv_transpose2d(ndl.tensor(x, dtype=np.float64), ndl.tensor(w, dtype=np.float64),
                           stride=stride, padding=padding, output_padding=output_padding)
    c = F.conv2d(ndl.tensor(y, dtype=np.float64), ndl.tensor(w, dtype=np.float64),
                 stride=stride, padding=padding)
    assert c.shape == x.shape
    np.testing.assert_allclose(np.sum(c.data * x), np.sum(y * t.data), rtol=1e-10)


def test_conv_layers_chain_on_strided_outputs():
    """A conv's output (a transposed view of NHWC memory) feeds the next conv correctly."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2, 6, 6))
    w1, b1 = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    w2, b2 = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(2)
    mid = ref_conv2d(x, w1, b1, 2, 1)
    expected = ref_conv_transpose2d(mid, w2, b2, 2, 1, 1)
    out = gradcheck(lambda x, w1, b1, w2, b2: F.conv_transpose2d(
        F.conv2d(x, w1, b1, 2, 1), w2, b2, 2, 1, 1), x, w1, b1, w2, b2)
    assert len(out) == 5
    got = F.conv_transpose2d(F.conv2d(ndl.tensor(x, dtype=np.float64), ndl.tensor(w1, dtype=np.float64),
                                      ndl.tensor(b1, dtype=np.float64), 2, 1),
                             ndl.tensor(w2, dtype=np.float64), ndl.tensor(b2, dtype=np.float64),
                             2, 1, 1)
    assert got.shape == x.shape
    np.testing.assert_allclose(got.data, expected, rtol=1e-10)


def test_gradient_wrt_non_contiguous_input():
    rng = np.random.default_rng(5)
    x = ndl.tensor(rng.standard_normal((2, 5, 5, 3)), requires_grad=True, dtype=np.float64)
    w = ndl.tensor(rng.standard_normal((2, 3, 2, 2)), dtype=np.float64)
    out = F.conv2d(x.permute(0, 3, 1, 2), w, stride=2)
    expected = ref_conv2d(x.data.transpose(0, 3, 1, 2), w.data, None, 2, 0)
    np.testing.assert_allclose(out.data, expected, rtol=1e-10)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    gx, _, _ = ref_conv2d_grads(x.data.transpose(0, 3, 1, 2), w.data, g, 2, 0)
    np.testing.assert_allclose(x.grad, gx.transpose(0, 2, 3, 1), rtol=1e-10)


# ---------------------------------------------------------------------- layers and errors
@pytest.mark.parametrize("size", [5, 7, 14, 28, 9])
def test_decoder_reproduces_encoder_sizes(size):
    """Conv2d(k=3, s=2, p=1) then ConvTranspose2d(k=3, s=2, p=1, output_padding) restores
    any size when output_padding = (size + 1) % 2."""
    enc = nn.Conv2d(1, 2, 3, stride=2, padding=1)
    dec = nn.ConvTranspose2d(2, 1, 3, stride=2, padding=1, output_padding=(size + 1) % 2)
    x = ndl.tensor(np.zeros((1, 1, size, size)))
    assert dec(enc(x)).shape == (1, 1, size, size)


def test_conv_layers_match_functional():
    ndl.manual_seed(0)
    conv = nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0))
    deconv = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1)
    assert conv.weight.shape == (3, 2, 3, 2) and conv.bias.shape == (3,)
    assert deconv.weight.shape == (3, 2, 3, 3) and deconv.bias.shape == (2,)
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 4)).astype(np.float32)
    y = conv(x)
    np.testing.assert_allclose(y.data, ref_conv2d(x, conv.weight.data, conv.bias.data, (2, 1),
                                                  (1, 0)), rtol=1e-4, atol=1e-5)
    z = deconv(y)
    np.testing.assert_allclose(z.data, ref_conv_transpose2d(y.data, deconv.weight.data,
                                                            deconv.bias.data, 2, 1, 1),
                               rtol=1e-4, atol=1e-5)
    assert y.dtype == z.dtype == np.float32


def test_conv_layer_without_bias():
    conv = nn.Conv2d(1, 2, 3, bias=False)
    assert conv.bias is None
    assert [name for name, _ in conv.named_parameters()] == ["weight"]
    out = conv(np.ones((1, 1, 3, 3), dtype=np.float32))
    np.testing.assert_allclose(out.data.reshape(2), conv.weight.data.sum(axis=(1, 2, 3)), rtol=1e-5)


def test_conv_wrong_channels_errors_name_the_layer_and_shapes():
    conv = nn.Conv2d(3, 8, 3)
    with pytest.raises(ValueError) as info:
        conv(np.zeros((2, 1, 5, 5), dtype=np.float32))
    message = str(info.value)
    assert "Conv2d" in message and "3" in message and "(2, 1, 5, 5)" in message
    deconv = nn.ConvTranspose2d(4, 2, 3)
    with pytest.raises(ValueError) as info:
        deconv(np.zeros((2, 3, 5, 5), dtype=np.float32))
    assert "ConvTranspose2d" in str(info.value) and "(2, 3, 5, 5)" in str(info.value)
    with pytest.raises(ValueError, match=r"Conv2d.*\(2, 5, 5\)"):
        conv(np.zeros((2, 5, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"conv2d.*\(2, 1, 5, 5\)"):
        F.conv2d(ndl.tensor(np.zeros((2, 1, 5, 5))), ndl.tensor(np.zeros((8, 3, 3, 3))))


def test_conv_errors_for_impossible_geometry():
    with pytest.raises(ValueError, match="kernel"):
        F.conv2d(ndl.tensor(np.zeros((1, 1, 2, 2))), ndl.tensor(np.zeros((1, 1, 3, 3))))
    with pytest.raises(ValueError, match="output_padding"):
        F.conv_transpose2d(ndl.tensor(np.zeros((1, 1, 2, 2))), ndl.tensor(np.zeros((1, 1, 3, 3))),
                           stride=2, output_padding=2)
    with pytest.raises(ValueError, match="padding"):
        F.conv2d(ndl.tensor(np.zeros((1, 1, 4, 4))), ndl.tensor(np.zeros((1, 1, 3, 3))), padding=-1)
    with pytest.raises(ValueError, match="stride"):
        F.conv2d(ndl.tensor(np.zeros((1, 1, 4, 4))), ndl.tensor(np.zeros((1, 1, 3, 3))), stride=0)
    with pytest.raises(ValueError, match="stride"):
        nn.ConvTranspose2d(1, 1, 3, stride=(1, 0))(np.zeros((1, 1, 4, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="floating"):
        F.conv2d(ndl.tensor(np.zeros((1, 1, 4, 4), dtype=np.int64)),
                 ndl.tensor(np.zeros((1, 1, 3, 3))))


@pytest.mark.parametrize("workspace_samples", [1, 2])
@pytest.mark.parametrize("transposed", [False, True])
def test_patch_matrices_a_run_of_samples_at_a_time_give_the_same_results(
        monkeypatch, workspace_samples, transposed):
    """A batch whose patch matrices exceed the workspace is taken a run of samples at a
    time (the last run shorter): forward and all gradients still match the loop
    reference, for a layer in border classes (7x7, stride 2) and one padded whole (14x14)."""
    rng = np.random.default_rng(workspace_samples)
    for size in (7, 14):
        x = rng.standard_normal((5, 3, size, size))
        b = rng.standard_normal(2)
        if transposed:
            w = rng.standard_normal((3, 2, 3, 3))
            op, reference = F.conv_transpose2d, ref_conv_transpose2d
            reference_grads = ref_conv_transpose2d_grads
            args = (2, 1, 1)
            patch_bytes = size * size * 9 * 2 * 8  # backward's, of the output gradient
        else:
            w = rng.standard_normal((2, 3, 3, 3))
            op, reference, reference_grads = F.conv2d, ref_conv2d, ref_conv2d_grads
            args = (2, 1)
            patch_bytes = ((size + 1) // 2) ** 2 * 9 * 3 * 8
        monkeypatch.setattr(conv_module, "PATCH_WORKSPACE_BYTES", workspace_samples * patch_bytes)
        expected = reference(x, w, b, *args)
        xt, wt, bt = (ndl.tensor(a, requires_grad=True, dtype=np.float64) for a in (x, w, b))
        out = op(xt, wt, bt, *args)
        np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-10)
        g = rng.standard_normal(expected.shape)
        out.backward(g)
        for analytic, exact in zip((xt.grad, wt.grad, bt.grad),
                                   reference_grads(x, w, g, *args[:2])):
            np.testing.assert_allclose(analytic, exact, rtol=1e-10, atol=1e-10)


@st.composite
def geometries(draw):
    """A convolution's shapes (either direction), with channel counts on both sides of 16
    (where patch matrices and adjoint products change layout) and a workspace from one
    sample's patches up to no limit."""
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kh)), draw(st.integers(0, kw)))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    channels = st.sampled_from([1, 2, 3, 15, 16, 17])
    return dict(n=draw(st.integers(0, 3)), c=draw(channels), o=draw(channels), h=h, w=w,
                kernel=(kh, kw), stride=stride, padding=padding,
                workspace=draw(st.sampled_from([1, 2000, 1 << 40])))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(geometries(), st.booleans())
def test_any_geometry_and_workspace_matches_the_loop_reference(geometry, transposed):
    """Fuzzed shapes, strides, padding and patch workspaces, both directions: values and
    the three gradients against the loop references."""
    g = geometry
    rng = np.random.default_rng(0)
    original_workspace = conv_module.PATCH_WORKSPACE_BYTES
    conv_module.PATCH_WORKSPACE_BYTES = g["workspace"]
    try:
        x = rng.standard_normal((g["n"], g["c"], g["h"], g["w"]))
        b = rng.standard_normal(g["o"])
        if transposed:
            output_padding = tuple(min(s - 1, p) for s, p in zip(g["stride"], g["padding"]))
            full = [(size - 1) * s + k + op for size, s, k, op in
                    zip((g["h"], g["w"]), g["stride"], g["kernel"], output_padding)]
            if any(f - 2 * p < 1 for f, p in zip(full, g["padding"])):
                return  # the padding crops every output away
            w = rng.standard_normal((g["c"], g["o"]) + g["kernel"])
            args = (g["stride"], g["padding"])
            expected = ref_conv_transpose2d(x, w, b, *args, output_padding)
            op = lambda *t: F.conv_transpose2d(*t, *args, output_padding)
            reference_grads = ref_conv_transpose2d_grads
        else:
            if any(size + 2 * p < k for size, p, k in
                   zip((g["h"], g["w"]), g["padding"], g["kernel"])):
                return  # the kernel is larger than the padded input
            w = rng.standard_normal((g["o"], g["c"]) + g["kernel"])
            args = (g["stride"], g["padding"])
            expected = ref_conv2d(x, w, b, *args)
            op = lambda *t: F.conv2d(*t, *args)
            reference_grads = ref_conv2d_grads
        xt, wt, bt = (ndl.tensor(a, requires_grad=True, dtype=np.float64) for a in (x, w, b))
        out = op(xt, wt, bt)
        np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-10)
        grad = rng.standard_normal(expected.shape)
        out.backward(grad)
        for analytic, exact in zip((xt.grad, wt.grad, bt.grad),
                                   reference_grads(x, w, grad, *args)):
            np.testing.assert_allclose(analytic, exact, rtol=1e-10, atol=1e-10)
    finally:
        conv_module.PATCH_WORKSPACE_BYTES = original_workspace


@pytest.mark.parametrize("transposed", [False, True])
def test_an_empty_batch_gives_empty_outputs_and_zero_weight_gradients(transposed):
    """As PyTorch: a batch of no samples convolves to no samples, and backward gives the
    weights zero gradients (no samples contributed)."""
    x = ndl.tensor(np.ones((0, 3, 5, 5)), requires_grad=True)
    w = ndl.tensor(np.ones((3, 4, 3, 3) if transposed else (4, 3, 3, 3)), requires_grad=True)
    b = ndl.tensor(np.ones(4), requires_grad=True)
    out = (F.conv_transpose2d(x, w, b, 2, 1, 1) if transposed else F.conv2d(x, w, b, 1, 1))
    assert out.shape == ((0, 4, 10, 10) if transposed else (0, 4, 5, 5))
    out.sum().backward()
    assert x.grad.shape == x.shape
    np.testing.assert_array_equal(w.grad, np.zeros(w.shape))
    np.testing.assert_array_equal(b.grad, np.zeros(4))


def test_conv_no_grad_builds_no_graph():
    conv = nn.Conv2d(1, 1, 3)
    with ndl.no_grad():
        out = conv(np.ones((1, 1, 4, 4), dtype=np.float32))
    assert not out.requires_grad and isinstance(out, Tensor)


def test_conv2d_keeps_neither_the_padded_input_nor_the_patch_matrix_for_backward():
    """The patch matrix is 9 times the input for a 3x3 kernel; backward builds what it
    needs again, so the graph holds only the weights' matrix."""
    x = ndl.tensor(np.ones((8, 4, 10, 10), dtype=np.float32), requires_grad=True)
    layer = nn.Conv2d(4, 6, 3, padding=1)
    out = layer(x)
    held = [cell.cell_contents for cell in out._backward.__closure__
            if isinstance(cell.cell_contents, np.ndarray)]
    assert held and max(array.size for array in held) <= layer.weight.data.size
