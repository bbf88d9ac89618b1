"""examples/autoencoders/sparse_autoencoder.py: the L1 penalty leaves more near-zero
latents than training without it, its pictures are saved, and `mpirun -n 2` computes the
same figures as one process."""
import pytest
from PIL import Image

from example_helpers import one_process_run, printed_number, run_example

SMALL = ("--epochs", "2", "--train-size", "1000")
WITH = "L1 weight 0.1: near-zero latents"
WITHOUT = "without L1: near-zero latents"


one_process = one_process_run("sparse_autoencoder", *SMALL)


def test_the_l1_penalty_makes_the_code_sparser(one_process):
    output, _ = one_process
    assert printed_number(output, WITH) > printed_number(output, WITHOUT) + 0.1


def test_the_pictures_are_saved(one_process):
    _, out = one_process
    with Image.open(out / "sparse_autoencoder.png") as reconstructions:
        assert reconstructions.width > 2 * reconstructions.height > 300
    with Image.open(out / "sparse_autoencoder-codes.png") as codes:
        assert 300 < codes.width < 2000 and 100 < codes.height < 2000


def test_two_ranks_print_the_figures_of_one_process(one_process, tmp_path):
    output, _ = one_process
    output_2 = run_example("sparse_autoencoder", *SMALL, out=tmp_path, ranks=2)
    for label in (WITH, WITHOUT):
        assert printed_number(output_2, label) == pytest.approx(printed_number(output, label),
                                                                 abs=0.0021)
