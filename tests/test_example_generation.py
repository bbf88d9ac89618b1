"""examples/autoencoders/generation.py: a VAE and a ConvVAE train and print their negative
ELBO per test digit (well below the 543 of a model that outputs 0.5 everywhere), the
pictures of their samples and interpolations are saved, and `mpirun -n 2` trains them to
nearly the same figures."""
import pytest

from distributed_helpers import needs_mpirun
from example_helpers import grey_pixels, one_process_run, printed_number, run_example

SMALL = ("--epochs", "1", "--train-size", "1000")
MODELS = ("VAE", "ConvVAE")


def negative_elbo(output, model):
    return printed_number(output, f"negative ELBO per test digit, {model}")


one_process = one_process_run("generation", *SMALL)


def test_both_models_learn_the_digits(one_process):
    output, _ = one_process
    for model in MODELS:
        assert 100 < negative_elbo(output, model) < 300  # untrained: 784 ln 2 = 543
    assert "(415,024 parameters)" in output and "(36,865 parameters)" in output


@pytest.mark.parametrize("picture, rows", [("generation-samples.png", 2),
                                           ("generation-interpolation.png", 3)])
def test_the_pictures_show_a_row_of_digits_per_model(one_process, picture, rows):
    _, out = one_process
    pixels = grey_pixels(out / picture)
    assert 900 < pixels.shape[1] < 1200
    assert 80 * rows < pixels.shape[0] < 110 * rows
    assert pixels.std() > 20  # digits, not a blank page


@needs_mpirun
def test_two_ranks_train_to_nearly_the_figures_of_one_process(one_process, tmp_path):
    # The same global batches, not the same noise: each rank draws the reparameterisation
    # noise of its half batch from (seed, rank), where one process draws the whole batch's
    # from (seed, 0), so the runs differ about as much as two seeds do.
    output, _ = one_process
    output_2 = run_example("generation", *SMALL, out=tmp_path, ranks=2)
    for model in MODELS:
        assert negative_elbo(output_2, model) == pytest.approx(negative_elbo(output, model),
                                                               rel=0.1)
