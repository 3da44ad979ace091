"""Writes a JPEG image folder (train/<class>/*.jpg, test/<class>/*.jpg) for the loader benchmark.

Usage: make_image_folder.py OUT --train N --test M --min-side A --max-side B [--classes K]
                             [--fashion-mnist DIR --png]
Each image is a smooth random colour field with a class-dependent stripe, or with --fashion-mnist
the first N / M images of that IDX folder's splits (grey, resized); sides drawn in
[min-side, max-side]; saved at JPEG quality 90, or as PNG with --png. Same arguments, same files
(seeded).
"""
import gzip
import argparse
import os

import numpy as np
from PIL import Image


def read_idx(folder, prefix):
    with gzip.open(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--min-side", type=int, default=32)
    p.add_argument("--max-side", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--fashion-mnist", help="IDX folder to take the images from")
    p.add_argument("--png", action="store_true")
    a = p.parse_args()
    rng = np.random.default_rng(1)
    for split, count in (("train", a.train), ("test", a.test)):
        if a.fashion_mnist:
            images, labels = read_idx(a.fashion_mnist, "train" if split == "train" else "t10k")
        for i in range(count):
            label = int(labels[i]) if a.fashion_mnist else i % a.classes
            h, w = rng.integers(a.min_side, a.max_side + 1, size=2)
            folder = os.path.join(a.out, split, f"c{label}")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"{i:06d}.{'png' if a.png else 'jpg'}")
            if a.fashion_mnist:
                Image.fromarray(images[i]).resize((int(w), int(h)), Image.BILINEAR).save(path)
                continue
            coarse = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
            image = Image.fromarray(coarse).resize((int(w), int(h)), Image.BILINEAR)
            pixels = np.asarray(image).copy()
            band = slice(label * h // a.classes, (label + 1) * h // a.classes)
            pixels[band, :, label % 3] = 255
            noise = rng.integers(-12, 13, size=pixels.shape)
            pixels = np.clip(pixels.astype(np.int32) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(path, quality=90)


if __name__ == "__main__":
    main()
