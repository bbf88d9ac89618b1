"""The launcher's option table: defaults, conversion from the command line and TOML, the
written config.toml reading back to the same configuration, and one-line errors."""
import re

import pytest

from numpy_dl.launch import config as options
from numpy_dl.launch.config import tomllib  # or tomli, on Python 3.10
from numpy_dl.launch.cli import parse, train_layers
from numpy_dl.launch.errors import UsageError


def resolved(argv, tmp_path=None, toml=None):
    """The TrainConfig `train ARGV` resolves to, with `toml` as its --config file."""
    if toml is not None:
        path = tmp_path / "run.toml"
        path.write_text(toml)
        argv = ["--config", str(path)] + argv
    return options.resolve(*train_layers(parse(["train"] + argv)))


def test_no_options_is_a_vae_on_the_built_in_digits():
    config = resolved([])
    assert (config.model, config.dataset) == ("vae", "digits")
    assert config.resume is None and config.out is None


def test_command_line_strings_are_converted_like_toml_values(tmp_path):
    from_cli = resolved(["--epochs", "3", "--lr", "1e-3", "--hidden-sizes", "64,32",
                         "--model", "conv-ae", "--noise-std", "0.2"])
    from_toml = resolved([], tmp_path, 'epochs = 3\nlr = 1e-3\nhidden_sizes = [64, 32]\n'
                                       'model = "conv-ae"\nnoise-std = 0.2\n')
    assert from_cli == from_toml
    assert from_cli.hidden_sizes == (64, 32) and from_cli.epochs == 3


def test_the_command_line_overrides_the_config_file(tmp_path):
    config = resolved(["--epochs", "7"], tmp_path, "epochs = 3\nseed = 5\n")
    assert (config.epochs, config.seed) == (7, 5)


def test_bare_resume_means_auto():
    assert resolved(["--resume", "--out", "x"]).resume == "auto"
    assert resolved(["--resume", "runs/a"]).resume == "runs/a"


def test_written_config_reads_back_to_the_same_options_without_placement(tmp_path):
    config = resolved(["--model", "cvae", "--hidden-sizes", "", "--lr-schedule", "cosine",
                       "--dataset", 'npz:odd "name".npz', "--out", "somewhere", "--resume"])
    text = options.to_toml(config, header=["a comment"])
    assert text.startswith("# a comment\n")
    document = tomllib.loads(text)
    assert "out" not in document and "resume" not in document
    again = resolved([], tmp_path, text)
    assert again == options.TrainConfig(**{**options.as_dict(config), "out": None})


@pytest.mark.parametrize("argv, message", [
    (["--model", "gan"], "--model: expected one of ae, conv-ae, vae, conv-vae, cvae, got 'gan'"),
    (["--epochs", "0"], "--epochs: expected an integer >= 1, got 0"),
    (["--lr", "fast"], "--lr: expected a number > 0.0, got 'fast'"),
    (["--val-fraction", "1"], "--val-fraction: expected a number >= 0.0 and < 1.0, got '1'"),
    (["--hidden-sizes", "64,x"], "--hidden-sizes: expected positive integers, as in 256,128, "
                                 "got '64,x'"),
    (["--optimizer", "lbfgs"], "--optimizer: expected one of adam, adamw, sgd, got 'lbfgs'"),
])
def test_bad_values_on_the_command_line_name_the_flag_and_what_it_accepts(argv, message):
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$") as caught:
        resolved(argv)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("toml, message", [
    ('epochs = "ten"\n', r": epochs: expected an integer >= 1, got 'ten'$"),
    ("epocs = 3\n", r": unknown option 'epocs'; expected one of model, dataset, epochs, "),
    ("learning-rate = 3\n", r": unknown option 'learning-rate'; expected one of "),
    ("epochs = [\n", r" is not valid TOML: .*; expected lines such as `epochs = 10`$"),
    ("[train]\nepochs = 3\n", r": unexpected table \[train\]; expected top-level keys"),
    ("lr = true\n", r": lr: expected a number > 0.0, got True$"),
])
def test_bad_config_files_are_one_line_usage_errors(tmp_path, toml, message):
    with pytest.raises(UsageError, match=r"^config file \S+run.toml" + message):
        resolved([], tmp_path, toml)


def test_a_missing_config_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"^config file \S+nowhere.toml does not exist$"):
        resolved(["--config", str(tmp_path / "nowhere.toml")])


@pytest.mark.parametrize("argv, message", [
    (["train", "--bogus", "1"], r"^python -m numpy_dl.launch train: unknown argument '--bogus'; "
                                r"`python -m numpy_dl.launch train --help` lists the options$"),
    (["train", "--batchsize", "1"], r"unknown argument '--batchsize'; did you mean "
                                    r"--batch-size\? `"),
    (["train", "--ep", "2"], r"unknown argument '--ep'; did you mean --epochs\? `"),
    (["trian"], r"^python -m numpy_dl.launch: unknown command 'trian'; did you mean train\?$"),
    ([], r"^python -m numpy_dl.launch: the following arguments are required: COMMAND$"),
    (["sample"], r"the following arguments are required: --checkpoint$"),
    (["score", "--checkpoint", "x", "--quantile", "2"],
     r"argument --quantile: expected a number >= 0.0 and < 1.0, got '2'$"),
    (["interpolate", "--checkpoint", "x", "--between", "1"],
     r"argument --between: expected two item indices, as in 3,17, got '1'$"),
])
def test_parser_errors_are_one_line_usage_errors(argv, message):
    with pytest.raises(UsageError, match=message) as caught:
        parse(argv)
    assert "\n" not in str(caught.value)
