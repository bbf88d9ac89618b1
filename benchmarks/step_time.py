"""Time one full training step (zero_grad, forward, loss, backward, Adam step) of the four
guide models at batch 128, and report ms/step, samples/s, GFLOP/s and step / GEMM bound.

    python benchmarks/step_time.py                      # numpy_dl alone, 1 and 2 threads
    python benchmarks/step_time.py --vs-torch           # PyTorch side by side, alternating
    python benchmarks/step_time.py --memory --vs-torch  # peak RSS of one ConvVAE process

The GEMM bound is the model's matmul FLOPs (3 x forward: forward, input and weight
gradients) divided by the float32 GEMM throughput measured in the same run with the same
thread count. With --vs-torch the same architectures, weights and losses run in PyTorch
(`pip install torch==2.13.0`), timed in alternating rounds so both see the same machine;
PyTorch is never a dependency of numpy_dl itself. Medians over rounds, warm-up excluded.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy_dl as ndl  # noqa: E402
from numpy_dl import functional as F  # noqa: E402
from numpy_dl import models, runtime  # noqa: E402
from numpy_dl.loss import MSELoss, VAELoss  # noqa: E402
from numpy_dl.optim import Adam  # noqa: E402

# As the launcher does; it tunes the process, so PyTorch's side runs with it too.
runtime.keep_freed_memory()

MODELS = {
    "ae": (lambda: models.Autoencoder(784, [512, 256], 64), (784,)),
    "vae": (lambda: models.VariationalAutoencoder(784, [512, 256], 64), (784,)),
    "conv-ae": (lambda: models.ConvAutoencoder(1, 32, 128, 28), (1, 28, 28)),
    "conv-vae": (lambda: models.ConvVariationalAutoencoder(1, 32, 128, 28), (1, 28, 28)),
}


def is_vae(name):
    return name.endswith("vae")


def forward_flops(model, input_shape):
    """Matmul FLOPs of one forward pass, counted by watching the GEMM-backed ops."""
    counted = []
    originals = {name: getattr(F, name) for name in ("linear", "conv2d", "conv_transpose2d")}

    def watch(name):
        def op(x, weight, *args, **kwargs):
            out = originals[name](x, weight, *args, **kwargs)
            if name == "linear":
                counted.append(2 * x.data.size // x.shape[-1] * weight.data.size)
            elif name == "conv2d":
                counted.append(2 * out.data.size * weight.data[0].size)
            else:
                counted.append(2 * x.data.size * weight.data[0].size)
            return out
        return op
    try:
        for name in originals:
            setattr(F, name, watch(name))
        with ndl.no_grad():
            model(ndl.tensor(np.zeros(input_shape, dtype=np.float32)))
    finally:
        for name, op in originals.items():
            setattr(F, name, op)
    return sum(counted)


def gemm_gflops(repeats=15):
    """Peak float32 GEMM throughput at the current BLAS thread count (best of repeats:
    a bound is what the hardware can do, not what a noisy moment allowed)."""
    a = np.random.default_rng(0).random((2048, 1024), dtype=np.float32)
    b = np.random.default_rng(1).random((1024, 512), dtype=np.float32)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * 2048 * 1024 * 512 / min(times) / 1e9


def numpy_dl_step(name, batch_size, wrap_optimizer=None, data_seed=0):
    """The model and a function doing one training step on a fixed random batch;
    `wrap_optimizer(model, optimizer)` may replace the Adam optimizer (scaling.py)."""
    model = MODELS[name][0]()
    optimizer = Adam(model.parameters(), lr=1e-3)
    if wrap_optimizer is not None:
        optimizer = wrap_optimizer(model, optimizer)
    criterion = VAELoss() if is_vae(name) else MSELoss()
    x = ndl.tensor(np.random.default_rng(data_seed).random((batch_size,) + MODELS[name][1],
                                                           dtype=np.float32))

    def step():
        optimizer.zero_grad()
        out = model(x)
        loss = criterion(out[0], x, out[1], out[2]) if is_vae(name) else criterion(out, x)
        loss.backward()
        optimizer.step()
    return model, step


def torch_step(name, model, batch_size):
    """The same architecture and weights in PyTorch, in its default configuration."""
    import torch
    mirror = to_torch(model)
    optimizer = torch.optim.Adam(mirror.parameters(), lr=1e-3)
    x = torch.from_numpy(np.random.default_rng(0).random((batch_size,) + MODELS[name][1],
                                                         dtype=np.float32))

    def step():
        optimizer.zero_grad()
        if is_vae(name):
            features = mirror.encoder(x)
            mu, logvar = mirror.fc_mu(features), mirror.fc_logvar(features)
            recon = mirror.decoder(mu + torch.exp(0.5 * logvar) * torch.randn_like(mu))
            kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)
            loss = (((recon - x) ** 2).flatten(1).sum(1) + kl).mean()
        else:
            loss = torch.nn.functional.mse_loss(mirror.decoder(mirror.encoder(x)), x)
        loss.backward()
        optimizer.step()
    return step


def to_torch(module):
    """A torch.nn copy of a numpy_dl module tree with the same weights."""
    import torch
    kind = type(module).__name__
    if kind == "Sequential":
        return torch.nn.Sequential(*[to_torch(child) for child in module])
    if kind in ("ReLU", "Sigmoid", "Tanh", "Identity"):
        return getattr(torch.nn, kind)()
    if kind == "Flatten":
        return torch.nn.Flatten(module.start_dim, module.end_dim)
    if kind == "Unflatten":
        return torch.nn.Unflatten(module.dim, module.unflattened_size)
    if kind == "Linear":
        layer = torch.nn.Linear(module.in_features, module.out_features)
    elif kind == "Conv2d":
        layer = torch.nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size,
                                module.stride, module.padding)
    elif kind == "ConvTranspose2d":
        layer = torch.nn.ConvTranspose2d(module.in_channels, module.out_channels,
                                         module.kernel_size, module.stride, module.padding,
                                         module.output_padding)
    else:
        container = torch.nn.Module()
        for child_name, child in module.named_children():
            setattr(container, child_name, to_torch(child))
        return container
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(module.weight.data.copy()))
        layer.bias.copy_(torch.from_numpy(module.bias.data.copy()))
    return layer


def time_rounds(steps, rounds, steps_per_round):
    """Median seconds per step of each step function, timed in alternating rounds."""
    for step in steps:
        step()
    samples = [[] for _ in steps]
    for _ in range(rounds):
        for i, step in enumerate(steps):
            start = time.perf_counter()
            for _ in range(steps_per_round):
                step()
            samples[i].append((time.perf_counter() - start) / steps_per_round)
    return [float(np.median(s)) for s in samples]


def run_timings(args):
    if args.vs_torch:
        import torch
        print(f"# numpy {np.__version__}, torch {torch.__version__}, batch {args.batch_size}")
    else:
        print(f"# numpy {np.__version__}, batch {args.batch_size}")
    header = f"{'model':9} {'thr':>3} {'ms/step':>8} {'samples/s':>9} {'GFLOP/s':>8} {'/bound':>7}"
    if args.vs_torch:
        header += f" {'torch ms':>9} {'ratio':>6}"
    print(header)
    for threads in args.threads:
        with threadpool_limits(threads):
            if args.vs_torch:
                torch.set_num_threads(threads)
            peak = gemm_gflops()
            for name in args.models:
                model, step = numpy_dl_step(name, args.batch_size)
                flops = 3 * forward_flops(model, (args.batch_size,) + MODELS[name][1])
                steps = [step] + ([torch_step(name, model, args.batch_size)] if args.vs_torch else [])
                per_round = args.steps if not name.startswith("conv") else max(1, args.steps // 4)
                seconds = time_rounds(steps, args.rounds, per_round)
                line = (f"{name:9} {threads:>3} {seconds[0] * 1e3:8.2f} "
                        f"{args.batch_size / seconds[0]:9.0f} {flops / seconds[0] / 1e9:8.1f} "
                        f"{seconds[0] / (flops / (peak * 1e9)):7.2f}")
                if args.vs_torch:
                    line += f" {seconds[1] * 1e3:9.2f} {seconds[0] / seconds[1]:6.2f}"
                print(line, flush=True)
            print(f"# GEMM throughput at {threads} thread(s): {peak:.0f} GFLOP/s")


def peak_rss_of(framework, batch_size, steps):
    """Peak resident memory (MiB) of a fresh process doing ConvVAE training steps."""
    make_step = ("step = s.torch_step('conv-vae', s.MODELS['conv-vae'][0](), %d)" if framework == "torch"
                 else "_, step = s.numpy_dl_step('conv-vae', %d)") % batch_size
    code = (f"import sys, resource; sys.argv = ['x']; "
            f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import step_time as s; {make_step}; [step() for _ in range({steps})]; "
            f"print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    return float(out.stdout.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round (MLPs)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--vs-torch", action="store_true", help="time PyTorch side by side")
    parser.add_argument("--memory", action="store_true",
                        help="report peak RSS of one ConvVAE training process instead")
    args = parser.parse_args()
    if args.memory:
        ours = peak_rss_of("numpy_dl", args.batch_size, 5)
        line = f"peak RSS, ConvVAE batch {args.batch_size}, 5 steps: numpy_dl {ours:.0f} MiB"
        if args.vs_torch:
            theirs = peak_rss_of("torch", args.batch_size, 5)
            line += f", torch {theirs:.0f} MiB"
        print(line)
        return
    run_timings(args)


if __name__ == "__main__":
    main()
