"""What every example shares, so that each script holds only its own idea: the built-in
real digits split into a training and a test set, data-parallel training that is the same
code in one process and under `mpirun -n 2`, and labelled pictures.

Training here is the loop of the README's "Training on several ranks" written once:
rank 0's weights are broadcast, every rank reads its shard of each global batch through a
DistributedSampler, the DistributedOptimizer averages the gradients before each Adam step,
and the loss printed is the mean over all ranks' samples. Everything after training
(figures, pictures) runs on rank 0 alone.
"""
import argparse
import os

import matplotlib

matplotlib.use("Agg")  # files only: examples run on clusters without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import numpy_dl as ndl  # noqa: E402
from numpy_dl import distributed  # noqa: E402
from numpy_dl.data import DataLoader, DistributedSampler, TensorDataset, datasets  # noqa: E402
from numpy_dl.optim import Adam  # noqa: E402

TEST_SIZE = 1000


def arguments(description, epochs, batch_size=64, lr=1e-3):
    """The options every example takes, with its own defaults; an example adds its own
    options to the parser before calling parse_args()."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=epochs, help=f"training epochs ({epochs})")
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"global batch size, split over the ranks ({batch_size})")
    parser.add_argument("--lr", type=float, default=lr, help=f"Adam's learning rate ({lr})")
    parser.add_argument("--train-size", type=int, default=None,
                        help="train on the first N training digits only (all 4000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and noise (0)")
    parser.add_argument("--out", default=None,
                        help="folder for the pictures (examples-output/<script name>)")
    return parser


def output_folder(args, name):
    """args.out, or examples-output/NAME under the current directory; created."""
    folder = args.out or os.path.join("examples-output", name)
    os.makedirs(folder, exist_ok=True)
    return folder


def load_digits(shape="flat", train_size=None):
    """The 5,000 built-in MNIST digits in [0, 1], split the same way every run into 4,000
    for training and 1,000 for testing: (x_train, y_train, x_test, y_test). `shape` is
    "flat" for (N, 784) rows, as the MLP models take, or "image" for (N, 1, 28, 28)."""
    images, labels = datasets.load_mnist_5k()
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]
    if shape == "flat":
        images = images.reshape(len(images), -1)
    train_end = len(images) - TEST_SIZE if train_size is None else train_size
    return (images[:train_end], labels[:train_end],
            images[-TEST_SIZE:], labels[-TEST_SIZE:])


def train(model, batch_loss, arrays, args, comm=None):
    """Train `model` with Adam for args.epochs epochs over the rows of `arrays` (a tuple of
    equally long arrays), in global batches of args.batch_size split over the ranks.

    batch_loss(model, *batch) is called with this rank's rows of each array, as float32
    NumPy arrays, and returns the scalar loss Tensor to minimize. Prints the mean loss over
    all ranks after each epoch (rank 0) and returns the last one."""
    comm = comm or distributed.init()
    distributed.broadcast_parameters(model, comm)
    optimizer = distributed.DistributedOptimizer(Adam(model.parameters(), lr=args.lr), comm=comm)
    dataset = TensorDataset(*arrays)
    sampler = DistributedSampler(dataset, seed=args.seed)
    loader = DataLoader(dataset, batch_size=max(1, args.batch_size // comm.size), sampler=sampler)
    model.train()
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        total, count = 0.0, 0
        for batch in loader:
            optimizer.zero_grad()
            loss = batch_loss(model, *batch)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(batch[0]), count + len(batch[0])
        mean = distributed.mean_over_ranks({"loss": (total / count, count)}, comm)["loss"]
        report(comm, f"epoch {epoch:3d}/{args.epochs}  loss {mean:.4f}")
    model.eval()
    return mean


def report(comm, text):
    """Print on rank 0 only, so that `mpirun -n 2` prints each line once."""
    if comm.is_main:
        print(text, flush=True)


def evaluate(model, x, batch_size=500):
    """model(x) in eval mode without a graph, in batches; a float32 array (for VAEs, the
    reconstruction, the first of the outputs)."""
    model.eval()
    outputs = []
    with ndl.no_grad():
        for start in range(0, len(x), batch_size):
            output = model(ndl.tensor(x[start:start + batch_size]))
            outputs.append((output[0] if isinstance(output, tuple) else output).data)
    return np.concatenate(outputs)


def save_rows(path, rows, columns=10):
    """A picture of 28x28 digits: one row per (label, images) item of `rows`, the first
    `columns` images of each, the label written at the left of its row."""
    figure, axes = plt.subplots(len(rows), columns, squeeze=False,
                                figsize=(0.9 * columns + 1.4, 0.95 * len(rows)))
    for row_axes, (label, images) in zip(axes, rows.items()):
        images = np.asarray(images).reshape(-1, 28, 28)
        for column, axis in enumerate(row_axes):
            if column < len(images):
                axis.imshow(images[column], cmap="gray", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
        row_axes[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    figure.tight_layout(pad=0.3)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
