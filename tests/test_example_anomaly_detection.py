"""examples/autoencoders/anomaly_detection.py: the reconstruction error separates the
digits it never trained on from the others (ROC AUC well above 0.5), its pictures are
saved, and `mpirun -n 2` computes the same figures as one process."""
import pytest
from PIL import Image

from example_helpers import one_process_run, printed_number, run_example

SMALL = ("--epochs", "5")  # the whole training set: fewer epochs stay on the mean digit
AUC = "ROC AUC of the reconstruction error"
ACCURACY = "(95th percentile of training errors)"


one_process = one_process_run("anomaly_detection", *SMALL)


def test_the_reconstruction_error_detects_unseen_digits(one_process):
    output, _ = one_process
    assert printed_number(output, AUC) > 0.7
    assert printed_number(output, ACCURACY) > 0.55  # flagging nothing scores about 0.5


def test_the_pictures_are_saved(one_process):
    _, out = one_process
    with Image.open(out / "anomaly_detection.png") as digits:
        assert digits.width > digits.height > 200
    with Image.open(out / "anomaly_detection-scores.png") as histogram:
        assert 300 < histogram.width < 2000 and 200 < histogram.height < 2000


def test_two_ranks_print_the_figures_of_one_process(one_process, tmp_path):
    output, _ = one_process
    output_2 = run_example("anomaly_detection", *SMALL, out=tmp_path, ranks=2)
    for label in (AUC, ACCURACY):
        assert printed_number(output_2, label) == pytest.approx(printed_number(output, label),
                                                                 abs=0.0021)
