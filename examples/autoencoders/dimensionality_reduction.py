"""Dimensionality reduction: an autoencoder squeezes each 784-pixel digit into 32 numbers,
and those 32 numbers still tell the digits apart.

This is the user guide's first application. An Autoencoder(784, [256], 32) learns to
reconstruct the training digits, never seeing a label; then its encoder gives the latent
features of every digit (`model.encode(ndl.tensor(X)).data`). Two checks show that the
features keep what matters:

- a 2-D map: the test digits' features projected onto their two principal components
  (PCA with NumPy's SVD), one colour per digit, saved as a picture;
- a linear classifier (softmax regression, trained with numpy_dl on the training digits'
  features) and its accuracy on the test digits, next to the same classifier on the raw
  784 pixels: 24 times fewer numbers, and little accuracy lost.

    python examples/autoencoders/dimensionality_reduction.py
    mpirun -n 2 python examples/autoencoders/dimensionality_reduction.py
"""
import os

import matplotlib.pyplot as plt
import numpy as np

import common
import numpy_dl as ndl
from numpy_dl import distributed, nn
from numpy_dl.loss import CrossEntropyLoss
from numpy_dl.models import Autoencoder
from numpy_dl.optim import Adam


def latent_features(model, x):
    """The guide's feature extraction: the encoder's output, as a NumPy array."""
    model.eval()
    with ndl.no_grad():
        return model.encode(ndl.tensor(x)).data


def linear_accuracy(x_train, y_train, x_test, y_test, steps=300, lr=0.01):
    """Test accuracy of a softmax regression trained full-batch on (x_train, y_train), the
    features standardized with the training set's mean and deviation."""
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    classifier = nn.Linear(x_train.shape[1], 10)
    optimizer = Adam(classifier.parameters(), lr=lr)
    criterion = CrossEntropyLoss()
    inputs = ndl.tensor(x_train)
    for _ in range(steps):
        optimizer.zero_grad()
        criterion(classifier(inputs), y_train).backward()
        optimizer.step()
    with ndl.no_grad():
        predicted = classifier(ndl.tensor(x_test)).data.argmax(axis=1)
    return np.mean(predicted == y_test)


def pca_2d(features):
    """The rows of `features` projected onto their first two principal components."""
    centered = features - features.mean(axis=0)
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    return centered @ components[:2].T


def save_map(path, points, labels):
    figure, axis = plt.subplots(figsize=(6.4, 5.6))
    for digit in range(10):
        chosen = labels == digit
        axis.scatter(points[chosen, 0], points[chosen, 1], s=8, alpha=0.7,
                     color=plt.cm.tab10(digit), label=str(digit))
    axis.set_xlabel("principal component 1")
    axis.set_ylabel("principal component 2")
    axis.set_title("Test digits in the autoencoder's latent space (PCA to 2-D)")
    axis.legend(title="digit", markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5))
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main(argv=None):
    parser = common.arguments(__doc__.splitlines()[0], epochs=20)
    parser.add_argument("--latent-dim", type=int, default=32, help="latent features (32)")
    args = parser.parse_args(argv)
    ndl.manual_seed(args.seed)
    comm = distributed.init()
    x_train, y_train, x_test, y_test = common.load_digits("flat", args.train_size)

    model = Autoencoder(input_size=784, hidden_sizes=[256], latent_dim=args.latent_dim)
    common.train(model, common.reconstruction_loss, (x_train,), args, comm)
    if not comm.is_main:
        return

    train_features = latent_features(model, x_train)
    test_features = latent_features(model, x_test)
    folder = common.output_folder(args, "dimensionality_reduction")
    save_map(os.path.join(folder, "dimensionality_reduction.png"), pca_2d(test_features), y_test)
    latent = linear_accuracy(train_features, y_train, test_features, y_test)
    pixels = linear_accuracy(x_train, y_train, x_test, y_test)
    print(f"linear classifier accuracy on the {args.latent_dim} latent features: {latent:.3f}")
    print(f"linear classifier accuracy on the 784 raw pixels: {pixels:.3f}")
    print(f"pictures in {folder}")


if __name__ == "__main__":
    main()
