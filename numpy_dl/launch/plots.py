"""loss.png: the loss curves of a run, drawn with matplotlib.

matplotlib is imported here, when a plot is drawn, and only its object-oriented API is
used (a Figure on an Agg canvas, never pyplot): importing numpy_dl, or a run that draws
no plot, does not load it, and drawing changes no global state (no backend is chosen,
no figure is left open), so the launcher's tests can draw in their own process.

The plot reads metrics.jsonl's records: the loss per epoch, training and validation;
for VAEs a second panel with its two parts, the reconstruction term (solid) and the KL
term (dashed). An axis whose values span more than a decade is drawn on a log scale, so
that the first epochs' large losses do not flatten the rest of the curve.
"""
import io
import math

from ..checkpoint import write_atomically

SIZE = (8.0, 5.0)      # inches: 1200 x 750 pixels at DPI
DPI = 150
MARGINS = {"left": 0.08, "right": 0.98, "bottom": 0.09, "top": 0.84, "wspace": 0.2}
COLOURS = {"train": "tab:blue", "val": "tab:orange"}
SPLIT_NAMES = {"train": "training", "val": "validation"}
MARKED = 30            # epochs up to which each point is marked (a 1-epoch run shows one)
RECON_NAMES = {"bce": "binary cross-entropy", "mse": "squared error"}


def save_loss_plot(path, records, recon_loss, beta, title):
    """Write the loss plot of `records` (metrics.jsonl's) to `path` as a PNG."""
    buffer = io.BytesIO()
    loss_figure(records, recon_loss, beta, title).savefig(buffer, format="png")
    write_atomically(path, buffer.getvalue())


def loss_figure(records, recon_loss, beta, title):
    """The matplotlib Figure of the loss plot of `records` (in epoch order). A record
    without validation (none held out, or not validated that epoch) has no validation
    point."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    variational = any("train_kl" in record for record in records)
    figure = Figure(figsize=SIZE, dpi=DPI)
    figure.subplots_adjust(**MARGINS)  # fixed: a computed layout doubles the drawing time
    FigureCanvasAgg(figure)
    figure.suptitle(f"{title}\nreconstruction error: {RECON_NAMES[recon_loss]} summed over "
                    f"each sample's pixels", fontsize="medium")
    if not variational:
        axes = figure.subplots()
        for split in COLOURS:
            _line(axes, records, f"{split}_loss", split, SPLIT_NAMES[split])
        _finish(axes, "loss: the reconstruction error")
    else:
        loss, parts = figure.subplots(1, 2)
        for split in COLOURS:
            _line(loss, records, f"{split}_loss", split, SPLIT_NAMES[split])
            _line(parts, records, f"{split}_recon", split, f"{SPLIT_NAMES[split]} reconstruction")
            _line(parts, records, f"{split}_kl", split, f"{SPLIT_NAMES[split]} KL", style="--")
        weighted = "KL" if beta == 1 else f"{beta:g} x KL"
        _finish(loss, f"loss: negative ELBO = reconstruction + {weighted}")
        _finish(parts, "its terms: reconstruction and KL divergence")
    return figure


def _line(axes, records, key, split, label, style="-"):
    """The values of `key` against the epoch, in the colour of its split."""
    points = [(r["epoch"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    if not points:
        return
    epochs, values = zip(*points)
    axes.plot(epochs, values, style, color=COLOURS[split], label=label, linewidth=1.5,
              marker="o" if len(points) <= MARKED else None, markersize=3)


def _finish(axes, title):
    """The panel's title, axis titles, integer epoch ticks, a log scale where the values
    span more than a decade, a grid and the legend."""
    from matplotlib.ticker import MaxNLocator

    axes.set_title(title, fontsize="medium")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss per sample")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    epochs = {x for line in axes.get_lines() for x in line.get_xdata()}
    if len(epochs) == 1:  # one point: its epoch alone, not fractions of one around it
        axes.set_xticks(sorted(epochs))
    values = [v for line in axes.get_lines() for v in line.get_ydata() if math.isfinite(v)]
    if values and min(values) > 0 and max(values) > 10 * min(values):
        axes.set_yscale("log")
        axes.grid(True, which="minor", alpha=0.1)
    axes.grid(True, which="major", alpha=0.4)
    if axes.get_lines():
        axes.legend(fontsize="small")
