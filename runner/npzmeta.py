"""Read one string entry of an NPZ file without numpy and without ever unpickling.

Phase D stores its metadata as a JSON string under the key `_metadata`. The runner must not import
numpy, so this parses the .npy header itself; an object (pickled) array is refused.
"""

from __future__ import annotations

import ast
import re
import struct
import zipfile
from pathlib import Path

MAX_ENTRY_BYTES = 1 << 20  # metadata is a few hundred bytes; anything huge is not metadata
# The header numpy writes for a single string; any other header goes through the full parser.
SIMPLE_HEADER = re.compile(r"\{'descr': '([<>|][US]\d+)', 'fortran_order': False, 'shape': \(\), \}\s*")


class NpzEntryError(ValueError):
    """The entry exists but is not a readable string."""


def read_npz_string(path: Path, key: str) -> str | None:
    """The string stored under `key` in the NPZ at `path`, or None when the key is absent."""
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo(f"{key}.npy")
            except KeyError:
                return None
            if info.file_size > MAX_ENTRY_BYTES:
                raise NpzEntryError(f"{key} is {info.file_size} bytes, larger than metadata can be")
            raw = archive.read(info)
    except zipfile.BadZipFile:
        raise NpzEntryError("not an NPZ (zip) file") from None
    return _decode_npy_string(raw, key)


def _decode_npy_string(raw: bytes, key: str) -> str:
    if not raw.startswith(b"\x93NUMPY") or len(raw) < 10:
        raise NpzEntryError(f"{key} is not a .npy array")
    major = raw[6]
    if major == 1:
        (header_len,), start = struct.unpack("<H", raw[8:10]), 10
    elif major in (2, 3):
        (header_len,), start = struct.unpack("<I", raw[8:12]), 12
    else:
        raise NpzEntryError(f"{key} uses unknown .npy version {major}")
    text = raw[start:start + header_len].decode("latin1")
    simple = SIMPLE_HEADER.fullmatch(text)
    if simple:  # what numpy writes for a string: skip the parser (a plan reads thousands)
        descr, shape = simple.group(1), ()
    else:
        try:
            header = ast.literal_eval(text)
            descr, shape = header["descr"], tuple(header["shape"])
        except (ValueError, SyntaxError, KeyError, TypeError):
            raise NpzEntryError(f"{key} has an unreadable .npy header") from None
    if shape not in ((), (1,)):
        raise NpzEntryError(f"{key} is an array of shape {shape}, not a single string")
    body = raw[start + header_len:]
    if not isinstance(descr, str) or descr[1:2] not in ("U", "S"):
        raise NpzEntryError(f"{key} is stored as {descr!r} (a pickled object?), not a plain string; "
                            "save it with np.array(json.dumps(...))")
    width = int(descr[2:] or 0)
    if descr[1] == "U":
        data = body[:4 * width]
        encoding = "utf-32-be" if descr[0] == ">" else "utf-32-le"
        return data.decode(encoding).rstrip("\x00")
    return body[:width].rstrip(b"\x00").decode("utf-8")
