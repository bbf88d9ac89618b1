"""New digits from a VAE and a convolutional VAE: samples decoded from the prior, and the
user guide's latent space interpolation between two test digits.

A VAE's loss (the negative ELBO) pulls the codes of the training digits towards the
prior N(0, I), so decoding fresh draws from N(0, I) gives new digits (`vae.sample`), and
decoding evenly spaced points on the line between the mean codes of two real digits
turns one into the other through digit-like shapes, where blending their pixels only
fades one out and the other in (the picture's first row). Both models train here on
the 4,000 training digits, data-parallel under mpirun; the ConvVAE is a small one (8
base channels, a 16-number code; the guide's has 32 and 128) so that it trains in
seconds. The printed figure for each is its negative ELBO per test digit: VAELoss('bce')
sums the binary cross-entropy of the reconstruction over the 784 pixels and adds the KL
divergence, and reduction='mean' averages that over the 1,000 test digits. In eval mode
the code is the mean (z = mu), so the figure is deterministic.

    python examples/autoencoders/generation.py
    mpirun -n 2 python examples/autoencoders/generation.py --models conv-vae --epochs 20
"""
import os

import numpy as np

import common
import numpy_dl as ndl
from numpy_dl import distributed
from numpy_dl.loss import VAELoss
from numpy_dl.models import ConvVariationalAutoencoder, VariationalAutoencoder

# name: (label in the pictures and the printout, shape for common.load_digits, the model)
MODELS = {
    "vae": ("VAE", "flat", lambda: VariationalAutoencoder(784, [256], latent_dim=16)),
    "conv-vae": ("ConvVAE", "image", lambda: ConvVariationalAutoencoder(1, 8, 16, 28)),
}
START, END, STEPS = 4, 7, 10  # from the first test 4 to the first test 7 in 10 steps
negative_elbo = common.negative_elbo(VAELoss(reconstruction_loss="bce", beta=1.0, reduction="mean"))


def between(a, b):
    """STEPS evenly spaced points on the line from a to b, both ends included."""
    return [a * (1 - alpha) + b * alpha for alpha in np.linspace(0, 1, STEPS)]


def interpolate(vae, image1, image2):
    """The guide's latent space interpolation: decode the points between the two images'
    mean codes."""
    vae.eval()
    with ndl.no_grad():
        mu1, _ = vae.encode(ndl.tensor(image1[None]))
        mu2, _ = vae.encode(ndl.tensor(image2[None]))
        return np.concatenate([vae.decode(z).data for z in between(mu1, mu2)])


def main(argv=None):
    parser = common.arguments(__doc__.split("\n\n")[0], epochs=8, batch_size=32, lr=3e-3)
    parser.add_argument("--models", default="vae,conv-vae",
                        help="comma-separated, from: " + ", ".join(MODELS) + " (both)")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    if not set(names) <= set(MODELS):
        parser.error(f"--models: expected names from {', '.join(MODELS)}, got {args.models}")
    comm = distributed.init()
    _, _, test_digits, test_labels = common.load_digits()
    ends = [np.flatnonzero(test_labels == digit)[0] for digit in (START, END)]
    samples, figures = {}, []
    interpolations = {f"pixels {START} to {END}": between(*test_digits[ends])}
    for name in names:
        label, shape, build = MODELS[name]
        common.report(comm, f"training the {label}")
        ndl.manual_seed(args.seed)
        vae = build()
        x_train, _, x_test, _ = common.load_digits(shape, args.train_size)
        common.train(vae, negative_elbo, (x_train,), args, comm)
        if not comm.is_main:
            continue
        with ndl.no_grad():
            test_loss = negative_elbo(vae, x_test).item()
        samples[f"{label} samples"] = vae.sample(num_samples=10, device="cpu").data
        interpolations[f"{label} {START} to {END}"] = interpolate(vae, *x_test[ends])
        parameters = sum(p.numel() for p in vae.parameters())
        figures.append(f"negative ELBO per test digit, {label}: {test_loss:.2f} "
                       f"({parameters:,} parameters)")
    if not comm.is_main:
        return
    folder = common.output_folder(args, "generation")
    common.save_rows(os.path.join(folder, "generation-samples.png"), samples)
    common.save_rows(os.path.join(folder, "generation-interpolation.png"), interpolations)
    print(f"pictures in {folder}")
    print("\n".join(figures))


if __name__ == "__main__":
    main()
