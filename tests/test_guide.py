"""Every code block of the autoencoder user guide, run as written on small data.

The guide's code is copied into the test bodies verbatim where it can be. Where a block is
incomplete (it reuses names from earlier blocks, or leaves X_train, num_epochs, image1,
threshold, ... to the reader), the test supplies the missing lines and marks them with a
comment starting "supplied:". Each test then asserts the shapes and behaviours the guide
states, plus the API details of DESIGN.md section 2 that the guide relies on.
"""
import re

import numpy as np
import pytest

import numpy_dl as ndl
from numpy_dl.data import DataLoader, TensorDataset, datasets
from numpy_dl.loss import CrossEntropyLoss, KLDivergenceLoss, MSELoss, VAELoss
from numpy_dl.models import (Autoencoder, Classifier as ClassifierHead, ConditionalVAE,
                             ConvAutoencoder, ConvVariationalAutoencoder,
                             VariationalAutoencoder)
from numpy_dl import nn
from numpy_dl.nn import Linear, Module
from numpy_dl.optim import Adam


@pytest.fixture(autouse=True)
def seeded():
    ndl.manual_seed(0)
    np.random.seed(0)  # the guide's denoising block draws from NumPy's global generator


def flat_images(n, seed=0):
    """n smooth synthetic 28x28 images flattened to 784 features in [0, 1], float32."""
    return datasets.synthetic_images(n, image_size=28, seed=seed).images.reshape(n, 784)


@pytest.fixture(scope="module")
def digits():
    """The built-in UCI digits: images (1797, 1, 8, 8) float32 in [0, 1] and labels."""
    images, labels = datasets.load_digits()
    return images, labels


def printed_losses(capsys):
    """The losses of the guide's 'Epoch k: Loss = ...' lines, in order."""
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("Epoch")]
    assert lines and all(re.fullmatch(r"Epoch \d+: Loss = \d+\.\d{4}", line) for line in lines), out
    return [float(line.split("= ")[1]) for line in lines]


def mse_step(model, optimizer, x):
    """One optimisation step of MSE reconstruction, for blocks that say '... train model ...'."""
    loss = MSELoss()(model(x), x)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


# ------------------------------------------------------------------ API reference blocks

def test_api_reference_constructors():
    model = Autoencoder(
        input_size=784,          # Dimension of input vectors
        hidden_sizes=[512, 256], # Hidden layer sizes for encoder
        latent_dim=64,           # Dimension of latent space
        activation='relu'        # Activation function
    )
    x = ndl.tensor(flat_images(3), requires_grad=False)
    assert model.encode(x).shape == (3, 64)
    assert model.decode(model.encode(x)).shape == (3, 784)
    assert model.forward(x).shape == (3, 784)

    model = ConvAutoencoder(
        in_channels=1,       # Number of input channels (1 for grayscale, 3 for RGB)
        base_channels=32,    # Base number of channels (doubled in each layer)
        latent_dim=128,      # Dimension of latent space
        image_size=28        # Input image size (assumes square images)
    )
    images = ndl.tensor(flat_images(2).reshape(2, 1, 28, 28))
    assert model.encode(images).shape == (2, 128)
    assert model(images).shape == (2, 1, 28, 28)

    model = VariationalAutoencoder(
        input_size=784,
        hidden_sizes=[512, 256],
        latent_dim=64,
        activation='relu'
    )
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 64)
    assert model.reparameterize(mu, logvar).shape == (3, 64)
    assert model.sample(4, 'cpu').shape == (4, 784)

    model = ConvVariationalAutoencoder(
        in_channels=1,
        base_channels=32,
        latent_dim=128,
        image_size=28
    )
    recon, mu, logvar = model(images)
    assert recon.shape == (2, 1, 28, 28) and mu.shape == logvar.shape == (2, 128)


def test_api_reference_vae_loss_and_kl_loss_blocks():
    vae = VariationalAutoencoder(input_size=784, hidden_sizes=[64], latent_dim=8)
    x = ndl.tensor(flat_images(5))

    criterion = VAELoss(
        reconstruction_loss='mse',  # 'mse' or 'bce'
        beta=1.0,                   # Weight for KL term (beta-VAE)
        reduction='mean'            # 'mean', 'sum', or 'none'
    )

    # Usage
    recon, mu, logvar = vae(x)
    loss = criterion(recon, x, mu, logvar)

    kl_loss = KLDivergenceLoss(reduction='mean')
    mu, logvar = vae.encode(x)
    kl = kl_loss(mu, logvar)

    # VAELoss is the negative ELBO per sample, averaged: squared error summed over the
    # 784 features plus the KL summed over the latent dimensions.
    r, m, lv = recon.data.astype(np.float64), mu.data.astype(np.float64), logvar.data.astype(np.float64)
    expected_kl = np.mean(0.5 * np.sum(m ** 2 + np.exp(lv) - lv - 1, axis=1))
    expected = np.mean(np.sum((r - x.data) ** 2, axis=1)) + expected_kl
    assert loss.shape == () and kl.shape == ()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert kl.item() == pytest.approx(expected_kl, rel=1e-5)
    assert kl.item() > 0
    assert isinstance(loss.item(), float)


