"""Packs a dataset folder into a .tar byte for byte as the qnet CLI does (client/dataset_archive.h),
so a folder has one digest whichever client uploads it: the regular files under the folder
(links to files followed), names starting with "." left out, sorted by path, as ustar records with
mode 0644, owner 0:0, no user or group names and mtime 0, ending with two zero blocks."""
import os
import pathlib
import stat
from typing import BinaryIO, List, Tuple

BLOCK = 512


def _octal(value: int, width: int) -> bytes:
    # The numeric fields as the CLI's tar writer fills them: digits, a space, then NULs.
    digits = width - 2 if width == 8 else width - 1
    text = b"%0*o" % (digits, value)
    if len(text) > digits:
        raise ValueError(f"{value} does not fit a {width}-byte tar field")
    return (text + b" ").ljust(width, b"\0")


def _split_name(name: bytes) -> Tuple[bytes, bytes]:
    """(prefix, name) of a ustar header: the first '/' at or after len - 101 splits a long path."""
    if len(name) <= 100:
        return b"", name
    p = name.find(b"/", len(name) - 101)
    if p == 0:
        p = name.find(b"/", 1)
    if p < 0 or p == len(name) - 1 or p > 155:
        raise ValueError(f"{name.decode(errors='replace')}: path too long for a tar entry")
    return name[:p], name[p + 1:]


def _header(name: bytes, size: int) -> bytes:
    prefix, short = _split_name(name)
    h = bytearray(BLOCK)
    h[0:len(short)] = short
    h[100:108] = _octal(0o644, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(0, 12)
    h[148:156] = b" " * 8
    h[156:157] = b"0"
    h[257:265] = b"ustar\x0000"
    h[329:337] = _octal(0, 8)
    h[337:345] = _octal(0, 8)
    h[345:345 + len(prefix)] = prefix
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def _files(root: pathlib.Path) -> List[Tuple[bytes, pathlib.Path]]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = pathlib.Path(dirpath)
        for d in list(dirnames):
            rel = (here / d).relative_to(root).as_posix()
            if d.startswith("."):
                dirnames.remove(d)
            elif (here / d).is_symlink():
                raise ValueError(f"{rel} is a symbolic link to a folder; copy the folder in, "
                                 "or upload an archive")
        for f in filenames:
            if f.startswith("."):
                continue
            path = here / f
            rel = path.relative_to(root).as_posix()
            try:
                mode = path.stat().st_mode
            except OSError:
                mode = 0
            if not stat.S_ISREG(mode):
                raise ValueError(f"{rel} is not a regular file (a device, socket or broken link)")
            files.append((os.fsencode(rel), path))
    if not files:
        raise ValueError(f"{root} holds no files; a dataset folder has train/<class>/<image> files")
    return sorted(files)


def write_dataset_tar(folder, out: BinaryIO) -> int:
    """Writes the tar of `folder` to the binary stream `out`; returns how many files it holds."""
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    files = _files(root)
    for name, path in files:
        size = path.stat().st_size
        out.write(_header(name, size))
        written = 0
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                out.write(block)
                written += len(block)
        if written != size:
            raise ValueError(f"{path} changed while packing ({written} of {size} bytes)")
        out.write(b"\0" * (-size % BLOCK))
    out.write(b"\0" * (2 * BLOCK))
    return len(files)
