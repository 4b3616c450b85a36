"""A dependency-free PNG of a 2-D sample histogram (for the demo)."""

import struct
import zlib

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def histogram_png(
    path,
    panels: list[np.ndarray],
    *,
    bounds: tuple[float, float] = (-3.0, 3.0),
    size: int = 160,
    gap: int = 8,
) -> None:
    """Writes side-by-side 2-D histograms of sample sets as a grayscale PNG.

    Args:
        path: the file to write.
        panels: arrays of shape `(n, 2)`, one panel each (dark = dense).
        bounds: the square `[low, high]^2` shown in every panel.
        size: the side of each panel in pixels.
        gap: white pixels between panels.
    """
    low, high = bounds
    images = []
    for samples in panels:
        counts, _, _ = np.histogram2d(
            np.asarray(samples)[:, 1],
            np.asarray(samples)[:, 0],
            bins=size,
            range=[[low, high], [low, high]],
        )
        counts = counts[::-1]  # y grows upwards
        scaled = np.sqrt(counts / max(counts.max(), 1.0))
        images.append((255 * (1.0 - scaled)).astype(np.uint8))
        images.append(np.full((size, gap), 255, np.uint8))
    image = np.concatenate(images[:-1], axis=1)
    rows = b"".join(b"\x00" + row.tobytes() for row in image)
    header = struct.pack(">IIBBBBB", image.shape[1], image.shape[0], 8, 0, 0, 0, 0)
    with open(path, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n")
        file.write(_chunk(b"IHDR", header))
        file.write(_chunk(b"IDAT", zlib.compress(rows, 9)))
        file.write(_chunk(b"IEND", b""))
