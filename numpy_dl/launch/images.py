"""Pictures of images as PNG, drawn with Pillow: grids, inputs above their
reconstructions, strips. (loss.png is drawn by plots.py.)

Images arrive as float arrays (N, C, H, W) in [0, 1]. One channel is drawn grey, three
as RGB, any other count by its first channel. Small images (8x8 digits) are enlarged by
a whole factor (nearest neighbour, so pixels stay sharp) to cells of about 32 pixels,
and cells are separated by a 2-pixel border: a grid of R rows and K columns of H x W
images is K * (s*W + 2) + 2 pixels wide and R * (s*H + 2) + 2 high, s = max(1, 32 // H).
"""
import io
import math

import numpy as np
from PIL import Image

from ..checkpoint import write_atomically

CELL = 32
BORDER = 2
BORDER_GREY = 96


def scale_for(height, width):
    return max(1, CELL // max(height, width))


def grid(images, columns):
    """The images in rows of `columns` cells, row-major."""
    images = np.asarray(images)
    count, _, height, width = images.shape
    columns = max(1, min(int(columns), count))
    rows = math.ceil(count / columns)
    scale = scale_for(height, width)
    cell_h, cell_w = height * scale + BORDER, width * scale + BORDER
    pixels = _to_pixels(images)
    canvas = Image.new(_mode(pixels), (columns * cell_w + BORDER, rows * cell_h + BORDER),
                       _grey(pixels, BORDER_GREY))
    for index, picture in enumerate(pixels):
        row, column = divmod(index, columns)
        tile = Image.fromarray(picture).resize((width * scale, height * scale), Image.NEAREST)
        canvas.paste(tile, (BORDER + column * cell_w, BORDER + row * cell_h))
    return canvas


def pairs(inputs, outputs, columns=8):
    """Each row of inputs directly above the row of their reconstructions."""
    inputs, outputs = np.asarray(inputs), np.asarray(outputs)
    columns = max(1, min(int(columns), len(inputs)))
    rows = []
    for start in range(0, len(inputs), columns):
        chunk = slice(start, start + columns)
        rows += [_padded(inputs[chunk], columns), _padded(outputs[chunk], columns)]
    return grid(np.concatenate(rows), columns)


def strip(images):
    """The images in one row."""
    return grid(images, len(images))


def _padded(images, count):
    """`images` followed by blank ones up to `count`, so a short last row stays aligned."""
    blank = np.zeros((count - len(images),) + images.shape[1:], images.dtype)
    return np.concatenate([images, blank])


def _to_pixels(images):
    """(N, H, W) or (N, H, W, 3) uint8."""
    channels = images.shape[1]
    chosen = images.transpose(0, 2, 3, 1) if channels == 3 else images[:, 0]
    return (np.clip(chosen, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def _mode(pixels):
    return "RGB" if pixels.ndim == 4 else "L"


def _grey(pixels, level):
    return (level,) * 3 if pixels.ndim == 4 else level


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(image, path):
    write_atomically(path, png_bytes(image))
