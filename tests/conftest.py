"""Shared helpers: a float64 finite-difference gradient check, a guard that every op keeps
float32 in float32 (its output and the gradients it sends back), and `launch`, which runs
the command line in this process.
"""
import warnings

import numpy as np
import pytest

import numpy_dl as ndl
from numpy_dl.autograd import Tensor


def _project(out, weights):
    """sum(out * weights): one scalar whose gradient exercises every output element."""
    return float(np.sum(np.asarray(out, dtype=np.float64) * weights))


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar function `f` (of no arguments) w.r.t. array `x`,
    perturbed in place one element at a time."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, flat_grad = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = f()
        flat[i] = original - eps
        minus = f()
        flat[i] = original
        flat_grad[i] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(fn, *arrays, requires_grad=None, eps=1e-6, atol=1e-6, rtol=1e-5, seed=0):
    """Check autograd's gradients of `fn(*tensors)` against central differences in float64.

    `arrays` become float64 leaf tensors (those flagged in `requires_grad`, default all).
    The output is projected onto fixed random weights, so a wrong gradient for any single
    output element shows. Returns the analytic gradients for further checks.
    """
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    flags = requires_grad if requires_grad is not None else [True] * len(arrays)
    tensors = [ndl.tensor(a, requires_grad=flag, dtype=np.float64) for a, flag in zip(arrays, flags)]
    out = fn(*tensors)
    assert out.dtype == np.float64, f"float64 inputs gave a {out.dtype} output"
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    (out * Tensor(weights)).sum().backward()
    analytic = []
    for index, (tensor, flag) in enumerate(zip(tensors, flags)):
        if not flag:
            assert tensor.grad is None
            analytic.append(None)
            continue
        assert tensor.grad is not None, f"input {index} got no gradient"
        assert tensor.grad.shape == tensor.shape

        def f():
            fresh = [ndl.tensor(a, dtype=np.float64) for a in arrays]
            with ndl.no_grad():
                return _project(fn(*fresh).data, weights)
        expected = numeric_grad(f, arrays[index], eps)
        np.testing.assert_allclose(tensor.grad, expected, atol=atol, rtol=rtol,
                                   err_msg=f"gradient of input {index}")
        analytic.append(tensor.grad)
    return analytic


@pytest.fixture
def dtype_guard(monkeypatch):
    """Record every op whose backward returns a gradient of another dtype or shape than its
    input, or receives one of another dtype than its output. Yields the list of problems."""
    problems = []
    original = Tensor.__dict__["_make"].__func__

    def make(cls, data, parents, backward, name):
        out_dtype = np.asarray(data).dtype

        def checked(g):
            if g.dtype != out_dtype:
                problems.append(f"{name}: received a {g.dtype} gradient for a {out_dtype} output")
            grads = backward(g)
            for parent, grad in zip(parents, grads):
                if grad is None or not parent.requires_grad:
                    continue
                if grad.dtype != parent.dtype:
                    problems.append(f"{name}: {grad.dtype} gradient for a {parent.dtype} input")
                if grad.shape != parent.shape:
                    problems.append(f"{name}: gradient of shape {grad.shape} for input {parent.shape}")
            return grads
        return original(cls, data, parents, checked, name)

    monkeypatch.setattr(Tensor, "_make", classmethod(make))
    return problems


@pytest.fixture(autouse=True, scope="session")
def one_blas_thread():
    """One BLAS thread per test process: the suite's matrices are small, and MPI suites run
    several processes on few cores, where spinning BLAS threads only slow each other."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        yield


@pytest.fixture
def launch(capsys, monkeypatch):
    """launch(*argv) -> (exit code, stdout, stderr) of `python -m numpy_dl.launch ARGV`."""
    from numpy_dl.launch.cli import main
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main replaces it

    def run(*argv):
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return run