# ------------------------------------------------------------------ DESIGN.md API details

def test_vae_forward_encode_return_tuples_and_encoder_is_a_module():
    vae = VariationalAutoencoder(input_size=20, hidden_sizes=[16], latent_dim=4)
    x = ndl.tensor(np.random.default_rng(1).uniform(0, 1, (6, 20)))
    out = vae(x)
    assert isinstance(out, tuple) and len(out) == 3
    recon, mu, logvar = out
    assert recon.shape == (6, 20) and mu.shape == (6, 4) and logvar.shape == (6, 4)
    encoded = vae.encode(x)
    assert isinstance(encoded, tuple) and len(encoded) == 2
    np.testing.assert_array_equal(encoded[0].data, mu.data)
    np.testing.assert_array_equal(encoded[1].data, logvar.data)
    for model in (vae, Autoencoder(20, [16], 4), ConvAutoencoder(1, 4, 3, 8),
                  ConvVariationalAutoencoder(1, 4, 3, 8)):
        assert isinstance(model.encoder, Module)


def test_autoencoder_encoder_maps_inputs_to_latent():
    model = Autoencoder(input_size=30, hidden_sizes=[20, 10], latent_dim=5)
    x = ndl.tensor(np.random.default_rng(2).uniform(0, 1, (7, 30)))
    z = model.encoder(x)
    assert z.shape == (7, 5)
    np.testing.assert_array_equal(z.data, model.encode(x).data)
    np.testing.assert_array_equal(model.decode(z).data, model(x).data)


def test_reparameterize_is_stochastic_in_train_mode_and_mu_in_eval_mode():
    vae = VariationalAutoencoder(input_size=10, hidden_sizes=[8], latent_dim=3)
    mu = ndl.tensor(np.full((4000, 3), 0.5), requires_grad=True)
    logvar = ndl.tensor(np.full((4000, 3), np.log(4.0)), requires_grad=True)

    vae.train()
    z1, z2 = vae.reparameterize(mu, logvar), vae.reparameterize(mu, logvar)
    assert z1.dtype == np.float32
    assert not np.array_equal(z1.data, z2.data)
    assert z1.data.mean() == pytest.approx(0.5, abs=0.1)
    assert z1.data.std() == pytest.approx(2.0, abs=0.1)  # sigma = exp(logvar / 2)
    # The trick keeps the sample differentiable: dz/dmu = 1, dz/dlogvar = eps * sigma / 2.
    z1.sum().backward()
    np.testing.assert_allclose(mu.grad, 1.0)
    np.testing.assert_allclose(logvar.grad, (z1.data - 0.5) / 2, rtol=1e-4, atol=1e-5)

    vae.eval()
    np.testing.assert_array_equal(vae.reparameterize(mu, logvar).data, mu.data)
    x = ndl.tensor(np.random.default_rng(3).uniform(0, 1, (5, 10)))
    recon, mu_x, _ = vae(x)
    np.testing.assert_array_equal(recon.data, vae.decode(mu_x).data)
    np.testing.assert_array_equal(vae(x)[0].data, recon.data)


@pytest.mark.parametrize("make, shape", [
    (lambda: VariationalAutoencoder(12, [8], 3), (5, 12)),
    (lambda: ConvVariationalAutoencoder(2, 4, 3, 8), (5, 2, 8, 8)),
])
def test_sample_device_and_manual_seed(make, shape):
    model = make()
    samples = model.sample(5, device='cpu')
    assert samples.shape == shape and samples.dtype == np.float32
    assert samples.data.min() >= 0 and samples.data.max() <= 1
    assert model.sample(num_samples=5).shape == shape

    with pytest.raises(ValueError, match="cpu") as error:
        model.sample(5, device='cuda')
    assert "'cuda'" in str(error.value)

    ndl.manual_seed(7)
    first = model.sample(5).data
    ndl.manual_seed(7)
    again = model.sample(5).data
    ndl.manual_seed(8)
    other = model.sample(5).data
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_outputs_lie_in_unit_interval_so_bce_works():
    rng = np.random.default_rng(4)
    x_flat = ndl.tensor(rng.uniform(0, 1, (4, 16)))
    x_img = ndl.tensor(rng.uniform(0, 1, (4, 1, 8, 8)))
    # Large inputs push the pre-sigmoid activations far out; outputs must still be in [0, 1].
    big_flat, big_img = ndl.tensor(x_flat.data * 50), ndl.tensor(x_img.data * 50)
    for model, x, big in [(Autoencoder(16, [8], 2), x_flat, big_flat),
                          (ConvAutoencoder(1, 4, 2, 8), x_img, big_img)]:
        for inputs in (x, big):
            out = model(inputs).data
            assert out.min() >= 0 and out.max() <= 1
    for model, x in [(VariationalAutoencoder(16, [8], 2), x_flat),
                     (ConvVariationalAutoencoder(1, 4, 2, 8), x_img)]:
        recon, mu, logvar = model(x)
        assert recon.data.min() >= 0 and recon.data.max() <= 1
        loss = VAELoss(reconstruction_loss='bce')(recon, x, mu, logvar)
        assert np.isfinite(loss.item()) and loss.item() > 0
        loss.backward()
        assert all(p.grad is not None and np.isfinite(p.grad).all() for p in model.parameters())


