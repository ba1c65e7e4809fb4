"""COCO-format caption sets: the reader and the image loader of the ``caption`` task.

A caption set is a folder ``DIR`` holding ``captions.json`` in the COCO captions format
(Chen et al. 2015, "Microsoft COCO Captions") and the image files::

    DIR/captions.json       {"images":      [{"id": 790, "file_name": "000000000790.jpg", ...}],
                             "annotations": [{"image_id": 790, "caption": "a family at ..."}]}
    DIR/images/*.jpg        (or the images next to captions.json)

Each image's ``file_name`` is resolved against ``DIR`` first, then ``DIR/images``; any
other keys (``info``, ``licenses``, ``width``, ``coco_url``, ...) are ignored. ``--data``
may also name the JSON file itself (``DIR/captions_train2017.json``); ``DIR`` is then the
folder that holds it. Ids are ints or strings. Every image needs at least one caption.

Errors are :class:`~rnnlab.data.text.DataError` with the file and what was wrong: broken
JSON (file, line and column from the JSON parser), a missing or mistyped key (and where:
``images[3]``), a duplicate image id, an annotation naming an unknown image id, an image
without captions, an image file that is missing (named, with the folders searched) or
that Pillow cannot read.

    >>> images = read_coco_captions("data/coco_mini_captions")
    >>> images[0].path.name, images[0].captions[0]
    ('000000000790.jpg', 'a family is sitting down at a table to have cake')
    >>> load_image(images[0].path, 72).shape          # uint8, squashed to a square
    torch.Size([3, 72, 72])
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .text import DataError

__all__ = ["CaptionedImage", "read_coco_captions", "load_image", "CAPTIONS_FILE"]

CAPTIONS_FILE = "captions.json"


@dataclass(frozen=True)
class CaptionedImage:
    """One image of a caption set: its COCO id, its resolved file and its captions."""

    id: int | str
    path: Path
    captions: tuple[str, ...]


def _where(path: Path) -> str:
    return repr(str(path))


def _load_json(path: Path):
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"caption file {_where(path)} does not exist (a caption set is a "
                        f"folder with {CAPTIONS_FILE} and its images)") from None
    except OSError as e:
        raise DataError(f"cannot read caption file {_where(path)}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8: byte 0x{raw[e.start]:02x} at offset "
                        f"{e.start} cannot be decoded") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: broken JSON: {e.msg}") from None


def _field(obj, key: str, types, what: str, path: Path, where: str):
    """``obj[key]``, checked to be one of ``types`` (bool never counts as int)."""
    if not isinstance(obj, dict):
        raise DataError(f"{path}: {where} must be a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise DataError(f"{path}: {where} has no {key!r} key (expected {what})")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, types):
        raise DataError(f"{path}: {where}[{key!r}] must be {what}, got {value!r}")
    return value


def read_coco_captions(folder: str | Path) -> list[CaptionedImage]:
    """The images of a COCO-format caption set, in the order of its ``images`` list.

    ``folder`` is the caption-set folder (holding ``captions.json``) or the JSON file itself.
    Raises :class:`DataError` for anything that cannot be used (see the module docstring).
    The image files are checked to exist but not opened; :func:`load_image` reads them.
    """
    folder = Path(folder)
    if folder.is_file():
        path, folder = folder, folder.parent
    elif folder.is_dir():
        path = folder / CAPTIONS_FILE
    else:
        raise DataError(f"caption data {_where(folder)} does not exist (expected a folder "
                        f"with {CAPTIONS_FILE} and its images)")
    data = _load_json(path)
    images = _field(data, "images", list, "a list of images", path, "the top level")
    annotations = _field(data, "annotations", list, "a list of captions", path, "the top level")

    files: dict[int | str, Path] = {}
    for i, image in enumerate(images):
        where = f"images[{i}]"
        image_id = _field(image, "id", (int, str), "an int or string id", path, where)
        name = _field(image, "file_name", str, "a file name", path, where)
        if image_id in files:
            raise DataError(f"{path}: {where} repeats image id {image_id!r}")
        if not name.strip():
            raise DataError(f"{path}: {where} (id {image_id!r}) has an empty file_name")
        files[image_id] = _resolve(folder, name, path, where, image_id)

    captions: dict[int | str, list[str]] = {image_id: [] for image_id in files}
    for i, annotation in enumerate(annotations):
        where = f"annotations[{i}]"
        image_id = _field(annotation, "image_id", (int, str), "an int or string id", path,
                          where)
        caption = _field(annotation, "caption", str, "a caption string", path, where)
        if image_id not in captions:
            raise DataError(f"{path}: {where} names image_id {image_id!r}, which is not the "
                            f"id of any entry of 'images'")
        if not caption.strip():
            raise DataError(f"{path}: {where} (image_id {image_id!r}) has an empty caption")
        captions[image_id].append(caption.strip())

    if not files:
        raise DataError(f"{path}: 'images' is empty; a caption set needs images")
    for image_id, caps in captions.items():
        if not caps:
            raise DataError(f"{path}: image id {image_id!r} ({files[image_id].name}) has no "
                            f"caption in 'annotations'; every image needs at least one")
    return [CaptionedImage(image_id, files[image_id], tuple(captions[image_id]))
            for image_id in files]


def _resolve(folder: Path, name: str, path: Path, where: str, image_id) -> Path:
    """``name`` relative to the caption-set folder, else to its ``images/`` subfolder."""
    for base in (folder, folder / "images"):
        candidate = base / name
        if candidate.is_file():
            return candidate
    raise DataError(f"{path}: {where} (id {image_id!r}): image file {name!r} not found in "
                    f"{str(folder)!r} or {str(folder / 'images')!r}")


def load_image(path: str | Path, size: int) -> Tensor:
    """The image at ``path`` as RGB, resized to ``size`` x ``size`` (aspect ratio not kept,
    as in neuraltalk2's preprocessing), bilinear: uint8 tensor ``(3, size, size)``.

    Raises :class:`DataError` naming the file when it is missing or Pillow cannot read it.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    except FileNotFoundError:
        raise DataError(f"image file {_where(path)} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"image path {_where(path)} is a directory, not an image") from None
    except UnidentifiedImageError:
        raise DataError(f"cannot read image {_where(path)}: not an image format Pillow "
                        f"knows (JPEG, PNG, ...)") from None
    except (OSError, SyntaxError, ValueError) as e:   # truncated or corrupt image data
        raise DataError(f"cannot read image {_where(path)}: {e}") from None
    pixels = np.array(rgb, dtype=np.uint8)                          # (S, S, 3)
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()     # (3, S, S)
