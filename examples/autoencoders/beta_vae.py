"""The user guide's Beta-VAE: the same VAE trained with beta = 1 and with beta = 4, and
what the stronger pull towards the prior costs and buys.

VAELoss(reconstruction_loss, beta) is, per digit, the reconstruction error summed over
the 784 pixels plus beta times the KL divergence of the digit's code distribution
N(mu, sigma^2) from the prior N(0, I). With beta > 1 the KL term weighs more, so the
model keeps less information in its code (the guide's "disentanglement": fewer, more
independent factors of variation) and in exchange reconstructs less faithfully. Both
models start from the same weights (the same seed) and see the same batches. The table
gives both terms per test digit, in eval mode (z = mu), and their sum: the negative
ELBO with beta = 1, which compares the two models as models of the digits. The picture
shows test digits, each model's reconstructions of them, and samples of each.

    python examples/autoencoders/beta_vae.py
    mpirun -n 2 python examples/autoencoders/beta_vae.py --beta 8
"""
import os

import common
import numpy_dl as ndl
from numpy_dl import distributed
from numpy_dl.loss import VAELoss
from numpy_dl.models import VariationalAutoencoder


def main(argv=None):
    parser = common.arguments(__doc__.split("\n\n")[0], epochs=8, batch_size=32, lr=3e-3)
    parser.add_argument("--beta", type=float, default=4.0, help="the second model's beta (4)")
    parser.add_argument("--reconstruction-loss", choices=["bce", "mse"], default="bce",
                        help="VAELoss's reconstruction term (bce)")
    args = parser.parse_args(argv)
    comm = distributed.init()
    x_train, _, x_test, _ = common.load_digits("flat", args.train_size)
    reconstructions, samples = {"test digits": x_test}, {}
    table = [f"{'per test digit':<14} {'reconstruction':>14} {'KL':>7} {'sum':>7}"]
    for beta in (1.0, args.beta):
        common.report(comm, f"training with beta = {beta:g}")
        criterion = VAELoss(reconstruction_loss=args.reconstruction_loss, beta=beta)
        ndl.manual_seed(args.seed)
        vae = VariationalAutoencoder(784, [256], latent_dim=16)
        common.train(vae, common.negative_elbo(criterion), (x_train,), args, comm)
        if not comm.is_main:
            continue
        with ndl.no_grad():
            recon, mu, logvar = vae(ndl.tensor(x_test))
            reconstruction, kl = criterion.parts(recon, x_test, mu, logvar)
            reconstructions[f"β = {beta:g} reconstructed"] = recon.data
            samples[f"β = {beta:g} samples"] = vae.sample(num_samples=10, device="cpu").data
        reconstruction, kl = reconstruction.data.mean(), kl.data.mean()
        table.append(f"{f'beta = {beta:g}':<14} {reconstruction:14.2f} {kl:7.2f} "
                     f"{reconstruction + kl:7.2f}")
    if not comm.is_main:
        return
    folder = common.output_folder(args, "beta_vae")
    common.save_rows(os.path.join(folder, "beta_vae.png"), {**reconstructions, **samples})
    print(f"picture in {folder}")
    print(f"{args.reconstruction_loss.upper()} reconstruction, "
          f"on the {len(x_test):,} test digits:")
    print("\n".join(table))


if __name__ == "__main__":
    main()
