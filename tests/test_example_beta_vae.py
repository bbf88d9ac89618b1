"""examples/autoencoders/beta_vae.py: beta = 4 trades reconstruction for a smaller KL
than beta = 1, both printed per test digit, the picture of their reconstructions and
samples is saved, and `mpirun -n 2` trains them to nearly the same figures."""
import pytest

from distributed_helpers import needs_mpirun
from example_helpers import grey_pixels, one_process_run, run_example

SMALL = ("--epochs", "2", "--train-size", "1000")


def table_row(output, beta):
    """(reconstruction, KL, their sum) of the printed table's row for `beta`."""
    line = next(line for line in output.splitlines() if line.startswith(f"beta = {beta} "))
    return tuple(map(float, line.split()[3:]))


one_process = one_process_run("beta_vae", *SMALL)


def test_a_larger_beta_buys_a_smaller_kl_with_a_worse_reconstruction(one_process):
    output, _ = one_process
    reconstruction_1, kl_1, total_1 = table_row(output, 1)
    reconstruction_4, kl_4, _ = table_row(output, 4)
    assert kl_4 < kl_1 / 2
    assert reconstruction_1 < reconstruction_4
    assert total_1 == pytest.approx(reconstruction_1 + kl_1, abs=0.011)
    assert 100 < total_1 < 300  # untrained: 784 ln 2 = 543


def test_the_picture_has_the_inputs_reconstructions_and_samples(one_process):
    _, out = one_process
    pixels = grey_pixels(out / "beta_vae.png")
    assert 900 < pixels.shape[1] < 1200 and 400 < pixels.shape[0] < 550  # five rows
    assert pixels.std() > 20


@needs_mpirun
def test_two_ranks_train_to_nearly_the_figures_of_one_process(one_process, tmp_path):
    # The same global batches, not the same noise: each rank draws the reparameterisation
    # noise of its half batch from (seed, rank), where one process draws the whole batch's
    # from (seed, 0), so the runs differ about as much as two seeds do.
    output, _ = one_process
    output_2 = run_example("beta_vae", *SMALL, out=tmp_path, ranks=2)
    for beta in (1, 4):
        reconstruction, _, total = table_row(output, beta)
        reconstruction_2, _, total_2 = table_row(output_2, beta)
        assert reconstruction_2 == pytest.approx(reconstruction, rel=0.1)
        assert total_2 == pytest.approx(total, rel=0.1)
    assert table_row(output_2, 4)[1] < table_row(output_2, 1)[1] / 2
