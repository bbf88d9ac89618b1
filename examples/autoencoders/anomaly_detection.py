"""Anomaly detection: an autoencoder trained on some digits only reconstructs those well,
so a large reconstruction error flags a digit of a kind it has never seen.

This is the user guide's third application. The Autoencoder trains on the "normal" digits
(--normal, 0 to 4 by default) and every test digit is scored by its reconstruction error,
the mean squared error over its pixels as in the guide's snippet. The script prints

- the ROC AUC of that score for telling the unseen digits (the anomalies) from the seen
  ones: the chance that a random anomaly scores higher than a random normal digit
  (0.5 is guessing, 1 is perfect), computed with NumPy from the ranks of the scores;
- the accuracy of the rule "anomaly if the error exceeds the threshold", the threshold
  being the 95th percentile of the training digits' errors (5% of the training digits
  would be flagged; more of the normal test digits are, as the model fits its own
  training digits best), and what it flags of each group;

and saves the most and least anomalous test digits with their reconstructions, and a
histogram of the two groups' scores.

    python examples/autoencoders/anomaly_detection.py
    mpirun -n 2 python examples/autoencoders/anomaly_detection.py
"""
import os

import matplotlib.pyplot as plt
import numpy as np

import common
import numpy_dl as ndl
from numpy_dl import distributed
from numpy_dl.models import Autoencoder


def anomaly_scores(model, x):
    """Each digit's reconstruction error: the mean squared error over its pixels."""
    return np.mean((x - common.evaluate(model, x)) ** 2, axis=1)


def roc_auc(scores, is_anomaly):
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula: the fraction of
    (anomaly, normal) pairs in which the anomaly has the higher score. (Tied scores would
    need averaged ranks; errors computed in floating point practically never tie.)"""
    ranks = scores.argsort().argsort() + 1  # 1 for the lowest score
    anomalies, normals = is_anomaly.sum(), (~is_anomaly).sum()
    return (ranks[is_anomaly].sum() - anomalies * (anomalies + 1) / 2) / (anomalies * normals)


def save_histogram(path, scores, is_anomaly, threshold):
    figure, axis = plt.subplots(figsize=(6.4, 3.6))
    bins = np.linspace(0, np.percentile(scores, 99), 50)
    axis.hist(scores[~is_anomaly], bins, alpha=0.6, label="seen digits (normal)")
    axis.hist(scores[is_anomaly], bins, alpha=0.6, label="unseen digits (anomalies)")
    axis.axvline(threshold, color="black", linestyle="--", label="threshold")
    axis.set_xlabel("reconstruction error (mean squared error per pixel)")
    axis.set_ylabel("test digits")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main(argv=None):
    parser = common.arguments(__doc__.splitlines()[0], epochs=20)
    parser.add_argument("--normal", default="0,1,2,3,4",
                        help="the digits to train on, comma-separated (0,1,2,3,4)")
    args = parser.parse_args(argv)
    ndl.manual_seed(args.seed)
    comm = distributed.init()
    normal_digits = [int(digit) for digit in args.normal.split(",")]
    x_train, y_train, x_test, y_test = common.load_digits("flat", args.train_size)
    x_normal = x_train[np.isin(y_train, normal_digits)]

    model = Autoencoder(input_size=784, hidden_sizes=[256], latent_dim=16)
    common.train(model, common.reconstruction_loss, (x_normal,), args, comm)
    if not comm.is_main:
        return

    threshold = np.percentile(anomaly_scores(model, x_normal), 95)
    scores = anomaly_scores(model, x_test)
    is_anomaly = ~np.isin(y_test, normal_digits)
    flagged = scores > threshold

    folder = common.output_folder(args, "anomaly_detection")
    order = np.argsort(scores)[::-1]
    most, least = x_test[order[:10]], x_test[order[-10:]]
    common.save_rows(os.path.join(folder, "anomaly_detection.png"), {
        "most anomalous": most, "reconstructed (most)": common.evaluate(model, most),
        "least anomalous": least, "reconstructed (least)": common.evaluate(model, least)})
    save_histogram(os.path.join(folder, "anomaly_detection-scores.png"),
                   scores, is_anomaly, threshold)
    print(f"trained on digits {args.normal}; anomalies: the other digits")
    print(f"ROC AUC of the reconstruction error: {roc_auc(scores, is_anomaly):.3f}")
    print(f"accuracy at the threshold {threshold:.4f} (95th percentile of training errors): "
          f"{np.mean(flagged == is_anomaly):.3f}")
    print(f"flagged at that threshold: {np.mean(flagged[is_anomaly]):.1%} of the anomalies, "
          f"{np.mean(flagged[~is_anomaly]):.1%} of the normal test digits")
    print(f"pictures in {folder}")


if __name__ == "__main__":
    main()
