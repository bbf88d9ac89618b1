"""examples/autoencoders/transfer_learning.py: a linear classifier on the frozen encoder of
an autoencoder pretrained without labels learns the digits from 200 labels (well above the
10% of chance) while only its own 330 parameters train, the confusion matrices are saved,
and `mpirun -n 2`, whose training draws no noise, prints the figures of one process."""
import pytest
from PIL import Image

from distributed_helpers import needs_mpirun
from example_helpers import one_process_run, printed_number, run_example

SMALL = ("--epochs", "2", "--train-size", "1000", "--head-epochs", "10")
FROZEN, RAW = "test accuracy, frozen encoder", "test accuracy, raw pixels"


one_process = one_process_run("transfer_learning", *SMALL)


def test_the_frozen_encoder_features_classify_the_digits(one_process):
    output, _ = one_process
    assert printed_number(output, FROZEN) > 40
    assert printed_number(output, RAW) > 60
    assert "(330 parameters trained)" in output  # the head alone: the encoder is frozen


def test_the_confusion_matrices_are_saved(one_process):
    _, out = one_process
    with Image.open(out / "transfer_learning.png") as image:
        assert 700 < image.width < 1000 and 350 < image.height < 500


@needs_mpirun
def test_two_ranks_print_the_figures_of_one_process(one_process, tmp_path):
    output, _ = one_process
    output_2 = run_example("transfer_learning", *SMALL, out=tmp_path, ranks=2)
    last_epoch = "epoch   2/2  loss"  # of the autoencoder's pretraining
    assert printed_number(output_2, last_epoch) == pytest.approx(
        printed_number(output, last_epoch), rel=1e-3)
    for label in (FROZEN, RAW):  # within one test digit, for float rounding
        assert printed_number(output_2, label) == pytest.approx(printed_number(output, label),
                                                                 abs=0.11)
