"""Writes the seed corpus of the dataset fuzz targets into corpus/<target>/ (small, committed).

Usage: python3 tests/datasets/fuzz/make_seeds.py   (re-run only to change the seeds)
"""
import io
import os
import tarfile
import zipfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


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


if __name__ == "__main__":
    image_seeds()
    archive_seeds()
    npy_seeds()
