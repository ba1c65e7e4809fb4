"""Reading IDX files, the format of LeCun's MNIST distribution (optionally gzipped).

    magic    4 bytes: 0x00 0x00 TYPE NDIM      TYPE 0x08 = uint8 (MNIST), NDIM = 3 or 1
    dims     NDIM big-endian uint32            (10000, 28, 28) images, (10000,) labels
    data     prod(dims) items, big-endian, row-major

MNIST images carry the magic number 2051 (0x00000803: uint8, 3 dims) and labels 2049
(0x00000801: uint8, 1 dim). A file whose magic is wrong, whose data is shorter or longer
than its dims promise, or an images/labels pair whose counts differ is a :class:`DataError`
naming the file.

    images = read_idx("t10k-images-idx3-ubyte.gz", expect_magic=IMAGES_MAGIC)  # (N, 28, 28)
    labels = read_idx("t10k-labels-idx1-ubyte.gz", expect_magic=LABELS_MAGIC)  # (N,)
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from .text import DataError

__all__ = ["read_idx", "read_mnist_pair", "find_mnist", "IMAGES_MAGIC", "LABELS_MAGIC"]

IMAGES_MAGIC = 0x00000803     # 2051
"""The magic number of an IDX file of unsigned-byte images, (N, rows, cols)."""
LABELS_MAGIC = 0x00000801     # 2049
"""The magic number of an IDX file of unsigned-byte labels, (N,)."""

#: IDX type byte -> big-endian numpy dtype
_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{str(path)!r} is a directory, not an IDX file") from None
    except OSError as e:
        raise DataError(f"cannot read IDX file {str(path)!r}: {e.strerror or e}") from None
    if raw[:2] == b"\x1f\x8b":                          # gzip magic
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return raw


def read_idx(path: str | Path, expect_magic: int | None = None) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip detected by content), in native byte
    order. ``expect_magic`` (e.g. :data:`IMAGES_MAGIC`) is checked when given."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file: {len(raw)} bytes, shorter than the "
                        f"4-byte magic number")
    (magic,) = struct.unpack(">I", raw[:4])
    type_code, ndim = raw[2], raw[3]
    if expect_magic is not None and magic != expect_magic:
        raise DataError(f"{path}: wrong magic number {magic} (0x{magic:08x}); expected "
                        f"{expect_magic} (0x{expect_magic:08x})")
    if raw[:2] != b"\x00\x00" or type_code not in _TYPES or ndim == 0:
        raise DataError(f"{path}: not an IDX file: magic number 0x{magic:08x} should be "
                        f"0x0000TTNN with type TT in "
                        f"{', '.join(f'{t:02x}' for t in _TYPES)} and NN >= 1 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX file: the header of {ndim} dimensions needs "
                        f"{header} bytes, the file has {len(raw)}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_TYPES[type_code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        kind = "truncated IDX file" if got < expected else "trailing bytes in IDX file"
        raise DataError(f"{path}: {kind}: dims {tuple(dims)} need {expected} data bytes, "
                        f"the file has {got}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def read_mnist_pair(images_path: str | Path,
                    labels_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``images (N, H, W) uint8`` and ``labels (N,) uint8`` of an MNIST IDX pair, checked:
    the right magic numbers, equal counts, labels 0..9."""
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                        f"{len(labels)} labels; the counts must match")
    if labels.size and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DataError(f"{labels_path}: label {int(labels[bad])} at index {bad} is not a "
                        f"digit 0..9")
    return images, labels


def find_mnist(directory: str | Path) -> dict[str, tuple[Path, Path]]:
    """The MNIST IDX pairs present in ``directory``: ``{"train": (images, labels),
    "t10k": (images, labels)}`` with whichever of the two sets is there (``.gz`` or not).
    :class:`DataError` when the directory is missing or holds neither set."""
    directory = Path(directory)
    if not directory.exists():
        raise DataError(f"MNIST directory {str(directory)!r} does not exist")
    if not directory.is_dir():
        raise DataError(f"{str(directory)!r} is not a directory; --data for MNIST is the "
                        f"folder holding the IDX files")
    found = {}
    for prefix in ("train", "t10k"):
        pair = []
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            candidates = [directory / f"{prefix}-{kind}{ext}" for ext in ("", ".gz")]
            pair.append(next((p for p in candidates if p.is_file()), None))
        if pair[0] is not None and pair[1] is not None:
            found[prefix] = (pair[0], pair[1])
        elif pair[0] is not None or pair[1] is not None:
            have, miss = (pair[0], "labels") if pair[0] else (pair[1], "images")
            raise DataError(f"{directory}: {have.name} has no matching {miss} file "
                            f"({prefix}-{miss}-idx{'1' if miss == 'labels' else '3'}-ubyte"
                            f"[.gz])")
    if not found:
        raise DataError(f"{directory}: no MNIST IDX files; expected t10k-images-idx3-ubyte"
                        f"[.gz] + t10k-labels-idx1-ubyte[.gz] and/or train-images-idx3-ubyte"
                        f"[.gz] + train-labels-idx1-ubyte[.gz]")
    return found