# ------------------------------------------------------------------ architecture diagrams

class GuideConvNetwork(Module):
    """The guide's convolutional autoencoder, built layer by layer from its text:

        Input -> [Conv -> ReLU]* -> Flatten -> FC -> Latent
        Latent -> FC -> Reshape -> [ConvTranspose -> ReLU]* -> Output

    with the API reference's "base number of channels (doubled in each layer)", and the
    best practices' "stride=2 for downsampling in encoder", "ConvTranspose2d with stride=2
    for upsampling in decoder", "match spatial dimensions between encoder and decoder" and
    "Final layer: Sigmoid for binary/normalized data" (the Output: a last ConvTranspose
    back to the input's channels, then a Sigmoid). The Convolutional VAE "combines [this]
    convolutional architecture with variational inference": the encoder's flattened
    features give (mu, log sigma^2) through two FC layers, z = mu + sigma * eps, and z goes
    through the same decoder. supplied: the guide names no kernel size; numpy_dl's is 3
    with padding 1, and `num_layers` (3 by default) counts the [Conv -> ReLU] blocks."""

    def __init__(self, in_channels, base_channels, latent_dim, image_size, num_layers=3,
                 variational=False):
        super().__init__()
        self.variational = variational
        channels = [in_channels] + [base_channels * 2 ** i for i in range(num_layers)]
        sizes = [image_size]  # kernel 3, stride 2, padding 1: (s + 2 - 3) // 2 + 1
        for _ in range(num_layers):
            sizes.append((sizes[-1] + 2 * 1 - 3) // 2 + 1)
        # Input -> [Conv -> ReLU]* -> Flatten
        down = []
        for fan_in, fan_out in zip(channels[:-1], channels[1:]):
            down += [nn.Conv2d(fan_in, fan_out, kernel_size=3, stride=2, padding=1), nn.ReLU()]
        self.down = nn.Sequential(*down, nn.Flatten())
        features = channels[-1] * sizes[-1] * sizes[-1]
        # -> FC -> Latent (a VAE: FC -> mu and FC -> log sigma^2)
        if variational:
            self.fc_mu = nn.Linear(features, latent_dim)
            self.fc_logvar = nn.Linear(features, latent_dim)
        else:
            self.fc = nn.Linear(features, latent_dim)
        # Latent -> FC -> Reshape
        self.decoder_fc = nn.Linear(latent_dim, features)
        self.reshape = nn.Unflatten(1, (channels[-1], sizes[-1], sizes[-1]))
        # -> [ConvTranspose -> ReLU]* -> Output (ConvTranspose -> Sigmoid), through the
        # encoder's sizes in reverse: (s - 1) * 2 - 2 * 1 + 3 + output_padding = target
        up = []
        for k in range(num_layers, 0, -1):
            padding = sizes[k - 1] - ((sizes[k] - 1) * 2 - 2 * 1 + 3)
            up += [nn.ConvTranspose2d(channels[k], channels[k - 1], kernel_size=3, stride=2,
                                      padding=1, output_padding=padding),
                   nn.ReLU() if k > 1 else nn.Sigmoid()]
        self.up = nn.Sequential(*up)

    def encode(self, x):
        features = self.down(x)
        if self.variational:
            return self.fc_mu(features), self.fc_logvar(features)
        return self.fc(features)

    def decode(self, z):
        return self.up(self.reshape(self.decoder_fc(z)))


def copy_weights(model, guide):
    """The model's parameters into the guide's network, in order, each of the same shape."""
    pairs = list(zip(model.named_parameters(), guide.named_parameters(), strict=True))
    for (name, mine), (guide_name, theirs) in pairs:
        assert mine.shape == theirs.shape, (name, guide_name)
        theirs.data[...] = mine.data
    return pairs


def assert_same_gradients(pairs):
    for (name, mine), (guide_name, theirs) in pairs:
        assert mine.grad is not None and theirs.grad is not None, name
        scale = np.abs(theirs.grad).max()
        np.testing.assert_allclose(mine.grad, theirs.grad, rtol=1e-5, atol=1e-6 * scale,
                                   err_msg=f"{name} (the guide's {guide_name})")


CONV_CONFIGS = [  # the guide's own, and others: 3 channels, odd sizes, other depths
    dict(in_channels=1, base_channels=32, latent_dim=128, image_size=28),
    dict(in_channels=3, base_channels=4, latent_dim=5, image_size=13, num_layers=2),
    dict(in_channels=2, base_channels=3, latent_dim=4, image_size=9, num_layers=4),
]


@pytest.mark.parametrize("config", CONV_CONFIGS)
def test_conv_autoencoder_is_the_guides_network(config):
    model = ConvAutoencoder(**config)
    guide = GuideConvNetwork(**config)
    pairs = copy_weights(model, guide)
    up = [type(layer) for layer in guide.up]
    assert [type(layer) for layer in model.decoder] == [nn.Linear, nn.Unflatten] + up
    rng = np.random.default_rng(5)
    size = config["image_size"]
    x = ndl.tensor(rng.uniform(0, 1, (4, config["in_channels"], size, size)))
    z = ndl.tensor(rng.normal(0, 2, (4, config["latent_dim"])))

    np.testing.assert_allclose(model.encode(x).data, guide.encode(x).data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.decode(z).data, guide.decode(z).data, rtol=1e-5, atol=1e-6)
    recon, guide_recon = model(x), guide.decode(guide.encode(x))
    np.testing.assert_allclose(recon.data, guide_recon.data, rtol=1e-5, atol=1e-6)
    loss, guide_loss = MSELoss()(recon, x), MSELoss()(guide_recon, x)
    assert loss.item() == pytest.approx(guide_loss.item(), rel=1e-5)
    loss.backward()
    guide_loss.backward()
    assert_same_gradients(pairs)


@pytest.mark.parametrize("config", CONV_CONFIGS)
def test_conv_vae_is_the_guides_network(config):
    model = ConvVariationalAutoencoder(**config)
    guide = GuideConvNetwork(**config, variational=True)
    pairs = copy_weights(model, guide)
    up = [type(layer) for layer in guide.up]
    assert [type(layer) for layer in model.decoder] == [nn.Linear, nn.Unflatten] + up
    rng = np.random.default_rng(6)
    size, n = config["image_size"], 4
    x = ndl.tensor(rng.uniform(0, 1, (n, config["in_channels"], size, size)))
    eps = rng.standard_normal((n, config["latent_dim"])).astype(np.float32)

    model.train()
    mu, logvar = model.encode(x)
    recon = model.decode(model.reparameterize(mu, logvar, eps=eps))
    guide_mu, guide_logvar = guide.encode(x)
    guide_z = guide_mu + ndl.exp(guide_logvar * 0.5) * ndl.tensor(eps)  # z = mu + sigma * eps
    guide_recon = guide.decode(guide_z)
    for mine, theirs in [(mu, guide_mu), (logvar, guide_logvar), (recon, guide_recon)]:
        np.testing.assert_allclose(mine.data, theirs.data, rtol=1e-5, atol=1e-6)
    criterion = VAELoss(reconstruction_loss='bce')
    loss, guide_loss = criterion(recon, x, mu, logvar), criterion(guide_recon, x, guide_mu,
                                                                  guide_logvar)
    assert loss.item() == pytest.approx(guide_loss.item(), rel=1e-5)
    loss.backward()
    guide_loss.backward()
    assert_same_gradients(pairs)

    model.eval()  # z = mu: forward is the guide's decoder on the guide's mu
    np.testing.assert_allclose(model(x)[0].data, guide.decode(guide.encode(x)[0]).data,
                               rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ usage examples

def test_training_a_standard_autoencoder(capsys):
    X_train = flat_images(160)  # supplied: the guide leaves the data to the reader
    num_epochs = 4              # supplied

    # Create model
    model = Autoencoder(
        input_size=784,
        hidden_sizes=[512, 256],
        latent_dim=64
    )

    # Setup training
    optimizer = Adam(model.parameters(), lr=0.001)
    criterion = MSELoss()

    # Create dataloader
    dataset = TensorDataset(X_train, X_train)  # Input = target for autoencoders
    dataloader = DataLoader(dataset, batch_size=128, shuffle=True)

    # Training loop
    for epoch in range(num_epochs):
        model.train()
        epoch_loss = 0.0

        for batch_x, _ in dataloader:
            # Convert to tensors
            x = ndl.tensor(batch_x, requires_grad=False)

            # Forward pass
            recon = model(x)
            loss = criterion(recon, x)

            # Backward pass
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

            epoch_loss += loss.item()

        print(f"Epoch {epoch+1}: Loss = {epoch_loss / len(dataloader):.4f}")

    assert len(dataloader) == 2
    assert recon.shape == x.shape and recon.dtype == np.float32
    losses = printed_losses(capsys)
    assert len(losses) == num_epochs
    assert losses[-1] < losses[0]


def test_training_a_variational_autoencoder(capsys):
    X_train = flat_images(160)  # supplied, as in the block before
    num_epochs = 4              # supplied
    dataset = TensorDataset(X_train, X_train)
    dataloader = DataLoader(dataset, batch_size=128, shuffle=True)

    # Create VAE
    vae = VariationalAutoencoder(
        input_size=784,
        hidden_sizes=[512, 256],
        latent_dim=64
    )

    # supplied: the guide reuses `optimizer` from the block before, which optimises the
    # other model; the VAE needs its own.
    optimizer = Adam(vae.parameters(), lr=0.001)

    # VAE-specific loss
    criterion = VAELoss(
        reconstruction_loss='mse',
        beta=1.0,  # Standard VAE
        reduction='mean'
    )

    # Training loop
    for epoch in range(num_epochs):
        vae.train()
        epoch_loss = 0.0

        for batch_x, _ in dataloader:
            x = ndl.tensor(batch_x, requires_grad=False)

            # VAE forward returns (reconstruction, mu, logvar)
            recon, mu, logvar = vae(x)

            # Compute VAE loss
            loss = criterion(recon, x, mu, logvar)

            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

            epoch_loss += loss.item()

        print(f"Epoch {epoch+1}: Loss = {epoch_loss / len(dataloader):.4f}")

    assert recon.shape == (len(batch_x), 784) and mu.shape == logvar.shape == (len(batch_x), 64)
    losses = printed_losses(capsys)
    assert len(losses) == num_epochs
    assert losses[-1] < 0.9 * losses[0]


def test_generating_new_samples_with_vae():
    vae = VariationalAutoencoder(input_size=784, hidden_sizes=[512, 256], latent_dim=64)

    # After training, generate new samples
    vae.eval()

    # Generate 10 new samples
    samples = vae.sample(num_samples=10, device='cpu')

    # samples.shape = (10, 784) for standard VAE
    # or (10, 1, 28, 28) for ConvVAE
    assert samples.shape == (10, 784)
    assert samples.dtype == np.float32

    vae = ConvVariationalAutoencoder(in_channels=1, base_channels=32, latent_dim=128,
                                     image_size=28)
    vae.eval()
    samples = vae.sample(num_samples=10, device='cpu')
    assert samples.shape == (10, 1, 28, 28)
    assert samples.dtype == np.float32
    assert not samples.requires_grad  # sampling builds no graph


def test_latent_space_interpolation():
    vae = VariationalAutoencoder(input_size=784, hidden_sizes=[512, 256], latent_dim=64)
    images = flat_images(2, seed=3)
    image1, image2 = images[:1], images[1:]  # supplied: two images, each a batch of one

    # Encode two images
    vae.eval()
    x1 = ndl.tensor(image1, requires_grad=False)
    x2 = ndl.tensor(image2, requires_grad=False)

    mu1, _ = vae.encode(x1)
    mu2, _ = vae.encode(x2)

    # Interpolate in latent space
    num_steps = 10
    alphas = np.linspace(0, 1, num_steps)
    interpolations = []

    for alpha in alphas:
        z = mu1 * (1 - alpha) + mu2 * alpha
        recon = vae.decode(z)
        interpolations.append(recon.data)

    # NumPy float64 scalars on the left or right of a float32 Tensor keep it float32.
    assert alphas.dtype == np.float64 and isinstance(alphas[3], np.float64)
    for alpha in alphas:
        z = mu1 * (1 - alpha) + mu2 * alpha
        assert isinstance(z, ndl.Tensor) and z.dtype == np.float32 and z.shape == (1, 64)
    assert len(interpolations) == num_steps
    assert all(isinstance(r, np.ndarray) and r.shape == (1, 784) and r.dtype == np.float32
               for r in interpolations)
    # The path runs from the first image's reconstruction to the second's.
    np.testing.assert_allclose(interpolations[0], vae.decode(mu1).data, atol=1e-6)
    np.testing.assert_allclose(interpolations[-1], vae.decode(mu2).data, atol=1e-6)
    middle = interpolations[num_steps // 2]
    assert not np.allclose(middle, interpolations[0]) and not np.allclose(middle, interpolations[-1])


def test_training_a_convolutional_autoencoder():
    # Create convolutional autoencoder
    model = ConvAutoencoder(
        in_channels=1,       # Grayscale images
        base_channels=32,
        latent_dim=128,
        image_size=28
    )

    # supplied: the guide reuses the dataloader, criterion and optimizer of the first
    # example; here they are made for images of shape (N, 1, 28, 28).
    images = flat_images(24).reshape(24, 1, 28, 28)
    dataloader = DataLoader(TensorDataset(images, images), batch_size=8, shuffle=True)
    criterion = MSELoss()
    optimizer = Adam(model.parameters(), lr=0.001)
    losses = []
    for epoch in range(2):  # supplied: two passes, to see the loss fall

        # Training is similar to standard autoencoder
        # Input shape: (batch_size, channels, height, width)
        for batch_x, _ in dataloader:
            # batch_x shape: (batch_size, 1, 28, 28)
            x = ndl.tensor(batch_x, requires_grad=False)

            recon = model(x)
            loss = criterion(recon, x)

            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())  # supplied

    assert batch_x.shape == (8, 1, 28, 28)
    assert recon.shape == (8, 1, 28, 28) and recon.dtype == np.float32
    assert np.mean(losses[-2:]) < 0.9 * np.mean(losses[:2])


# ------------------------------------------------------------------ applications

def test_dimensionality_reduction():
    X = flat_images(40)  # supplied
    # Train autoencoder
    model = Autoencoder(input_size=784, hidden_sizes=[256], latent_dim=32)
    # ... train model ...
    optimizer = Adam(model.parameters(), lr=0.001)  # supplied: a short training
    losses = [mse_step(model, optimizer, ndl.tensor(X)) for _ in range(3)]
    assert losses[-1] < losses[0]

    # Extract low-dimensional features
    model.eval()
    z = model.encode(ndl.tensor(X, requires_grad=False))
    features = z.data  # Shape: (n_samples, 32)

    n_samples = len(X)
    assert isinstance(features, np.ndarray)
    assert features.shape == (n_samples, 32) and features.dtype == np.float32
    np.testing.assert_array_equal(features, model.encode(ndl.tensor(X)).data)


def test_denoising():
    X_train = flat_images(64)  # supplied: data, model, criterion, optimizer and dataloader
    model = Autoencoder(input_size=784, hidden_sizes=[256], latent_dim=32)
    criterion = MSELoss()
    optimizer = Adam(model.parameters(), lr=0.001)
    dataloader = DataLoader(TensorDataset(X_train, X_train), batch_size=32, shuffle=True)
    losses = []

    for epoch in range(3):  # supplied: a few passes
        # Train on clean data, but add noise during training
        for batch_x, _ in dataloader:
            # Add noise
            noisy_x = batch_x + np.random.normal(0, 0.1, batch_x.shape)
            noisy_x = np.clip(noisy_x, 0, 1)

            # Train to reconstruct clean from noisy
            x_noisy = ndl.tensor(noisy_x, requires_grad=False)
            x_clean = ndl.tensor(batch_x, requires_grad=False)

            recon = model(x_noisy)
            loss = criterion(recon, x_clean)

            # supplied: the guide's block computes the loss but never steps
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())

    # NumPy's noise is float64; ndl.tensor makes float data float32.
    assert noisy_x.dtype == np.float64
    assert x_noisy.dtype == np.float32 and recon.dtype == np.float32
    assert not np.array_equal(x_noisy.data, x_clean.data)
    assert recon.shape == x_clean.shape
    assert np.mean(losses[-2:]) < np.mean(losses[:2])


def test_anomaly_detection(digits):
    # supplied: "Train on normal data only": an autoencoder trained on the digits; the
    # anomalies are uniform-noise images, scored one sample at a time by the guide's block.
    images, _ = digits
    data = images.reshape(len(images), 64)
    normal_train, normal_test = data[:1400], data[1400:]
    noise = np.random.default_rng(9).uniform(0, 1, (50, 64)).astype(np.float32)
    model = Autoencoder(input_size=64, hidden_sizes=[32], latent_dim=8)

    def score(test_sample):  # supplied: the guide's block, as a function of one sample
        # Train on normal data only
        # Anomalies have high reconstruction error

        model.eval()
        x = ndl.tensor(test_sample, requires_grad=False)
        recon = model(x)

        # Compute reconstruction error
        error = np.mean((x.data - recon.data) ** 2)
        is_anomaly = error > threshold
        return error, is_anomaly

    def errors(samples):
        return np.array([score(sample[None])[0] for sample in samples])

    threshold = np.inf  # supplied: a placeholder until the training errors are known
    # Untrained, the ranking is the other way round (an output near 0.5 everywhere is
    # closer to noise than to the mostly dark digits): what follows is learnt.
    assert errors(noise).mean() < errors(normal_test).mean()

    optimizer = Adam(model.parameters(), lr=0.003)
    for epoch in range(10):
        for (batch,) in DataLoader(TensorDataset(normal_train), batch_size=64, shuffle=True):
            mse_step(model, optimizer, ndl.tensor(batch))

    threshold = errors(normal_train).max()  # supplied: the largest error on normal data
    normal_flags = [score(sample[None])[1] for sample in normal_test]
    noise_flags = [score(sample[None])[1] for sample in noise]
    assert all(noise_flags)
    assert np.mean(normal_flags) <= 0.05
    assert errors(noise).min() > errors(normal_test).max()


def test_data_generation():
    vae = VariationalAutoencoder(input_size=784, hidden_sizes=[256], latent_dim=16)

    # Generate random samples
    vae.eval()
    new_samples = vae.sample(num_samples=100, device='cpu')

    # Interpolate between samples
    # (see Latent Space Interpolation example above)
    assert new_samples.shape == (100, 784) and new_samples.dtype == np.float32
    assert len({row.tobytes() for row in new_samples.data}) == 100  # all different


def train_classifier(model, images, labels, steps, lr=0.01):
    optimizer = Adam(model.parameters(), lr=lr)
    criterion = CrossEntropyLoss()
    losses = []
    for step in range(steps):
        loss = criterion(model(ndl.tensor(images)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_transfer_learning_with_the_guides_classifier(digits):
    images, labels = digits
    data, labels = images[:400].reshape(400, 64), labels[:400]
    latent_dim = 16  # supplied: the guide's Classifier reads latent_dim from its scope

    # Use encoder for feature extraction
    model = Autoencoder(input_size=64, hidden_sizes=[32], latent_dim=latent_dim)  # supplied args
    # ... train on large dataset ...
    optimizer = Adam(model.parameters(), lr=0.003)  # supplied: a short pre-training
    for _ in range(5):
        mse_step(model, optimizer, ndl.tensor(data))

    # Extract encoder
    encoder = model.encoder

    # Use encoder features for downstream task
    class Classifier(Module):
        def __init__(self, encoder, num_classes):
            super().__init__()
            self.encoder = encoder
            self.classifier = Linear(latent_dim, num_classes)

        def forward(self, x):
            # Freeze encoder if desired
            features = self.encoder(x)
            return self.classifier(features)

    classifier = Classifier(encoder, num_classes=10)
    assert classifier(ndl.tensor(data[:5])).shape == (5, 10)
    names = [name for name, _ in classifier.named_parameters()]
    assert names[:2] == ["encoder.0.weight", "encoder.0.bias"]
    assert names[-2:] == ["classifier.weight", "classifier.bias"]
    losses = train_classifier(classifier, data, labels, steps=30)
    assert losses[-1] < 0.5 * losses[0]


def test_transfer_learning_with_the_package_classifier(digits):
    images, labels = digits
    data, labels = images[:400].reshape(400, 64), labels[:400]

    def pretrained_encoder():
        ndl.manual_seed(1)
        model = Autoencoder(input_size=64, hidden_sizes=[32], latent_dim=16)
        optimizer = Adam(model.parameters(), lr=0.003)
        for _ in range(5):
            mse_step(model, optimizer, ndl.tensor(data))
        return model.encoder

    # Frozen: the encoder's weights stay as they are, only the head trains.
    frozen = ClassifierHead(pretrained_encoder(), num_classes=10, feature_dim=16,
                            freeze_encoder=True)
    encoder_before = {k: v for k, v in frozen.state_dict().items() if k.startswith("encoder.")}
    head_before = frozen.classifier.weight.data.copy()
    losses = train_classifier(frozen, data, labels, steps=30, lr=0.1)
    assert losses[-1] < 0.7 * losses[0]
    accuracy = np.mean(frozen(ndl.tensor(data)).data.argmax(axis=1) == labels)
    assert accuracy > 0.5  # ten classes: chance is 0.1
    for name, value in frozen.state_dict().items():
        if name.startswith("encoder."):
            np.testing.assert_array_equal(value, encoder_before[name], err_msg=name)
    assert all(p.grad is None and not p.requires_grad for p in frozen.encoder.parameters())
    assert not np.allclose(frozen.classifier.weight.data, head_before)

    # Trainable: the encoder is fine-tuned along with the head.
    tuned = ClassifierHead(pretrained_encoder(), num_classes=10, feature_dim=16)
    encoder_before = tuned.encoder.state_dict()
    losses = train_classifier(tuned, data, labels, steps=30)
    assert losses[-1] < 0.7 * losses[0]
    changed = [not np.allclose(value, encoder_before[name])
               for name, value in tuned.encoder.state_dict().items()]
    assert all(changed)


# ------------------------------------------------------------------ advanced topics

def test_beta_vae():
    vae = VariationalAutoencoder(input_size=784, hidden_sizes=[64], latent_dim=8)
    vae.eval()
    x = ndl.tensor(flat_images(6))
    recon, mu, logvar = vae(x)
    standard = VAELoss(reconstruction_loss='mse', beta=1.0, reduction='mean')

    criterion = VAELoss(
        reconstruction_loss='mse',
        beta=4.0,  # Stronger KL regularization
        reduction='mean'
    )

    kl = KLDivergenceLoss(reduction='mean')(mu, logvar).item()
    assert kl > 0
    beta_loss, standard_loss = criterion(recon, x, mu, logvar).item(), standard(recon, x, mu, logvar).item()
    assert beta_loss > standard_loss
    # float32 losses of ~40: their difference is good to about 1e-5 of their size
    assert beta_loss - standard_loss == pytest.approx(3 * kl, abs=1e-5 * beta_loss)
    # With a perfect reconstruction only the KL term is left: exactly beta times KL.
    target = recon.detach()
    assert criterion(recon, target, mu, logvar).item() == pytest.approx(4 * kl, rel=1e-5)
    assert standard(recon, target, mu, logvar).item() == pytest.approx(kl, rel=1e-5)


def test_conditional_vae(digits):
    # The guide's ConditionalVAE is a sketch (its signature holds a literal `...` and it
    # calls an undefined to_one_hot); the package's numpy_dl.models.ConditionalVAE is the
    # working version. The guide's conditioning step, with ndl.one_hot for to_one_hot:
    x = ndl.tensor(flat_images(4))
    labels = np.array([0, 3, 9, 3])
    labels_onehot = ndl.one_hot(labels, 10)
    x_cond = ndl.cat([x, labels_onehot], dim=1)
    assert x_cond.shape == (4, 794) and x_cond.dtype == np.float32
    np.testing.assert_array_equal(x_cond.data[:, 784:].argmax(axis=1), labels)

    images, digit_labels = digits
    data = images[:600].reshape(600, 64)
    digit_labels = digit_labels[:600]
    cvae = ConditionalVAE(input_size=64, num_classes=10, hidden_sizes=[64], latent_dim=8)
    recon, mu, logvar = cvae(ndl.tensor(data[:5]), digit_labels[:5])
    assert recon.shape == (5, 64) and mu.shape == logvar.shape == (5, 8)
    assert cvae.sample(6, labels=np.arange(6)).shape == (6, 64)
    assert cvae.sample(4, labels=7).shape == (4, 64)
    assert cvae.sample(3).shape == (3, 64)
    ndl.manual_seed(5)
    as_one = cvae.sample(2, labels=1).data
    ndl.manual_seed(5)
    as_two = cvae.sample(2, labels=2).data
    assert not np.allclose(as_one, as_two)  # same z, different label, different image

    criterion = VAELoss(reconstruction_loss='bce')
    optimizer = Adam(cvae.parameters(), lr=0.003)
    loader = DataLoader(TensorDataset(data, digit_labels), batch_size=64, shuffle=True)
    epoch_losses = []
    for epoch in range(4):
        cvae.train()
        total = 0.0
        for batch_x, batch_labels in loader:
            x = ndl.tensor(batch_x)
            recon, mu, logvar = cvae(x, batch_labels)
            loss = criterion(recon, x, mu, logvar)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        epoch_losses.append(total / len(loader))
    assert epoch_losses[-1] < 0.8 * epoch_losses[0]


def test_sparse_autoencoder():
    model = Autoencoder(input_size=784, hidden_sizes=[64], latent_dim=8)
    x = ndl.tensor(flat_images(5))
    criterion = MSELoss()
    reconstruction_loss = criterion(model(x), x)  # supplied: the loss the block adds to

    z = model.encode(x)
    sparsity_loss = 0.001 * ndl.abs(z).mean()
    total_loss = reconstruction_loss + sparsity_loss

    total_loss.backward()
    with_sparsity = {name: p.grad.copy() for name, p in model.named_parameters()}
    model.zero_grad()
    criterion(model(x), x).backward()
    without = {name: p.grad.copy() for name, p in model.named_parameters()}

    assert total_loss.item() == pytest.approx(
        reconstruction_loss.item() + 0.001 * np.abs(z.data).mean(), rel=1e-6)
    # The penalty reaches the encoder only; its gradient on the latent layer's bias is
    # 0.001 * sign(z) averaged over all N * latent_dim entries, summed over the batch.
    for name in with_sparsity:
        if name.startswith("decoder."):
            np.testing.assert_allclose(with_sparsity[name], without[name], rtol=1e-5, atol=1e-9)
        else:
            assert not np.allclose(with_sparsity[name], without[name], rtol=1e-6, atol=0), name
    expected = 0.001 * np.sign(z.data).sum(axis=0) / z.data.size
    np.testing.assert_allclose(with_sparsity["encoder.2.bias"] - without["encoder.2.bias"],
                               expected, rtol=1e-3, atol=1e-9)
