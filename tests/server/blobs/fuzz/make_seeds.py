"""Writes the seed corpus of the blob fuzz targets into corpus/<target>/ (small, committed).

blob_upload seeds are scripts for blob_upload_fuzzer.cc (its Script: bytes, 16-bit values
little-endian); torchscript_archive seeds are real torch.jit.save files and near misses.

Usage: python3 tests/server/blobs/fuzz/make_seeds.py   (re-run only to change the seeds)
"""
import io
import os
import struct
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def short(value):
    return struct.pack("<H", value)


def header(digest_text, payload):
    return bytes([len(digest_text)]) + digest_text + short(len(payload)) + payload


def chunks(sizes_and_actions):
    """Each chunk: its size byte ((b + 1) * 32 bytes) and its action (0xff: go away, 0xfe: flip)."""
    return b"".join(bytes([size, action]) for size, action in sizes_and_actions)


def blob_upload_seeds():
    payload = bytes((i * 31) % 251 for i in range(200))
    digest = b"sha256:" + b"0" * 64
    # Plain upload naming digest and size, three chunks, committed, read back in 64-byte reads.
    write("blob_upload", "plain_commit", header(digest, payload) + bytes([1, 1])
          + chunks([(1, 0), (1, 0), (1, 0)]) + bytes([1]) + bytes(8) + short(7) + bytes(8))
    # A resumable upload that breaks off, then resumes from the server's offset.
    write("blob_upload", "resume", header(b"", payload) + bytes([3, 1, 1]) + chunks([(0, 0), (1, 0xff)])
          + bytes([1]) + bytes([3, 1, 0]) + chunks([(3, 0), (3, 0)]) + bytes([1]) + bytes(16))
    # A resumable upload held open while a second one of the digest starts from offset 0.
    write("blob_upload", "racing_resume", header(b"sha256:", payload) + bytes([3, 1, 1])
          + chunks([(1, 0), (1, 0xff)]) + bytes([0]) + bytes([3, 1, 1]) + chunks([(5, 0), (5, 0)])
          + bytes([1]) + bytes(16))
    # Wrong sizes and digests: a corrupted chunk, a declared size past the limit.
    write("blob_upload", "lies", header(b"sha256:../../etc", payload) + bytes([1, 2, 5])
          + chunks([(2, 0xfe), (4, 0)]) + bytes([1]) + bytes([2, 2, 3]) + chunks([(9, 0)])
          + bytes([1]) + bytes([0, 3]) + short(9000) + chunks([(9, 0)]) + bytes([1]))


def torchscript_seeds():
    module = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    out = io.BytesIO()
    torch.jit.save(module, out)
    write("torchscript_archive", "linear.pt", out.getvalue())
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/constants.pkl", b"\x80\x02).")
        z.writestr("archive/version", b"3\n")
    write("torchscript_archive", "constants_only.pt", out.getvalue())
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as z:
        with z.open("m/data.pkl", "w", force_zip64=True) as f:
            f.write(b"\x80\x02}q\x00.")
    write("torchscript_archive", "zip64_deflated.pt", out.getvalue())
    write("torchscript_archive", "not_zip.pt", b"PK\x05\x06" + bytes(18))


if __name__ == "__main__":
    blob_upload_seeds()
    torchscript_seeds()
