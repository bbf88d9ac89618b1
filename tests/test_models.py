"""The models themselves: exact conv decoder sizes, PyTorch-style parameter names, parameter
counts of the guide's configurations, rebuilding from `config`, input and argument checks,
and a VAE trained on the built-in digits whose samples look like digits."""
import json

import numpy as np
import pytest
from PIL import Image

import numpy_dl as ndl
from numpy_dl import nn
from numpy_dl.data import DataLoader, TensorDataset, datasets
from numpy_dl.loss import VAELoss
from numpy_dl.models import (Autoencoder, ConditionalVAE, ConvAutoencoder,
                             ConvVariationalAutoencoder, VariationalAutoencoder, build)
from numpy_dl.optim import Adam


@pytest.fixture(autouse=True)
def seeded():
    ndl.manual_seed(0)


def run(model, x, labels=None):
    """The reconstruction of `x` (the first output of a VAE)."""
    out = model(x, labels) if isinstance(model, ConditionalVAE) else model(x)
    return out[0] if isinstance(out, tuple) else out


# ------------------------------------------------------------------ conv decoder sizes

CONV_MODELS = [ConvAutoencoder, ConvVariationalAutoencoder]


def spatial_sizes(sequential, kind, x):
    """Run `x` through the layers of `sequential`; the output shape after each `kind` layer."""
    shapes = []
    for layer in sequential:
        x = layer(x)
        if isinstance(layer, kind):
            shapes.append(x.shape)
    return x, shapes


