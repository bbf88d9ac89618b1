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
from numpy_dl import distributed, runtime  # noqa: E402
from numpy_dl.data import DataLoader, DistributedSampler, TensorDataset, datasets  # noqa: E402
from numpy_dl.loss import MSELoss  # noqa: E402
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

    batch_loss(model, *batch) is called with this rank's rows of each array, as NumPy
    arrays of the arrays' dtypes, and returns the scalar loss Tensor to minimize. Prints
    the mean loss over all ranks after each epoch (rank 0) and returns the last one.

    Each process runs one BLAS thread, as the launcher does by default: these models'
    matrices are too small for threads to pay, and threads collapse on busy cores. Each
    rank draws its own noise (a VAE's reparameterisation) from (seed, rank): with one
    seed everywhere the ranks would draw the same noise for different digits. So a VAE
    trained under mpirun sees other noise than in one process, and its figures agree to
    within the noise's spread; models without noise agree to float rounding."""
    comm = comm or distributed.init()
    runtime.set_blas_threads(1)
    distributed.broadcast_parameters(model, comm)
    ndl.manual_seed(np.random.SeedSequence([args.seed, comm.rank]).generate_state(1)[0])
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


def reconstruction_loss(model, x):
    """The batch loss of a plain autoencoder: the mean squared error of its reconstruction."""
    x = ndl.tensor(x)
    return MSELoss()(model(x), x)


def negative_elbo(criterion):
    """The batch loss of a VAE, for train() and for a test set: criterion(reconstruction,
    x, mu, logvar) with a VAELoss `criterion`; a conditional VAE's labels go on to it."""
    def loss(vae, x, *labels):
        x = ndl.tensor(x)
        reconstruction, mu, logvar = vae(x, *labels)
        return criterion(reconstruction, x, mu, logvar)
    return loss


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
    margin = 0.2 + 0.075 * max(len(label) for label in rows)  # inches for the labels
    figure, axes = plt.subplots(len(rows), columns, squeeze=False,
                                figsize=(0.9 * columns + margin, 0.95 * len(rows)))
    for row_axes, (label, images) in zip(axes, rows.items()):
        images = np.asarray(images).reshape(-1, 28, 28)
        for column, axis in enumerate(row_axes):
            if column < len(images):
                axis.imshow(images[column], cmap="gray", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
        row_axes[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    figure.subplots_adjust(left=margin / figure.get_figwidth(), right=0.99, top=0.99,
                           bottom=0.01, wspace=0.08, hspace=0.08)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
