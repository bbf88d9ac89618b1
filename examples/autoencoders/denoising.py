"""Denoising: an autoencoder trained to map noisy digits to the clean ones removes noise
from digits it has never seen.

This is the user guide's second application. Every training digit gets Gaussian noise
(standard deviation --noise, clipped back to [0, 1]) and the Autoencoder learns to output
the clean digit from the noisy one: the loss compares `model(noisy)` with `clean`. The
bottleneck cannot carry the noise, so the output keeps only the digit. The script prints
the peak signal-to-noise ratio (PSNR, higher is better) on the test digits before (noisy
input against clean) and after (output against clean), and saves a picture of noisy
inputs, outputs and clean targets.

The noise of each training digit is drawn once, before training, from the seed, so every
rank sees the same noisy digit whichever shard it reads: `mpirun -n 2` trains on exactly
the batches one process does.

    python examples/autoencoders/denoising.py
    mpirun -n 2 python examples/autoencoders/denoising.py
"""
import os

import numpy as np

import common
import numpy_dl as ndl
from numpy_dl import distributed
from numpy_dl.loss import MSELoss
from numpy_dl.models import Autoencoder


def add_noise(x, std, rng):
    """The guide's corruption: Gaussian noise, clipped back to [0, 1]."""
    noisy = x + rng.normal(0, std, x.shape)
    return np.clip(noisy, 0, 1).astype(np.float32)


def denoising_loss(model, clean, noisy):
    return MSELoss()(model(ndl.tensor(noisy)), ndl.tensor(clean))


def psnr(images, clean):
    """Peak signal-to-noise ratio in dB of images in [0, 1] against the clean ones."""
    return 10 * np.log10(1 / np.mean((images - clean) ** 2))


def main(argv=None):
    parser = common.arguments(__doc__.splitlines()[0], epochs=20)
    parser.add_argument("--noise", type=float, default=0.5,
                        help="standard deviation of the Gaussian noise (0.5)")
    args = parser.parse_args(argv)
    ndl.manual_seed(args.seed)
    comm = distributed.init()
    x_train, _, x_test, _ = common.load_digits("flat", args.train_size)
    rng = np.random.default_rng(args.seed)
    noisy_train = add_noise(x_train, args.noise, rng)
    noisy_test = add_noise(x_test, args.noise, rng)

    model = Autoencoder(input_size=784, hidden_sizes=[512, 256], latent_dim=64)
    common.train(model, denoising_loss, (x_train, noisy_train), args, comm)
    if not comm.is_main:
        return

    denoised = common.evaluate(model, noisy_test)
    folder = common.output_folder(args, "denoising")
    common.save_rows(os.path.join(folder, "denoising.png"),
                     {"noisy input": noisy_test, "output": denoised, "clean target": x_test})
    print(f"PSNR noisy input vs clean (before): {psnr(noisy_test, x_test):.2f} dB")
    print(f"PSNR output vs clean (after): {psnr(denoised, x_test):.2f} dB")
    print(f"pictures in {folder}")


if __name__ == "__main__":
    main()
