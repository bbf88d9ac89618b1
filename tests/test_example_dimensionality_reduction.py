"""examples/autoencoders/dimensionality_reduction.py: its latent features keep the digits
apart (a linear classifier on them beats chance by far), its map is a picture, and
`mpirun -n 2` computes the same figures as one process."""
import pytest
from PIL import Image

from example_helpers import one_process_run, printed_number, run_example

SMALL = ("--epochs", "5")
LATENT = "linear classifier accuracy on the 32 latent features"
PIXELS = "linear classifier accuracy on the 784 raw pixels"


one_process = one_process_run("dimensionality_reduction", *SMALL)


def test_latent_features_classify_the_digits_well_above_chance(one_process):
    output, _ = one_process
    assert printed_number(output, LATENT) > 0.7  # chance is 0.1
    assert printed_number(output, PIXELS) > 0.7


def test_the_map_is_a_picture(one_process):
    _, out = one_process
    with Image.open(out / "dimensionality_reduction.png") as picture:
        assert 300 < picture.width < 2000 and 300 < picture.height < 2000


def test_two_ranks_print_the_figures_of_one_process(one_process, tmp_path):
    output, _ = one_process
    output_2 = run_example("dimensionality_reduction", *SMALL, out=tmp_path, ranks=2)
    for label in (LATENT, PIXELS):
        assert printed_number(output_2, label) == pytest.approx(printed_number(output, label),
                                                                 abs=0.0021)
