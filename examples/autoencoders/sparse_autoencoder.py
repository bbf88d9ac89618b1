"""Sparse autoencoder: an L1 penalty on the latent code makes many of its 64 numbers
nearly zero for each digit, at some cost in reconstruction.

This is the user guide's "Sparse Autoencoders" topic: the loss is the reconstruction
error plus `weight * ndl.abs(z).mean()`, z being the latent code. The script trains the
same Autoencoder twice from the same initial weights, with the L1 weight (--l1) and
without it (weight 0), and prints for both

- the fraction of near-zero latents on the test digits: |z| below 5% of the largest |z|
  of the same digit (relative, because the decoder's weights can grow as the code
  shrinks, so an absolute threshold would only measure the code's scale);
- the reconstruction error (mean squared error per pixel) on the test digits;

and saves the two models' reconstructions side by side and a picture of their codes.

    python examples/autoencoders/sparse_autoencoder.py
    mpirun -n 2 python examples/autoencoders/sparse_autoencoder.py
"""
import os

import matplotlib.pyplot as plt
import numpy as np

import common
import numpy_dl as ndl
from numpy_dl import distributed
from numpy_dl.loss import MSELoss
from numpy_dl.models import Autoencoder

NEAR_ZERO = 0.05  # of the largest |z| of the same digit


def sparse_loss(weight):
    """The guide's loss: reconstruction error plus weight times the mean |z|."""
    def loss(model, x):
        x = ndl.tensor(x)
        z = model.encode(x)
        reconstruction_loss = MSELoss()(model.decode(z), x)
        sparsity_loss = weight * ndl.abs(z).mean()
        return reconstruction_loss + sparsity_loss
    return loss


def trained_model(weight, x_train, args, comm):
    """An Autoencoder trained with L1 weight `weight`, from the seed's initial weights."""
    common.report(comm, f"training with L1 weight {weight}")
    ndl.manual_seed(args.seed)
    model = Autoencoder(input_size=784, hidden_sizes=[256], latent_dim=64)
    common.train(model, sparse_loss(weight), (x_train,), args, comm)
    return model


def relative_codes(model, x):
    """|z| of each digit divided by its largest |z|: 1 for the digit's strongest latent."""
    with ndl.no_grad():
        codes = np.abs(model.encode(ndl.tensor(x)).data)
    return codes / codes.max(axis=1, keepdims=True)


def save_codes(path, codes):
    """One panel per model: rows are test digits, columns latents, brightness |z|."""
    figure, axes = plt.subplots(1, len(codes), figsize=(4.5 * len(codes), 2.8))
    for axis, (title, code) in zip(axes, codes.items()):
        axis.imshow(code[:20], cmap="magma", vmin=0, vmax=1, aspect="auto")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("latent")
        axis.set_ylabel("test digit")
    figure.suptitle("|z| relative to the largest |z| of each digit (black: zero)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main(argv=None):
    parser = common.arguments(__doc__.splitlines()[0], epochs=20)
    parser.add_argument("--l1", type=float, default=0.1,
                        help="weight of the L1 penalty on the latent code (0.1)")
    args = parser.parse_args(argv)
    comm = distributed.init()
    x_train, _, x_test, _ = common.load_digits("flat", args.train_size)
    models = {f"L1 weight {args.l1}": trained_model(args.l1, x_train, args, comm),
              "without L1": trained_model(0.0, x_train, args, comm)}
    if not comm.is_main:
        return

    reconstructions = {name: common.evaluate(model, x_test) for name, model in models.items()}
    codes = {name: relative_codes(model, x_test) for name, model in models.items()}
    folder = common.output_folder(args, "sparse_autoencoder")
    common.save_rows(os.path.join(folder, "sparse_autoencoder.png"),
                     {"input": x_test, **reconstructions})
    save_codes(os.path.join(folder, "sparse_autoencoder-codes.png"), codes)
    for name in models:
        print(f"{name}: near-zero latents {np.mean(codes[name] < NEAR_ZERO):.3f}, "
              f"reconstruction error {np.mean((reconstructions[name] - x_test) ** 2):.4f}")
    print(f"pictures in {folder}")


if __name__ == "__main__":
    main()
