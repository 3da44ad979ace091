#!/usr/bin/env python3
"""Writes a tiny synthetic IDX dataset (MNIST layout) that a model can learn in one short epoch:
class k has a bright horizontal bar at rows 2k+4..2k+5 over uniform noise.

    service_make_idx.py OUT_DIR [N_TRAIN=256] [N_TEST=128]
    -> OUT_DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte
"""
import os
import random
import struct
import sys


def write_split(out_dir: str, prefix: str, n: int, seed: int) -> None:
    rng = random.Random(seed)
    labels = bytes(i % 10 for i in range(n))
    images = bytearray()
    for label in labels:
        img = bytearray(rng.randrange(0, 60) for _ in range(28 * 28))
        for row in (2 * label + 4, 2 * label + 5):
            for col in range(4, 24):
                img[row * 28 + col] = 200 + rng.randrange(0, 56)
        images += img
    with open(os.path.join(out_dir, f"{prefix}-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + bytes(images))
    with open(os.path.join(out_dir, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + labels)


def main(argv):
    out_dir = argv[1]
    n_train = int(argv[2]) if len(argv) > 2 else 256
    n_test = int(argv[3]) if len(argv) > 3 else 128
    os.makedirs(out_dir, exist_ok=True)
    write_split(out_dir, "train", n_train, 1)
    write_split(out_dir, "t10k", n_test, 2)


if __name__ == "__main__":
    main(sys.argv)
