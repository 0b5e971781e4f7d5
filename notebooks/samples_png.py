#!/usr/bin/python3
"""Save a generator sample grid from a run log as a PNG.

Usage: /usr/bin/python3 notebooks/samples_png.py RUN.h5 OUT.png [STEP]
Takes the grid of /samples/generator logged at STEP (default: the last one) and writes it as an
8-bit grayscale PNG, scaled up 3x so the 28x28 digits are visible. Needs only h5py and numpy.
Opens the log in SWMR mode, so it works on a running or killed run too (schema: framework/log.h).
"""
import struct
import sys
import zlib

import h5py
import numpy as np


def write_png(path, img):
    """Minimal grayscale PNG writer (one IDAT chunk, no filtering)."""
    h, w = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(tag, data):
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    with h5py.File(sys.argv[1], "r", swmr=True) as f:
        if "samples/generator" not in f:
            sys.exit(f"{sys.argv[1]}: no /samples/generator (was the run made with gan=1?)")
        group = f["samples/generator"]
        steps, images = group["step"], group["images"]
        n = min(len(steps), len(images))  # complete rows (a killed run may have a partial one)
        steps = list(steps[:n])
        if n == 0:
            sys.exit(f"{sys.argv[1]}: no samples logged yet")
        step = int(sys.argv[3]) if len(sys.argv) == 4 else steps[-1]
        if step not in steps:
            sys.exit(f"{sys.argv[1]}: no samples at step {step}; have {steps}")
        grid = np.asarray(images[steps.index(step)], dtype=np.uint8)
    big = np.kron(grid, np.ones((3, 3), dtype=np.uint8))
    write_png(sys.argv[2], big)
    print(f"{sys.argv[2]}: step {step}, {grid.shape[1]}x{grid.shape[0]} grid")


if __name__ == "__main__":
    main()
