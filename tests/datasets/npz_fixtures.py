"""Writes the .npz files npz_format_test.cc reads, with NumPy's own writer.

Usage: npz_fixtures.py OUT_DIR

Pixel (n, h, w, c) of every images array is (n * 7 + h * 5 + w * 3 + c * 11) % 256, stored in
the layout the file name says; train labels are n % 4 (4 classes), test labels (n + 1) % 4.
"""
import os
import sys
import zipfile

import numpy as np


def images(n, h, w, c):
    idx = np.indices((n, h, w, c))
    return ((idx[0] * 7 + idx[1] * 5 + idx[2] * 3 + idx[3] * 11) % 256).astype(np.uint8)


def main(out):
    os.makedirs(out, exist_ok=True)
    train, test = images(6, 5, 4, 3), images(4, 5, 4, 3)
    y_train, y_test = np.arange(6) % 4, (np.arange(4) + 1) % 4
    path = lambda name: os.path.join(out, name)

    # Good files, one per layout and label dtype.
    np.savez(path("nhwc.npz"), x_train=train, y_train=y_train.astype(np.int64),
             x_test=test, y_test=y_test.astype(np.int64))
    np.savez(path("nchw.npz"), x_train=train.transpose(0, 3, 1, 2), y_train=y_train.astype(">i4"),
             x_test=test.transpose(0, 3, 1, 2), y_test=y_test.astype(np.uint8))
    np.savez(path("nhw.npz"), x_train=train[..., 0], y_train=y_train.astype(np.int16).reshape(6, 1),
             x_test=test[..., 0], y_test=y_test.astype(np.uint16))
    np.savez_compressed(path("compressed.npz"), x_train=train[..., :1], y_train=y_train,
                        x_test=test[..., :1], y_test=y_test)
    np.savez(path("no_test.npz"), x_train=train, y_train=y_train)
    # An upload keeps no name: the same file without its extension, in a folder of its own.
    os.makedirs(path("blob"), exist_ok=True)
    np.savez(path("blob/sha256-0123"), x_train=train, y_train=y_train)
    os.rename(path("blob/sha256-0123.npz"), path("blob/sha256-0123"))

    # Bad files, each with one problem.
    np.savez(path("fortran.npz"), x_train=np.asfortranarray(train), y_train=y_train)
    np.savez(path("float_images.npz"), x_train=train.astype(np.float32), y_train=y_train)
    np.savez(path("object_labels.npz"), x_train=train, y_train=np.array([0, 1, "a", 0, 1, 2],
                                                                          dtype=object))
    np.savez(path("float_labels.npz"), x_train=train, y_train=y_train.astype(np.float64))
    np.savez(path("mismatch.npz"), x_train=train, y_train=y_train[:5])
    np.savez(path("negative.npz"), x_train=train, y_train=y_train - 1)
    np.savez(path("test_label_out_of_range.npz"), x_train=train, y_train=y_train,
             x_test=test, y_test=y_test + 4)
    np.savez(path("bad_layout.npz"), x_train=images(6, 5, 4, 5), y_train=y_train)
    np.savez(path("split_shapes.npz"), x_train=train, y_train=y_train,
             x_test=images(4, 4, 4, 3), y_test=y_test)
    np.savez(path("x_test_only.npz"), x_train=train, y_train=y_train, x_test=test)
    np.savez(path("no_train.npz"), x_test=test, y_test=y_test)
    with zipfile.ZipFile(path("not_npz.zip"), "w") as z:
        z.writestr("readme.txt", "hello")
    with open(path("text.npz"), "w") as f:
        f.write("x_train,y_train\n")
    with open(path("nhwc.npz"), "rb") as f:
        whole = f.read()
    with open(path("truncated.npz"), "wb") as f:
        f.write(whole[: len(whole) // 2])
    # A header that is not what np.save writes: an extra key.
    with zipfile.ZipFile(path("extra_key.npz"), "w") as z:
        header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1, 1), 'x': 1, }"
        header += b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
        npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\x00"
        z.writestr("x_train.npy", npy)
        z.writestr("y_train.npy", npy)


if __name__ == "__main__":
    main(sys.argv[1])
