"""Read one string or number of an NPZ file without numpy and without ever unpickling.

Studies store metadata as a JSON string under a key such as `_metadata`, and results (a time, a
cost history) as numbers. The runner must not import numpy, so this parses the .npy header
itself; an object (pickled) array is refused.
"""

from __future__ import annotations

import ast
import io
import re
import struct
import zipfile
from pathlib import Path
from typing import BinaryIO

MAX_ENTRY_BYTES = 1 << 20  # metadata is a few hundred bytes; anything huge is not metadata
# The header numpy writes for a single string; any other header goes through the full parser.
SIMPLE_HEADER = re.compile(r"\{'descr': '([<>|][US]\d+)', 'fortran_order': False, 'shape': \(\), \}\s*")


class NpzEntryError(ValueError):
    """The entry exists but is not a readable string."""


def _member(archive: zipfile.ZipFile, key: str) -> zipfile.ZipInfo | None:
    try:
        return archive.getinfo(f"{key}.npy")
    except KeyError:
        return None


def read_npz_string(path: Path, key: str) -> str | None:
    """The string stored under `key` in the NPZ at `path`, or None when the key is absent."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = _member(archive, key)
            if info is None:
                return None
            if info.file_size > MAX_ENTRY_BYTES:
                raise NpzEntryError(f"{key} is {info.file_size} bytes, larger than metadata can be")
            raw = archive.read(info)
    except zipfile.BadZipFile:
        raise NpzEntryError("not an NPZ (zip) file") from None
    return _decode_npy_string(raw, key)


# The .npy number types a result file holds, as struct codes.
NUMBER_CODES = {"f8": "d", "f4": "f", "i8": "q", "i4": "i", "u8": "Q", "u4": "I"}


def npz_keys(path: Path) -> set[str]:
    """The arrays an NPZ holds (raises NpzEntryError when it is not a whole zip archive)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {name[:-4] for name in archive.namelist() if name.endswith(".npy")}
    except (zipfile.BadZipFile, OSError) as exc:
        raise NpzEntryError(f"not a whole NPZ (zip) file ({exc})") from None


def read_npz_number(path: Path, key: str) -> float | None:
    """The number stored under `key` (a scalar), or the last element of a 1-D array of numbers
    (a cost history); None when the key is absent or the array is empty."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = _member(archive, key)
            if info is None:
                return None
            with archive.open(info) as f:
                descr, shape = _read_header(f, key)
                code = NUMBER_CODES.get(descr[1:]) if isinstance(descr, str) else None
                if code is None or len(shape) > 1:
                    raise NpzEntryError(f"{key} is stored as {descr!r} of shape {shape}, not numbers")
                count = shape[0] if shape else 1
                if count == 0:
                    return None
                size = struct.calcsize(code)
                f.seek((count - 1) * size, io.SEEK_CUR)  # to the last element
                body = f.read(size)
    except (zipfile.BadZipFile, OSError) as exc:
        raise NpzEntryError(f"not a whole NPZ (zip) file ({exc})") from None
    if len(body) != size:
        raise NpzEntryError(f"{key} is truncated")
    return float(struct.unpack((">" if descr[0] == ">" else "<") + code, body)[0])


def _read_header(stream: BinaryIO, key: str) -> tuple[object, tuple]:
    """(descr, shape) of the .npy array `stream` starts with, leaving it at the array's data."""
    head = stream.read(10)
    if not head.startswith(b"\x93NUMPY") or len(head) < 10:
        raise NpzEntryError(f"{key} is not a .npy array")
    major = head[6]
    if major == 1:
        (header_len,) = struct.unpack("<H", head[8:10])
    elif major in (2, 3):
        (header_len,) = struct.unpack("<I", head[8:10] + stream.read(2))
    else:
        raise NpzEntryError(f"{key} uses unknown .npy version {major}")
    text = stream.read(header_len).decode("latin1")
    simple = SIMPLE_HEADER.fullmatch(text)
    if simple:  # what numpy writes for a string: skip the parser (a plan reads thousands)
        return simple.group(1), ()
    try:
        header = ast.literal_eval(text)
        return header["descr"], tuple(header["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError):
        raise NpzEntryError(f"{key} has an unreadable .npy header") from None


def _decode_npy_string(raw: bytes, key: str) -> str:
    stream = io.BytesIO(raw)
    descr, shape = _read_header(stream, key)
    if shape not in ((), (1,)):
        raise NpzEntryError(f"{key} is an array of shape {shape}, not a single string")
    body = stream.read()
    if not isinstance(descr, str) or descr[1:2] not in ("U", "S"):
        raise NpzEntryError(f"{key} is stored as {descr!r} (a pickled object?), not a plain string; "
                            "save it with np.array(json.dumps(...))")
    width = int(descr[2:] or 0)
    if descr[1] == "U":
        data = body[:4 * width]
        encoding = "utf-32-be" if descr[0] == ">" else "utf-32-le"
        return data.decode(encoding).rstrip("\x00")
    return body[:width].rstrip(b"\x00").decode("utf-8")
