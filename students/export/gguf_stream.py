"""Read a safetensors checkpoint one tensor (and one block of rows) at a time, and pack it for GGUF.

Why not ``gguf.GGUFWriter.add_tensor`` with the whole state dict, or llama.cpp's
converter: the writer here must convert a 70B student on the machine that
trained it, so no step may hold the model -- let alone a float32 copy of it.
Tensors are read with ``safetensors.safe_open`` in their stored dtype (bf16
stays 2 bytes a value), converted to float32 a block of rows at a time
(:data:`CHUNK_VALUES`) and quantised with ``gguf.quants.quantize`` into one
preallocated buffer per tensor, which the writer streams to the file and drops.
Peak memory is about one tensor in its stored dtype plus its packed form.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

import numpy as np

from distill.students.export.errors import ExportError
from distill.students.export.gguf_tensors import GgufTarget, PlannedTensor, llama3_rope_factors, llama_permute

logger = logging.getLogger(__name__)

CHUNK_VALUES = 1 << 22  # float32 values converted and quantised at once (16 MB)


def packed_layout(planned: PlannedTensor) -> tuple[tuple[int, ...], Any, int]:
    """Shape, numpy dtype and byte size ``gguf.quants.quantize`` gives a tensor of ``planned``'s shape and type."""
    import gguf

    T = gguf.GGMLQuantizationType
    shape = planned.shape
    if planned.qtype == T.F32:
        dtype = np.dtype(np.float32)
    elif planned.qtype == T.F16:
        dtype = np.dtype(np.float16)
    else:
        shape = tuple(gguf.quant_shape_to_byte_shape(shape, planned.qtype))
        dtype = np.dtype(np.uint8)
    return shape, dtype, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


class SafetensorsSource:
    """The checkpoint's safetensors files, read one tensor or one block of rows at a time.

    Each tensor opens its file afresh: safetensors maps the file, and pages of
    a mapping that stays open count as the process's memory until it closes,
    so one handle kept for the whole export would end up "holding" the model.
    """

    def __init__(self, target: GgufTarget):
        self.target = target

    def __enter__(self) -> "SafetensorsSource":
        return self

    def __exit__(self, *exc) -> None:
        """Nothing stays open between tensors."""

    def row_blocks(self, planned: PlannedTensor) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, float32 rows)`` blocks of one tensor, permuted for llama.cpp's rope where planned.

        A 1-D tensor is one block.  Unpermuted tensors are sliced straight from
        the file, which is opened afresh for every block (its mapped pages leave
        the process with it); a llama q/k tensor is read whole in its stored
        dtype (its rows are reordered across the tensor), then converted block by block.
        """
        import torch
        from safetensors import safe_open

        if planned.file is None:  # generated: rope_freqs
            yield 0, llama3_rope_factors(self.target)
            return
        n_rows = planned.shape[0]
        step = max(1, CHUNK_VALUES // max(1, int(np.prod(planned.shape[1:], dtype=np.int64))))
        if len(planned.shape) == 1:
            step = n_rows
        whole = None
        if planned.permute_heads is not None:
            with safe_open(str(planned.file), framework="pt") as fh:
                whole = llama_permute(fh.get_tensor(planned.hf_name), self.target.n_head, planned.permute_heads)
        for start in range(0, n_rows, step):
            end = min(n_rows, start + step)
            if whole is not None:
                block = whole[start:end].to(torch.float32)
            else:
                with safe_open(str(planned.file), framework="pt") as fh:
                    block = fh.get_slice(planned.hf_name)[start:end].to(torch.float32)
            yield start, block.numpy()

    def packed_blocks(self, planned: PlannedTensor) -> Iterator[np.ndarray]:
        """The tensor quantised to its planned type, one block of rows at a time (what the file stores)."""
        import gguf

        for _, block in self.row_blocks(planned):
            try:
                yield gguf.quants.quantize(np.ascontiguousarray(block), planned.qtype)
            except gguf.QuantError as exc:
                raise ExportError(f"{planned.gguf_name}: cannot store as {planned.qtype.name}: {exc}") from exc

    def streamed(self, planned: PlannedTensor) -> "StreamedTensor":
        """What ``GGUFWriter.write_tensor_data`` writes for ``planned``, packed block by block as it is written."""
        return StreamedTensor(packed_layout(planned)[2], lambda: self.packed_blocks(planned))


class StreamedTensor:
    """A tensor ``gguf.GGUFWriter.write_tensor_data`` can write without it ever being whole in memory.

    The writer only needs ``nbytes`` (checked against the declared tensor
    info) and ``tofile`` -- the same duck type gguf's own lazy tensors rely
    on -- so each packed block goes to the file and is dropped.
    """

    def __init__(self, nbytes: int, blocks):
        self.nbytes = nbytes
        self._blocks = blocks

    def tofile(self, fout) -> None:
        written = 0
        for block in self._blocks():
            block.tofile(fout)
            written += block.nbytes
        if written != self.nbytes:
            raise ExportError(f"streamed {written} bytes of a tensor declared as {self.nbytes}")
