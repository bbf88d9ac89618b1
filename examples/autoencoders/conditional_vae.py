"""The user guide's conditional VAE: digits of a chosen class, generated on demand.

numpy_dl.models.ConditionalVAE joins the one-hot label to the input of both its encoder
and its decoder, so the code need not say which digit it is (the label does) and keeps
the style: slant, thickness, size. A small code (4 numbers here) leaves no room to store
the class in it as well, so the decoder has to heed the label. Given a label and a draw
from the prior, the decoder writes that digit in a random style: `cvae.sample(10,
labels=3)` gives ten 3s. The model trains with the labels of the 4,000 training digits.

Printed: its negative ELBO per test digit (VAELoss('bce'): the binary cross-entropy
summed over the 784 pixels plus the KL, with the test digits' own labels, in eval mode
where z = mu), and a check that the generated digits are of the class asked for: a
small classifier trained here on the real training digits reads --per-class generated
digits of each class, and its accuracy on them is set beside its accuracy on the real
test digits.

    python examples/autoencoders/conditional_vae.py
    mpirun -n 2 python examples/autoencoders/conditional_vae.py --epochs 20
"""
import os

import numpy as np

import common
import numpy_dl as ndl
from numpy_dl import distributed, nn
from numpy_dl.loss import CrossEntropyLoss, VAELoss
from numpy_dl.models import ConditionalVAE

negative_elbo = common.negative_elbo(VAELoss(reconstruction_loss="bce", beta=1.0, reduction="mean"))


def classification_loss(classifier, x, labels):
    return CrossEntropyLoss()(classifier(ndl.tensor(x)), labels)


def accuracy(classifier, x, labels):
    return np.mean(common.evaluate(classifier, x).argmax(axis=1) == labels)


def main(argv=None):
    parser = common.arguments(__doc__.split("\n\n")[0], epochs=10, batch_size=32, lr=3e-3)
    parser.add_argument("--per-class", type=int, default=100,
                        help="digits generated of each class for the check (100)")
    args = parser.parse_args(argv)
    comm = distributed.init()
    x_train, y_train, x_test, y_test = common.load_digits("flat", args.train_size)

    common.report(comm, "training the conditional VAE")
    ndl.manual_seed(args.seed)
    cvae = ConditionalVAE(784, num_classes=10, hidden_sizes=[256], latent_dim=4)
    common.train(cvae, negative_elbo, (x_train, y_train), args, comm)
    common.report(comm, "training the classifier that checks the generated digits")
    ndl.manual_seed(args.seed)
    classifier = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    common.train(classifier, classification_loss, (x_train, y_train), args, comm)
    if not comm.is_main:
        return

    with ndl.no_grad():
        test_loss = negative_elbo(cvae, x_test, y_test).item()
        rows = {f"label {digit}": cvae.sample(10, labels=digit).data for digit in range(10)}
        asked = np.repeat(np.arange(10), args.per_class)
        generated = cvae.sample(len(asked), labels=asked).data
    folder = common.output_folder(args, "conditional_vae")
    common.save_rows(os.path.join(folder, "conditional_vae.png"), rows)
    print(f"picture in {folder}")
    print(f"negative ELBO per test digit: {test_loss:.2f}")
    print(f"classifier accuracy on the real test digits: "
          f"{accuracy(classifier, x_test, y_test):.1%}")
    print(f"classifier accuracy on {len(asked):,} generated digits, as the class asked for: "
          f"{accuracy(classifier, generated, asked):.1%}")


if __name__ == "__main__":
    main()