@pytest.mark.parametrize("cls", CONV_MODELS)
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("image_size", [28, 8, 32, 64, 13, 7, 5, 1])
def test_conv_decoder_reproduces_the_input_size(cls, in_channels, image_size):
    model = cls(in_channels=in_channels, base_channels=4, latent_dim=3, image_size=image_size)
    x = ndl.tensor(np.random.default_rng(0).uniform(0, 1, (2, in_channels, image_size, image_size)))
    assert run(model, x).shape == (2, in_channels, image_size, image_size)
    assert model.decode(ndl.tensor(np.zeros((5, 3)))).shape == (5, in_channels, image_size, image_size)

    # The decoder passes through the encoder's spatial sizes in reverse: no cropping.
    _, down = spatial_sizes(model.encoder, nn.Conv2d, x)
    _, up = spatial_sizes(model.decoder, nn.ConvTranspose2d, ndl.tensor(np.zeros((2, 3))))
    expected_sizes = [image_size]
    for _ in range(3):
        expected_sizes.append((expected_sizes[-1] + 1) // 2)  # kernel 3, stride 2, padding 1
    assert [s[2:] for s in down] == [(s, s) for s in expected_sizes[1:]]
    assert [s[2:] for s in up] == [(s, s) for s in expected_sizes[-2::-1]]
    assert [s[1] for s in down] == [4, 8, 16] and [s[1] for s in up] == [8, 4, in_channels]


@pytest.mark.parametrize("cls", CONV_MODELS)
@pytest.mark.parametrize("num_layers, image_size", [(1, 5), (2, 13), (4, 28), (4, 3)])
def test_conv_decoder_size_for_other_depths(cls, num_layers, image_size):
    model = cls(1, 2, 3, image_size, num_layers=num_layers)
    assert len([m for m in model.encoder if isinstance(m, nn.Conv2d)]) == num_layers
    x = ndl.tensor(np.random.default_rng(0).uniform(0, 1, (2, 1, image_size, image_size)))
    assert run(model, x).shape == (2, 1, image_size, image_size)


# ------------------------------------------------------------------ names and counts

def linear(fan_in, fan_out):
    return fan_in * fan_out + fan_out


def conv3x3(fan_in, fan_out):  # Conv2d and ConvTranspose2d alike
    return fan_in * fan_out * 9 + fan_out


def mlp_decoder_784():  # 64 -> 256 -> 512 -> 784
    return linear(64, 256) + linear(256, 512) + linear(512, 784)


# 28 -> 14 -> 7 -> 4 through three stride-2 convolutions; 128 channels of 4 x 4 at the end
CONV_FEATURES = 128 * 4 * 4
CONV_STACK = conv3x3(1, 32) + conv3x3(32, 64) + conv3x3(64, 128)
CONV_DECODER = linear(128, CONV_FEATURES) + conv3x3(128, 64) + conv3x3(64, 32) + conv3x3(32, 1)

GUIDE_MODELS = {
    "Autoencoder": (
        lambda: Autoencoder(input_size=784, hidden_sizes=[512, 256], latent_dim=64),
        linear(784, 512) + linear(512, 256) + linear(256, 64) + mlp_decoder_784(),
        [("encoder.0.weight", (512, 784)), ("encoder.0.bias", (512,)),
         ("encoder.2.weight", (256, 512)), ("encoder.2.bias", (256,)),
         ("encoder.4.weight", (64, 256)), ("encoder.4.bias", (64,)),
         ("decoder.0.weight", (256, 64)), ("decoder.0.bias", (256,)),
         ("decoder.2.weight", (512, 256)), ("decoder.2.bias", (512,)),
         ("decoder.4.weight", (784, 512)), ("decoder.4.bias", (784,))]),
    "VariationalAutoencoder": (
        lambda: VariationalAutoencoder(input_size=784, hidden_sizes=[512, 256], latent_dim=64),
        linear(784, 512) + linear(512, 256) + 2 * linear(256, 64) + mlp_decoder_784(),
        [("encoder.0.weight", (512, 784)), ("encoder.0.bias", (512,)),
         ("encoder.2.weight", (256, 512)), ("encoder.2.bias", (256,)),
         ("fc_mu.weight", (64, 256)), ("fc_mu.bias", (64,)),
         ("fc_logvar.weight", (64, 256)), ("fc_logvar.bias", (64,)),
         ("decoder.0.weight", (256, 64)), ("decoder.0.bias", (256,)),
         ("decoder.2.weight", (512, 256)), ("decoder.2.bias", (512,)),
         ("decoder.4.weight", (784, 512)), ("decoder.4.bias", (784,))]),
    "ConvAutoencoder": (
        lambda: ConvAutoencoder(in_channels=1, base_channels=32, latent_dim=128, image_size=28),
        CONV_STACK + linear(CONV_FEATURES, 128) + CONV_DECODER,
        [("encoder.0.weight", (32, 1, 3, 3)), ("encoder.0.bias", (32,)),
         ("encoder.2.weight", (64, 32, 3, 3)), ("encoder.2.bias", (64,)),
         ("encoder.4.weight", (128, 64, 3, 3)), ("encoder.4.bias", (128,)),
         ("encoder.7.weight", (128, 2048)), ("encoder.7.bias", (128,)),
         # The guide's decoder: FC (decoder.0), reshape (decoder.1), then transposed
         # convolutions. ConvTranspose2d weights are (in_channels, out_channels, kH, kW),
         # as in PyTorch.
         ("decoder.0.weight", (2048, 128)), ("decoder.0.bias", (2048,)),
         ("decoder.2.weight", (128, 64, 3, 3)), ("decoder.2.bias", (64,)),
         ("decoder.4.weight", (64, 32, 3, 3)), ("decoder.4.bias", (32,)),
         ("decoder.6.weight", (32, 1, 3, 3)), ("decoder.6.bias", (1,))]),
    "ConvVariationalAutoencoder": (
        lambda: ConvVariationalAutoencoder(in_channels=1, base_channels=32, latent_dim=128,
                                           image_size=28),
        CONV_STACK + 2 * linear(CONV_FEATURES, 128) + CONV_DECODER,
        [("encoder.0.weight", (32, 1, 3, 3)), ("encoder.0.bias", (32,)),
         ("encoder.2.weight", (64, 32, 3, 3)), ("encoder.2.bias", (64,)),
         ("encoder.4.weight", (128, 64, 3, 3)), ("encoder.4.bias", (128,)),
         ("fc_mu.weight", (128, 2048)), ("fc_mu.bias", (128,)),
         ("fc_logvar.weight", (128, 2048)), ("fc_logvar.bias", (128,)),
         ("decoder.0.weight", (2048, 128)), ("decoder.0.bias", (2048,)),
         ("decoder.2.weight", (128, 64, 3, 3)), ("decoder.2.bias", (64,)),
         ("decoder.4.weight", (64, 32, 3, 3)), ("decoder.4.bias", (32,)),
         ("decoder.6.weight", (32, 1, 3, 3)), ("decoder.6.bias", (1,))]),
}


@pytest.mark.parametrize("cls", CONV_MODELS)
def test_conv_decoder_is_the_guides_and_the_old_one_is_kept_for_old_checkpoints(cls):
    """Latent -> FC -> Reshape -> [ConvTranspose -> ReLU]* -> Output, as the guide draws it;
    decoder_fc_activation="relu" rebuilds the decoder of checkpoints before format 3, with
    a ReLU after the FC and parameter names of its own (tests/test_guide.py compares the
    guide's network layer by layer, tests/test_checkpoint.py the old checkpoints)."""
    up = [nn.ConvTranspose2d, nn.ReLU, nn.ConvTranspose2d, nn.ReLU, nn.ConvTranspose2d,
          nn.Sigmoid]
    guide = cls(1, 4, 3, 8)
    assert [type(layer) for layer in guide.decoder] == [nn.Linear, nn.Unflatten] + up
    assert "decoder_fc_activation" not in guide.config
    old = cls(1, 4, 3, 8, decoder_fc_activation="relu")
    assert [type(layer) for layer in old.decoder] == [nn.Linear, nn.ReLU, nn.Unflatten] + up
    assert old.config == {**guide.config, "decoder_fc_activation": "relu"}
    names = [name for name, _ in guide.named_parameters() if name.startswith("decoder.")]
    old_names = [name for name, _ in old.named_parameters() if name.startswith("decoder.")]
    assert names == [f"decoder.{i}.{kind}" for i in (0, 2, 4, 6) for kind in ("weight", "bias")]
    assert old_names == [f"decoder.{i}.{kind}" for i in (0, 3, 5, 7) for kind in ("weight", "bias")]
    assert [p.shape for p in guide.parameters()] == [p.shape for p in old.parameters()]
    # The two differ where the FC layer's output is negative, which the old one zeroes.
    for a, b in zip(old.parameters(), guide.parameters()):
        b.data[...] = a.data
    z = ndl.tensor(np.random.default_rng(0).normal(0, 3, (6, 3)))
    assert not np.allclose(guide.decode(z).data, old.decode(z).data)
    with pytest.raises(RuntimeError, match="decoder"):
        guide.load_state_dict(old.state_dict())


@pytest.mark.parametrize("name", GUIDE_MODELS)
def test_guide_configurations_names_shapes_and_counts(name):
    make, expected_count, expected_names = GUIDE_MODELS[name]
    model = make()
    assert type(model).__name__ == name
    named = [(n, p.shape) for n, p in model.named_parameters()]
    assert named == expected_names
    assert sum(p.data.size for p in model.parameters()) == expected_count
    state = model.state_dict()
    assert [(n, v.shape) for n, v in state.items()] == expected_names
    assert all(v.dtype == np.float32 for v in state.values())


def test_guide_parameter_counts_by_hand():
    """The counts above, spelled out once as numbers, so a slip in the helpers shows too."""
    assert GUIDE_MODELS["Autoencoder"][1] == 1_100_112
    assert GUIDE_MODELS["VariationalAutoencoder"][1] == 1_116_560
    assert GUIDE_MODELS["ConvAutoencoder"][1] == 711_681
    assert GUIDE_MODELS["ConvVariationalAutoencoder"][1] == 973_953


def test_parameter_names_of_other_models():
    cvae = ConditionalVAE(input_size=64, num_classes=10, hidden_sizes=[32], latent_dim=4)
    assert [(n, p.shape) for n, p in cvae.named_parameters()] == [
        ("encoder.0.weight", (32, 74)), ("encoder.0.bias", (32,)),
        ("fc_mu.weight", (4, 32)), ("fc_mu.bias", (4,)),
        ("fc_logvar.weight", (4, 32)), ("fc_logvar.bias", (4,)),
        ("decoder.0.weight", (32, 14)), ("decoder.0.bias", (32,)),
        ("decoder.2.weight", (64, 32)), ("decoder.2.bias", (64,))]
    # No hidden layers: the encoder is a single Linear (AE) or nothing before fc_mu (VAE).
    assert [n for n, _ in Autoencoder(10, [], 3).named_parameters()] == [
        "encoder.0.weight", "encoder.0.bias", "decoder.0.weight", "decoder.0.bias"]
    vae = VariationalAutoencoder(10, [], 3)
    assert [n for n, _ in vae.named_parameters()] == [
        "fc_mu.weight", "fc_mu.bias", "fc_logvar.weight", "fc_logvar.bias",
        "decoder.0.weight", "decoder.0.bias"]
    recon, mu, _ = vae(ndl.tensor(np.zeros((2, 10))))
    assert recon.shape == (2, 10) and mu.shape == (2, 3)


# ------------------------------------------------------------------ rebuilding

SMALL_MODELS = [
    lambda: Autoencoder(20, [16, 8], 4, activation="tanh"),
    lambda: VariationalAutoencoder(20, [16], 4, activation="leaky_relu"),
    lambda: ConvAutoencoder(3, 4, 5, 13, num_layers=2),
    lambda: ConvVariationalAutoencoder(1, 4, 5, 8),
    lambda: ConvAutoencoder(1, 4, 5, 8, decoder_fc_activation="relu"),  # format 2's decoder
    lambda: ConvVariationalAutoencoder(2, 3, 4, 9, num_layers=2, decoder_fc_activation="relu"),
    lambda: ConditionalVAE(20, 3, [16], 4, activation="sigmoid"),
]


def example_input(model, n=3):
    rng = np.random.default_rng(1)
    if isinstance(model, ConvAutoencoder):
        shape = (n, model.in_channels, model.image_size, model.image_size)
    else:
        shape = (n, model.input_size)
    return ndl.tensor(rng.uniform(0, 1, shape))


@pytest.mark.parametrize("make", SMALL_MODELS)
def test_build_from_config_and_load_state_dict_round_trip(make):
    model = make()
    config = json.loads(json.dumps(model.config))  # checkpoints keep the config as JSON
    ndl.manual_seed(99)
    rebuilt = build(type(model).__name__, **config)

    assert type(rebuilt) is type(model)
    assert rebuilt.config == model.config
    assert repr(rebuilt) == repr(model)
    assert [(n, p.shape) for n, p in rebuilt.named_parameters()] == \
           [(n, p.shape) for n, p in model.named_parameters()]
    x, labels = example_input(model), np.array([0, 2, 1])
    model.eval()
    rebuilt.eval()
    assert not np.allclose(run(rebuilt, x, labels).data, run(model, x, labels).data)

    rebuilt.load_state_dict(model.state_dict())
    for (name, a), (_, b) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(run(rebuilt, x, labels).data, run(model, x, labels).data)


def test_load_state_dict_of_another_architecture_fails_clearly():
    small = Autoencoder(20, [16], 4)
    with pytest.raises(RuntimeError, match="encoder.4.weight"):
        small.load_state_dict(Autoencoder(20, [16, 8], 4).state_dict())


# ------------------------------------------------------------------ input checks

INPUT_ERRORS = [
    (lambda: Autoencoder(6, [5], 3), (2, 5), "(N, 6)"),
    (lambda: Autoencoder(6, [5], 3), (6,), "(N, 6)"),
    (lambda: Autoencoder(6, [5], 3), (2, 1, 6), "(N, 6)"),
    (lambda: VariationalAutoencoder(6, [5], 3), (2, 7), "(N, 6)"),
    (lambda: ConvAutoencoder(1, 4, 3, 8), (2, 1, 7, 8), "(N, 1, 8, 8)"),
    (lambda: ConvAutoencoder(1, 4, 3, 8), (2, 3, 8, 8), "(N, 1, 8, 8)"),
    (lambda: ConvAutoencoder(1, 4, 3, 8), (2, 64), "(N, 1, 8, 8)"),
    (lambda: ConvVariationalAutoencoder(3, 4, 3, 8), (2, 1, 8, 8), "(N, 3, 8, 8)"),
    (lambda: ConvVariationalAutoencoder(3, 4, 3, 8), (3, 8, 8), "(N, 3, 8, 8)"),
    (lambda: ConditionalVAE(6, 3, [5], 2), (2, 5), "(N, 6)"),
]


@pytest.mark.parametrize("make, shape, expected", INPUT_ERRORS)
def test_wrong_input_shape_names_model_expected_and_received_shape(make, shape, expected):
    model = make()
    x = ndl.tensor(np.zeros(shape))
    calls = [lambda: run(model, x, np.zeros(shape[0], dtype=np.int64)),
             lambda: (model.encode(x, np.zeros(shape[0], dtype=np.int64))
                      if isinstance(model, ConditionalVAE) else model.encode(x))]
    for call in calls:
        with pytest.raises(ValueError) as error:
            call()
        message = str(error.value)
        assert type(model).__name__ in message
        assert f"expected input of shape {expected}" in message
        assert f"got {shape}" in message


@pytest.mark.parametrize("make", SMALL_MODELS)
def test_wrong_latent_shape_is_named(make):
    model = make()
    z = ndl.tensor(np.zeros((2, model.latent_dim + 1)))
    with pytest.raises(ValueError) as error:
        if isinstance(model, ConditionalVAE):
            model.decode(z, np.array([0, 1]))
        else:
            model.decode(z)
    message = str(error.value)
    assert type(model).__name__ in message
    assert f"(N, {model.latent_dim})" in message and f"got (2, {model.latent_dim + 1})" in message


def test_inputs_may_be_arrays_of_any_float_dtype():
    model = Autoencoder(6, [5], 3)
    x = np.random.default_rng(0).uniform(0, 1, (4, 6))  # float64
    out = model(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, model(ndl.tensor(x)).data, rtol=1e-6)


def test_conditional_vae_label_errors():
    cvae = ConditionalVAE(6, 3, [5], 2)
    x = ndl.tensor(np.zeros((2, 6)))
    with pytest.raises(ValueError, match="1 labels for 2 samples"):
        cvae(x, np.array([0]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cvae(x, np.array([0, 3]))
    with pytest.raises(ValueError, match="2 labels for 4 samples"):
        cvae.sample(4, labels=[0, 1])
    with pytest.raises(ValueError, match="cpu"):
        cvae.sample(4, labels=1, device="cuda")


# ------------------------------------------------------------------ constructor checks

BAD_ARGUMENTS = [
    (lambda: Autoencoder(0, [4], 2), ["Autoencoder", "input_size=0"]),
    (lambda: Autoencoder(4, [4], -1), ["Autoencoder", "latent_dim=-1"]),
    (lambda: Autoencoder(4.5, [4], 2), ["Autoencoder", "input_size=4.5"]),
    (lambda: Autoencoder("784", [4], 2), ["Autoencoder", "input_size='784'"]),
    (lambda: Autoencoder(4, [4, 0], 2), ["Autoencoder", "hidden_sizes", "[4, 0]"]),
    (lambda: Autoencoder(4, 8, 2), ["Autoencoder", "hidden_sizes", "8"]),
    (lambda: Autoencoder(4, [4], 2, activation="gelu"), ["activation", "'gelu'", "relu"]),
    (lambda: VariationalAutoencoder(4, [4], 0), ["VariationalAutoencoder", "latent_dim=0"]),
    (lambda: VariationalAutoencoder(4, [2.5], 2), ["VariationalAutoencoder", "hidden_sizes"]),
    (lambda: ConvAutoencoder(image_size=0), ["ConvAutoencoder", "image_size=0"]),
    (lambda: ConvAutoencoder(in_channels="1"), ["ConvAutoencoder", "in_channels='1'"]),
    (lambda: ConvAutoencoder(num_layers=0), ["ConvAutoencoder", "num_layers=0"]),
    (lambda: ConvVariationalAutoencoder(base_channels=0),
     ["ConvVariationalAutoencoder", "base_channels=0"]),
    (lambda: ConvVariationalAutoencoder(latent_dim=True),
     ["ConvVariationalAutoencoder", "latent_dim=True"]),
    (lambda: ConvAutoencoder(decoder_fc_activation="gelu"),
     ["ConvAutoencoder", "decoder_fc_activation", "'gelu'", "relu"]),
    (lambda: ConvVariationalAutoencoder(decoder_fc_activation=["relu"]),
     ["ConvVariationalAutoencoder", "decoder_fc_activation", "['relu']"]),
    (lambda: ConditionalVAE(4, 0), ["ConditionalVAE", "num_classes=0"]),
    (lambda: build("Transformer"), ["unknown model", "'Transformer'", "Autoencoder"]),
]


@pytest.mark.parametrize("make, fragments", BAD_ARGUMENTS)
def test_bad_constructor_arguments_raise_clear_value_errors(make, fragments):
    with pytest.raises(ValueError) as error:
        make()
    for fragment in fragments:
        assert fragment in str(error.value)


def test_integer_like_arguments_are_accepted():
    model = ConvAutoencoder(np.int64(1), 4, np.int32(3), np.int64(8))
    assert model.config == dict(in_channels=1, base_channels=4, latent_dim=3, image_size=8,
                                num_layers=3)
    assert all(type(v) is int for v in model.config.values())  # JSON-serialisable
    model = Autoencoder(np.int64(10), (np.int64(6),), 2)
    assert model.config["hidden_sizes"] == [6] and type(model.config["input_size"]) is int
    json.dumps(model.config)


# ------------------------------------------------------------------ trained on the digits

@pytest.fixture(scope="module")
def digits():
    images, labels = datasets.load_digits()
    data = images.reshape(len(images), 64)
    order = np.random.default_rng(0).permutation(len(data))
    train, test = order[:1500], order[1500:]
    return data[train], labels[train], data[test]


def negative_elbo(model, x):
    """Held-out negative ELBO (BCE reconstruction + KL per sample, averaged), estimated
    with z drawn from q(z|x) as in training, averaged over five draws."""
    criterion = VAELoss(reconstruction_loss="bce", reduction="mean")
    mode = model.training
    model.train()
    ndl.manual_seed(123)
    with ndl.no_grad():
        values = []
        for _ in range(5):
            recon, mu, logvar = model(x)
            values.append(criterion(recon, x, mu, logvar).item())
    model.train(mode)
    return float(np.mean(values))


def train_vae(model, data, labels=None, epochs=10):
    criterion = VAELoss(reconstruction_loss="bce")
    optimizer = Adam(model.parameters(), lr=0.003)
    arrays = (data,) if labels is None else (data, labels)
    loader = DataLoader(TensorDataset(*arrays), batch_size=64, shuffle=True, seed=0)
    model.train()
    for _ in range(epochs):
        for batch in loader:
            x = ndl.tensor(batch[0])
            recon, mu, logvar = model(x) if labels is None else model(x, batch[1])
            loss = criterion(recon, x, mu, logvar)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()


def save_grid(images, path, scale=8, gap=2):
    """A square grid of (n, 8, 8) images in [0, 1], each enlarged `scale` times."""
    n, size = len(images), images.shape[-1]
    side = int(np.ceil(np.sqrt(n)))
    cell = size * scale + gap
    canvas = np.full((side * cell + gap, side * cell + gap), 128, np.uint8)
    for k, image in enumerate(images):
        row, col = divmod(k, side)
        big = np.kron(image, np.ones((scale, scale)))
        top, left = gap + row * cell, gap + col * cell
        canvas[top:top + size * scale, left:left + size * scale] = np.round(big * 255)
    Image.fromarray(canvas).save(path)
    return canvas.shape


def correlation(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def neighbour_correlation(flat_images):
    """Correlation of horizontally adjacent pixels: spatial structure; ~0 for noise."""
    images = flat_images.reshape(-1, 8, 8)
    return correlation(images[:, :, :-1], images[:, :, 1:])


def nearest_distance(samples, data):
    """Median Euclidean distance from each sample to its nearest training image."""
    d2 = (samples ** 2).sum(1)[:, None] - 2 * samples @ data.T + (data ** 2).sum(1)[None]
    return float(np.median(np.sqrt(np.maximum(d2.min(axis=1), 0))))


def test_vae_on_digits_learns_and_samples_look_like_digits(digits, tmp_path):
    train, labels, test = digits
    vae = VariationalAutoencoder(input_size=64, hidden_sizes=[128, 64], latent_dim=8)
    x_test = ndl.tensor(test)
    untrained = negative_elbo(vae, x_test)
    ndl.manual_seed(1)
    untrained_samples = vae.sample(100).data

    train_vae(vae, train, epochs=50)  # about a second; after 10 the samples are still blobs
    trained = negative_elbo(vae, x_test)
    assert trained < 0.65 * untrained, (trained, untrained)

    ndl.manual_seed(1)
    samples = vae.sample(num_samples=100, device="cpu").data
    assert samples.shape == (100, 64)
    shape = save_grid(samples.reshape(100, 8, 8), tmp_path / "vae_digit_samples.png")
    with Image.open(tmp_path / "vae_digit_samples.png") as png:
        assert png.size == shape[::-1] == (10 * 66 + 2, 10 * 66 + 2)

    # Ink: the samples are about as bright as the digits (a fresh model's are grey, 0.5).
    assert abs(samples.mean() - train.mean()) < 0.05
    assert abs(untrained_samples.mean() - train.mean()) > 0.1
    # Where the ink is: the mean sample is the mean digit; noise and a fresh model are not.
    noise = np.random.default_rng(5).uniform(0, 1, (100, 64)).astype(np.float32)
    mean_image = train.mean(axis=0)
    assert correlation(samples.mean(axis=0), mean_image) > 0.9
    assert correlation(noise.mean(axis=0), mean_image) < 0.6
    assert correlation(untrained_samples.mean(axis=0), mean_image) < 0.6
    # Strokes: neighbouring pixels agree as in the digits, unlike in the same samples with
    # their pixels shuffled, which have the same intensities and no spatial structure.
    shuffled = np.array([row[np.random.default_rng(i).permutation(64)]
                         for i, row in enumerate(samples)])
    assert neighbour_correlation(train) > 0.2
    assert neighbour_correlation(samples) > 0.2
    assert abs(neighbour_correlation(shuffled)) < 0.1
    assert abs(neighbour_correlation(noise)) < 0.1
    # Each sample lies near some real digit, far nearer than its shuffled pixels do.
    assert nearest_distance(samples, train) < 0.7 * nearest_distance(shuffled, train)
    assert nearest_distance(samples, train) < 0.7 * nearest_distance(untrained_samples, train)
    assert nearest_distance(samples, train) < 1.3 * nearest_distance(test, train)
    # Variety: not one average blob a hundred times (what an undertrained VAE gives), but
    # samples that vary about as much as digits do and resemble digits of many classes.
    assert samples.std(axis=0).mean() > 0.45 * train.std(axis=0).mean()
    d2 = (samples ** 2).sum(1)[:, None] - 2 * samples @ train.T + (train ** 2).sum(1)[None]
    classes = np.bincount(labels[d2.argmin(axis=1)], minlength=10)
    assert (classes > 0).sum() >= 8 and classes.max() <= 35, classes


def test_conditional_vae_on_digits_samples_the_requested_class(digits):
    train, labels, _ = digits
    cvae = ConditionalVAE(input_size=64, num_classes=10, hidden_sizes=[128, 64], latent_dim=8)
    train_vae(cvae, train, labels)
    class_means = np.stack([train[labels == k].mean(axis=0) for k in range(10)])
    hits = 0
    for k in range(10):
        samples = cvae.sample(30, labels=k).data
        distances = ((samples.mean(axis=0) - class_means) ** 2).sum(axis=1)
        hits += int(distances.argmin() == k)
    assert hits == 10, hits


@pytest.mark.parametrize("make, variational, conditional", [
    (lambda: Autoencoder(12, [8], 3), False, False),
    (lambda: VariationalAutoencoder(12, [8], 3), True, False),
    (lambda: ConvAutoencoder(1, 4, 3, 6), False, False),
    (lambda: ConvVariationalAutoencoder(1, 4, 3, 6), True, False),
    (lambda: ConditionalVAE(12, 4, [8], 3), True, True),
])
def test_every_model_has_one_interface(make, variational, conditional):
    """encode/decode/forward with labels=None, and what the model is, without hasattr."""
    model = make()
    assert (model.variational, model.conditional) == (variational, conditional)
    n = 5
    x = np.random.default_rng(0).random((n,) + model.input_shape[1:], dtype=np.float32)
    labels = np.arange(n) % 4 if conditional else None
    code = model.encode(x, labels)
    mu = code[0] if variational else code
    assert mu.shape == (n, model.latent_dim)
    assert model.decode(mu, labels).shape == x.shape
    out = model(x, labels)
    assert (out[0] if variational else out).shape == x.shape
    if conditional:
        with pytest.raises(ValueError, match="conditioned on labels"):
            model.encode(x)
    else:
        with pytest.raises(ValueError, match="is not conditional"):
            model.encode(x, np.zeros(n, dtype=int))
    if variational:
        z = model.prior(n, np.random.default_rng(1))
        assert z.shape == (n, model.latent_dim) and z.dtype == np.float32
        model.train()
        eps = np.zeros((n, model.latent_dim), np.float32)
        np.testing.assert_array_equal(model.reparameterize(*code, eps=eps).data, mu.data)


@pytest.mark.parametrize("name, config", [
    ("Autoencoder", dict(input_size=784, hidden_sizes=[512, 256], latent_dim=64)),
    ("Autoencoder", dict(input_size=5, hidden_sizes=[], latent_dim=2)),
    ("VariationalAutoencoder", dict(input_size=64, hidden_sizes=[256, 128], latent_dim=16)),
    ("VariationalAutoencoder", dict(input_size=7, hidden_sizes=[], latent_dim=3)),
    ("ConditionalVAE", dict(input_size=64, num_classes=10, hidden_sizes=[32], latent_dim=4)),
    ("ConvAutoencoder", dict(in_channels=1, base_channels=32, latent_dim=128, image_size=28)),
    ("ConvVariationalAutoencoder", dict(in_channels=3, base_channels=4, latent_dim=5,
                                        image_size=13, num_layers=2)),
    ("ConvAutoencoder", dict(in_channels=1, base_channels=32, latent_dim=128, image_size=28,
                             decoder_fc_activation="relu")),
    ("ConvVariationalAutoencoder", dict(in_channels=1, base_channels=32, latent_dim=128,
                                        image_size=28, decoder_fc_activation="relu")),
])
def test_the_parameter_bound_holds_and_is_close(name, config):
    from numpy_dl.models import MODELS, build
    from numpy_dl.models.sizes import parameter_bound
    actual = sum(p.data.size for p in build(name, **config).parameters())
    assert actual <= parameter_bound(MODELS[name], config) <= 2 * actual + 100


@pytest.mark.parametrize("config, message", [
    (dict(input_size=64, hidden_sizes=[10 ** 6, 10 ** 6], latent_dim=8), "would need up to"),
    (dict(input_size=64, hidden_sizes=[256], latent_dim=10 ** 9), "would need up to"),
    (dict(input_size=64, hidden_sizes=[1] * 100_000, latent_dim=8), "at most 1000 are"),
    (dict(input_size=64, hidden_sizes=[8], latent_dim=8, width=3), "unexpected keyword"),
    (dict(input_size="64", hidden_sizes=[8], latent_dim=8), "expected positive integers"),
])
def test_build_refuses_impossible_sizes_before_allocating(config, message):
    from numpy_dl.models import build
    with pytest.raises((ValueError, TypeError), match=message):
        build("VariationalAutoencoder", **config)
