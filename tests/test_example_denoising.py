"""examples/autoencoders/denoising.py: its outputs are closer to the clean digits than its
noisy inputs (a higher PSNR), its picture is saved, and `mpirun -n 2` computes the same
figures as one process (the noise exactly; the training's float rounding, which differs
between one GEMM over the batch and two over its halves, grows over the epochs)."""
import pytest
from PIL import Image

from example_helpers import one_process_run, printed_number, run_example

SMALL = ("--epochs", "5")  # the whole training set: fewer epochs stay on the mean digit
BEFORE = "PSNR noisy input vs clean (before)"
AFTER = "PSNR output vs clean (after)"


one_process = one_process_run("denoising", *SMALL)


def test_the_output_is_cleaner_than_the_noisy_input(one_process):
    output, _ = one_process
    assert printed_number(output, AFTER) > printed_number(output, BEFORE) + 2


def test_the_picture_has_three_rows_of_digits(one_process):
    _, out = one_process
    with Image.open(out / "denoising.png") as picture:
        assert picture.width > 2 * picture.height > 300


def test_two_ranks_print_the_figures_of_one_process(one_process, tmp_path):
    output, _ = one_process
    output_2 = run_example("denoising", *SMALL, out=tmp_path, ranks=2)
    assert printed_number(output_2, BEFORE) == printed_number(output, BEFORE)
    assert printed_number(output_2, AFTER) == pytest.approx(printed_number(output, AFTER), rel=0.01)
