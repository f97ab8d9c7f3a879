"""Blocks read from a pipe and staged into a blob: exact bytes, in order, hashed as staged."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator

from activities.block_stream import HASH_IN_THREAD, PipeBlocks, open_pipe, stage_stream

MiB = 1 << 20


class RecordingBlob:
    """Stands in for a BlobClient: keeps what was staged, by block id."""

    def __init__(self) -> None:
        self.staged: dict[str, bytes] = {}

    async def stage_block(self, block_id: str, data: bytes, length: int) -> None:
        await asyncio.sleep(0)
        self.staged[block_id] = data[:length]


def write_and_close(write_end: int, data: bytes) -> threading.Thread:
    def write() -> None:
        with open(write_end, "wb", buffering=0) as pipe:
            pipe.write(data)

    writer = threading.Thread(target=write)
    writer.start()
    return writer


async def test_pipe_blocks_are_full_size_except_the_last_and_keep_every_byte():
    data = os.urandom(2 * MiB + 12345)
    read_end, write_end = open_pipe()
    writer = write_and_close(write_end, data)
    blocks = PipeBlocks(read_end, MiB)
    try:
        received = [block async for block in blocks]
    finally:
        await blocks.close()
    writer.join()

    assert [len(block) for block in received] == [MiB, MiB, 12345]
    assert b"".join(received) == data


async def test_pipe_blocks_of_an_empty_pipe_are_none():
    read_end, write_end = open_pipe()
    os.close(write_end)
    blocks = PipeBlocks(read_end, MiB)
    try:
        received = [block async for block in blocks]
    finally:
        await blocks.close()

    assert received == []


async def test_staged_blob_hash_and_size_are_of_the_blocks_in_order_large_and_small():
    # Large chunks are hashed off the event loop, small ones on it: the digest is still in order.
    chunks = [os.urandom(size) for size in (HASH_IN_THREAD, 10, 3 * HASH_IN_THREAD, 1, 4096)]

    async def produce() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    blob = RecordingBlob()
    staged = await stage_stream(blob, produce(), concurrency=2, heartbeat=False)  # type: ignore[arg-type]

    content = b"".join(chunks)
    assert staged.sha256 == hashlib.sha256(content).hexdigest()
    assert staged.bytes == len(content)
    assert b"".join(blob.staged[block_id] for block_id in staged.block_ids) == content
