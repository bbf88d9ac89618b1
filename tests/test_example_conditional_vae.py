"""examples/autoencoders/conditional_vae.py: the conditional VAE trains on the labelled
digits, a classifier of real digits reads its generated digits as the classes asked for
far more often than the 10% of chance, the grid of digits 0-9 is saved, and
`mpirun -n 2` trains to nearly the same figures."""
import pytest

from distributed_helpers import needs_mpirun
from example_helpers import grey_pixels, one_process_run, printed_number, run_example

SMALL = ("--epochs", "3", "--train-size", "1000")
ELBO = "negative ELBO per test digit"
REAL = "classifier accuracy on the real test digits"
GENERATED = "as the class asked for"


one_process = one_process_run("conditional_vae", *SMALL)


def test_the_generated_digits_are_of_the_class_asked_for(one_process):
    output, _ = one_process
    assert 100 < printed_number(output, ELBO) < 300  # untrained: 784 ln 2 = 543
    assert printed_number(output, REAL) > 80
    assert printed_number(output, GENERATED) > 30


def test_the_picture_has_a_row_per_digit(one_process):
    _, out = one_process
    pixels = grey_pixels(out / "conditional_vae.png")
    assert 900 < pixels.shape[1] < 1200 and 850 < pixels.shape[0] < 1050  # ten rows
    assert pixels.std() > 20


@needs_mpirun
def test_two_ranks_train_to_nearly_the_figures_of_one_process(one_process, tmp_path):
    output, _ = one_process
    output_2 = run_example("conditional_vae", *SMALL, out=tmp_path, ranks=2)
    # The classifier trains without noise: the same figure, within one test digit.
    assert printed_number(output_2, REAL) == pytest.approx(printed_number(output, REAL),
                                                           abs=0.11)
    # Not the VAE's noise: each rank draws the noise of its half batch from (seed, rank),
    # where one process draws the whole batch's. Close, not equal.
    assert printed_number(output_2, ELBO) == pytest.approx(printed_number(output, ELBO),
                                                           rel=0.1)
    assert printed_number(output_2, GENERATED) > 30
