"""The user guide's transfer learning: an autoencoder learns a code of the digits without
labels, then a linear classifier on its frozen encoder learns the ten classes from a
few labelled digits.

Labels are often scarce where images are not. The Autoencoder(784, [256], 32) of the
guide's dimensionality reduction trains first on all 4,000 training digits, without
their labels, to reconstruct them through a 32-number code. Then
numpy_dl.models.Classifier(encoder, 10, 32, freeze_encoder=True), a linear layer on that
code, learns from the labels of the first --labels training digits only, while the
encoder stays as the pretraining left it. The baseline is the same linear layer on the
same labelled digits' 784 raw pixels, trained as long. Both are scored on the 1,000 test
digits, and the picture is the confusion matrix of each. On these digits the 32 numbers
classify about as well as the 784 pixels, with 330 parameters to fit instead of 7,850:
the code learnt without labels kept what tells the digits apart, in 24 times fewer
numbers, though a linear classifier finds it no easier to separate than the pixels.

    python examples/autoencoders/transfer_learning.py
    mpirun -n 2 python examples/autoencoders/transfer_learning.py --labels 500
"""
import copy
import os

import matplotlib.pyplot as plt
import numpy as np

import common
import numpy_dl as ndl
from numpy_dl import distributed, nn
from numpy_dl.loss import BCELoss, CrossEntropyLoss
from numpy_dl.models import Autoencoder, Classifier

LATENT_DIM = 32


def reconstruction_loss(autoencoder, x):
    x = ndl.tensor(x)
    return BCELoss()(autoencoder(x), x)


def classification_loss(classifier, x, labels):
    return CrossEntropyLoss()(classifier(ndl.tensor(x)), labels)


def save_confusion_matrices(path, matrices):
    """One panel per (title, 10x10 matrix of counts) item: true digit down, predicted
    digit across, each count written in its cell."""
    figure, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 4.2))
    for axis, (title, matrix) in zip(axes, matrices.items()):
        axis.imshow(matrix, cmap="Blues")
        for (true, predicted), count in np.ndenumerate(matrix):
            if count:
                axis.text(predicted, true, count, ha="center", va="center", fontsize=7,
                          color="white" if count > matrix.max() / 2 else "black")
        axis.set(title=title, xlabel="predicted digit", ylabel="true digit",
                 xticks=range(10), yticks=range(10))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = common.arguments(__doc__.split("\n\n")[0], epochs=8, batch_size=32, lr=3e-3)
    parser.add_argument("--labels", type=int, default=200,
                        help="labelled training digits the classifiers learn from (200)")
    parser.add_argument("--head-epochs", type=int, default=20,
                        help="epochs of each classifier over the labelled digits (20)")
    parser.add_argument("--head-lr", type=float, default=1e-2,
                        help="Adam's learning rate for the classifiers (0.01)")
    args = parser.parse_args(argv)
    head_args = copy.copy(args)  # the classifiers' training: these epochs and lr
    head_args.epochs, head_args.lr = args.head_epochs, args.head_lr
    comm = distributed.init()
    x_train, y_train, x_test, y_test = common.load_digits("flat", args.train_size)
    labelled = x_train[:args.labels], y_train[:args.labels]

    common.report(comm, f"pretraining the autoencoder on {len(x_train):,} digits, no labels")
    ndl.manual_seed(args.seed)
    autoencoder = Autoencoder(784, [256], latent_dim=LATENT_DIM)
    common.train(autoencoder, reconstruction_loss, (x_train,), args, comm)

    classifiers = {
        "frozen encoder": Classifier(autoencoder.encoder, 10, LATENT_DIM, freeze_encoder=True),
        "raw pixels": nn.Linear(784, 10),
    }
    for name, classifier in classifiers.items():
        common.report(comm, f"training a linear classifier on the {name}, "
                            f"{len(labelled[0])} labelled digits")
        common.train(classifier, classification_loss, labelled, head_args, comm)
    if not comm.is_main:
        return
    matrices, figures = {}, []
    for name, classifier in classifiers.items():
        predicted = common.evaluate(classifier, x_test).argmax(axis=1)
        accuracy = np.mean(predicted == y_test)
        matrix = np.zeros((10, 10), dtype=int)
        np.add.at(matrix, (y_test, predicted), 1)
        matrices[f"{name}: {accuracy:.1%} correct"] = matrix
        trained = sum(p.numel() for p in classifier.parameters() if p.requires_grad)
        figures.append(f"test accuracy, {name}: {accuracy:.1%} ({trained:,} parameters trained)")
    folder = common.output_folder(args, "transfer_learning")
    save_confusion_matrices(os.path.join(folder, "transfer_learning.png"), matrices)
    print(f"picture in {folder}")
    print("\n".join(figures))


if __name__ == "__main__":
    main()
