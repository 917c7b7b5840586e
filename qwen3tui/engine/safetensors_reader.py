"""Read a safetensors file tensor by tensor, straight into tensors we already own.

On the CPU, memory-mapping the file (what the safetensors library does) makes its pages count
as resident memory while the weights are copied out: the peak holds the weights twice. Here
each tensor's bytes are read with one `readinto` into the destination itself (or, when the
dtype differs, into a buffer the size of that one tensor).
"""

from __future__ import annotations

import ctypes
import json
import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

DTYPES = {
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F32": torch.float32,
    "F64": torch.float64,
    "I8": torch.int8,
    "U8": torch.uint8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


class CorruptFile(Exception):
    """The file is not a readable safetensors file."""


@dataclass(frozen=True)
class StoredTensor:
    file: BinaryIO
    offset: int  # absolute byte offset of the data in the file
    nbytes: int
    dtype: torch.dtype
    shape: tuple[int, ...]

    def read_into(self, dest: torch.Tensor) -> None:
        """Fill `dest` (contiguous, same shape) with this tensor, converting dtype if needed."""
        target = dest if dest.dtype == self.dtype else torch.empty(self.shape, dtype=self.dtype)
        if target.numel() * target.element_size() != self.nbytes:
            raise CorruptFile(f"size of {self.shape} {self.dtype} does not match its bytes")
        self.file.seek(self.offset)
        buffer = (ctypes.c_char * self.nbytes).from_address(target.data_ptr())
        if self.file.readinto(memoryview(buffer).cast("B")) != self.nbytes:
            raise CorruptFile("the file ends before the tensor's data")
        if target is not dest:
            dest.copy_(target)


@contextmanager
def open_safetensors(path: Path) -> Iterator[dict[str, StoredTensor]]:
    with open(path, "rb", buffering=0) as f:
        yield _read_header(f, path.stat().st_size)


def read_header(path: Path) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """Each tensor's dtype and shape, from the header alone (checked against the file size)."""
    with open_safetensors(path) as tensors:
        return {name: (t.dtype, t.shape) for name, t in tensors.items()}


def _read_header(f: BinaryIO, size: int) -> dict[str, StoredTensor]:
    head = f.read(8)
    if len(head) != 8:
        raise CorruptFile("too short for a safetensors header")
    (length,) = struct.unpack("<Q", head)
    if length > min(size - 8, 100_000_000):
        raise CorruptFile("header length is larger than the file")
    try:
        header = json.loads(f.read(length))
    except (UnicodeDecodeError, ValueError) as err:
        raise CorruptFile(f"header is not JSON ({err})") from None
    if not isinstance(header, dict):
        raise CorruptFile("header is not a JSON object")
    start = 8 + length
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = info["data_offsets"]
            dtype = DTYPES[info["dtype"]]
            shape = tuple(int(d) for d in info["shape"])
        except (KeyError, TypeError, ValueError):
            raise CorruptFile(f"bad header entry for {name}") from None
        if not 0 <= begin <= end <= size - start:
            raise CorruptFile(f"data of {name} lies outside the file")
        # A shape is only believed when the file holds its bytes: nothing is ever allocated
        # for a tensor the file does not back.
        if any(d < 0 for d in shape) or math.prod(shape) * dtype.itemsize != end - begin:
            raise CorruptFile(f"{name}: shape {list(shape)} does not match its {end - begin} bytes")
        tensors[name] = StoredTensor(f, start + begin, end - begin, dtype, shape)
    return tensors
