"""Network calls over a batch in fixed-shape chunks, each sample always in the same row of its chunk.

Kernels round differently for different input shapes, and a GEMM's edge tiles may round a row differently from
its middle ones; what no kernel does is let one row's numbers change another's. So a sample computed in a call of
`size` rows, at row `key % size` (its seed), gets the same bits whatever the batch it came in, its position in
that batch, or the samples beside it: rows nobody needs are filled with a copy of a real one and thrown away.
Consecutive seeds fill a chunk exactly, so a batch of `size` consecutive seeds costs one call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# micro_batch=WHOLE_BATCH: the batch in one call, whatever its size: fastest, but a sample's bits then depend on
# its batch (the toy's internal measurements, never an image a run directory keeps).
WHOLE_BATCH = 0


def slot_layout(keys: Sequence[int], size: int) -> list[list[int | None]]:
    """The chunks covering a batch whose samples have `keys`: chunk[row] is the batch index computed at that row,
    or None for a filler row. Sample i sits at row keys[i] % size of the first chunk with that row free."""
    chunks: list[list[int | None]] = []
    for index, key in enumerate(keys):
        row = int(key) % size
        free = next((chunk for chunk in chunks if chunk[row] is None), None)
        if free is None:
            free = [None] * size
            chunks.append(free)
        free[row] = index
    return chunks


def call_in_chunks(predict: Callable[[list[int]], torch.Tensor], keys: Sequence[int], micro_batch: int) -> torch.Tensor:
    """`predict(indices)` (the network on those batch rows, in that order) over the whole batch, stacked in
    batch order: in chunks of `micro_batch` rows laid out by `slot_layout`, or in one call with WHOLE_BATCH."""
    if micro_batch == WHOLE_BATCH:
        return predict(list(range(len(keys))))
    out: list[torch.Tensor] = [torch.empty(0)] * len(keys)  # every index is filled: each sits in one chunk
    for chunk in slot_layout(keys, micro_batch):
        filler = next(index for index in chunk if index is not None)
        result = predict([filler if index is None else index for index in chunk])
        for row, index in enumerate(chunk):
            if index is not None:
                out[index] = result[row]
    return torch.stack(out)
