"""Writes the seed corpus of the dataset fuzz targets into corpus/<target>/ (small, committed).

The folder formats' targets (dataset_format_fuzzer.cc) take a folder as files joined by
FILE_SEPARATOR, each "path\n" then its bytes.

Usage: python3 tests/datasets/fuzz/make_seeds.py   (re-run only to change the seeds)
"""
import gzip
import io
import os
import struct
import tarfile
import zipfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
FILE_SEPARATOR = b"\n--qnet-fuzz-file--\n"


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def encoded(image, fmt, **options):
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def gradient(mode, w, h):
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    grey = (xs * 9 + ys * 5) % 256
    if mode == "L":
        return Image.fromarray(grey.astype(np.uint8), "L")
    rgb = np.stack([grey, 255 - grey, (grey * 3) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").convert(mode)


def image_seeds():
    write("image_decoder", "grey.png", encoded(gradient("L", 7, 5), "PNG"))
    write("image_decoder", "rgba.png", encoded(gradient("RGBA", 6, 3), "PNG"))
    write("image_decoder", "palette.png", encoded(gradient("RGB", 5, 4).convert("P"), "PNG"))
    write("image_decoder", "grey16.png",
          encoded(Image.fromarray((np.arange(12).reshape(3, 4) * 5000).astype(np.uint16)), "PNG"))
    write("image_decoder", "grey_alpha.png", encoded(gradient("LA", 4, 4), "PNG"))
    write("image_decoder", "rgb.jpg", encoded(gradient("RGB", 9, 7), "JPEG", quality=90))
    write("image_decoder", "grey.jpg", encoded(gradient("L", 8, 8), "JPEG"))
    write("image_decoder", "progressive.jpg",
          encoded(gradient("RGB", 17, 9), "JPEG", progressive=True))
    write("image_decoder", "cmyk.jpg", encoded(gradient("CMYK", 4, 4), "JPEG"))


def archive_seeds():
    files = {
        "train/a/0.png": encoded(gradient("L", 3, 2), "PNG"),
        "train/b/1.jpg": encoded(gradient("RGB", 3, 2), "JPEG"),
        "test/a/2.png": encoded(gradient("RGB", 3, 2), "PNG"),
    }
    for name, mode in (("dataset.tar", "w"), ("dataset.tar.gz", "w:gz")):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode=mode, format=tarfile.USTAR_FORMAT) as tar:
            for path, data in files.items():
                info = tarfile.TarInfo(path)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        write("archive_reader", name, out.getvalue())
    for name, method in (("dataset.zip", zipfile.ZIP_STORED),
                         ("deflated.zip", zipfile.ZIP_DEFLATED)):
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", method) as z:
            z.writestr("myset/", b"")
            for path, data in files.items():
                z.writestr("myset/" + path, data)
        write("archive_reader", name, out.getvalue())


def npy_seeds():
    arrays = {
        "images_nhwc.npy": np.zeros((2, 3, 4, 3), np.uint8),
        "labels_i8.npy": np.arange(5, dtype=np.int64),
        "labels_be.npy": np.arange(3, dtype=">u2"),
        "scalar.npy": np.array(7, np.int32),
        "column.npy": np.zeros((4, 1), np.int16),
    }
    for name, array in arrays.items():
        out = io.BytesIO()
        np.save(out, array)
        write("npy_header", name, out.getvalue())
    out = io.BytesIO()
    np.lib.format.write_array(out, np.zeros((2, 2), np.uint8), version=(2, 0))
    write("npy_header", "version2.npy", out.getvalue())


def folder(files):
    return FILE_SEPARATOR.join(path.encode() + b"\n" + data for path, data in files.items())


def idx(dims, data):
    magic = 0x0800 | len(dims)
    return struct.pack(">I" + "I" * len(dims), magic, *dims) + bytes(data)


def dataset_format_seeds():
    images = lambda n: idx([n, 4, 3], range(n * 12))
    labels = lambda values: idx([len(values)], values)
    write("idx_format", "raw", folder({
        "train-images-idx3-ubyte": images(3), "train-labels-idx1-ubyte": labels([0, 9, 4]),
        "t10k-images-idx3-ubyte": images(2), "t10k-labels-idx1-ubyte": labels([1, 2])}))
    write("idx_format", "gzip", folder({
        "train-images-idx3-ubyte.gz": gzip.compress(images(2), mtime=0),
        "train-labels-idx1-ubyte.gz": gzip.compress(labels([3, 5]), mtime=0),
        "t10k-images-idx3-ubyte": images(1), "t10k-labels-idx1-ubyte": labels([7])}))

    record = lambda label: bytes([label]) + bytes((i * 7 + label) % 256 for i in range(3 * 32 * 32))
    batches = {f"data_batch_{i}.bin": record(i) for i in range(1, 6)}
    write("cifar10_format", "batches", folder({**batches, "test_batch.bin": record(9)}))
    write("cifar10_format", "subfolder_gzip", folder(
        {"cifar-10-batches-bin/" + name: gzip.compress(data, mtime=0)
         for name, data in {**batches, "test_batch.bin": record(0) + record(1)}.items()}))

    write("imagefolder_format", "train_test", folder({
        "train/cat/0.png": encoded(gradient("RGB", 3, 2), "PNG"),
        "train/dog/1.jpg": encoded(gradient("RGB", 3, 2), "JPEG"),
        "test/cat/2.png": encoded(gradient("L", 3, 2), "PNG")}))
    write("imagefolder_format", "train_val_sizes", folder({
        "train/a/0.png": encoded(gradient("RGBA", 4, 3), "PNG"),
        "train/b/1.png": encoded(gradient("RGB", 2, 5), "PNG"),
        "val/b/2.jpg": encoded(gradient("L", 4, 3), "JPEG")}))

    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (3, 4, 4), np.uint8),
              "y_train": np.array([0, 2, 1], np.int64),
              "x_test": rng.integers(0, 256, (2, 4, 4), np.uint8),
              "y_test": np.array([[1], [0]], np.uint8)}
    for name, save in (("grey.npz", np.savez), ("grey_compressed.npz", np.savez_compressed)):
        out = io.BytesIO()
        save(out, **arrays)
        write("npz_format", name, out.getvalue())
    out = io.BytesIO()
    np.savez(out, x_train=rng.integers(0, 256, (2, 3, 2, 2), np.uint8), y_train=np.array([1, 0]))
    write("npz_format", "nchw_train_only.npz", out.getvalue())


if __name__ == "__main__":
    image_seeds()
    archive_seeds()
    npy_seeds()
    dataset_format_seeds()
