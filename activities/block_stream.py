"""Streaming bytes into a block blob: bounded memory, hashed and counted on the way.

Blocks are staged (`stage_block`) as they arrive, at most `concurrency` in flight, so memory
stays near block size x (concurrency + 2) whatever the total. Nothing is visible until the
caller commits the block list, which it does only when the producer succeeded.

A producer that writes to a pipe (pg_dump) is read by `PipeBlocks`: one dedicated thread fills
whole blocks with `readinto`, so the event loop handles one wake-up per block instead of one
per 64 KiB pipe read (and a pause/resume of the pipe every 128 KiB, as an
`asyncio.StreamReader` with its default limit does); hashing a block runs in a thread too.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from azure.storage.blob import BlobBlock
from azure.storage.blob.aio import BlobClient
from temporalio import activity

PIPE_SIZE = 1 << 20  # Linux's default ceiling for unprivileged processes
HASH_IN_THREAD = 1 << 20  # hashlib releases the GIL; below this the thread hop costs more


@dataclass
class StagedBlob:
    block_ids: list[str]  # in order
    bytes: int
    sha256: str

    @property
    def blocks(self) -> list[BlobBlock]:
        """The block list to commit."""
        return [BlobBlock(block_id=block_id) for block_id in self.block_ids]


async def stage_stream(
    blob: BlobClient, chunks: AsyncIterator[bytes], concurrency: int, *, heartbeat: bool
) -> StagedBlob:
    """Stage each chunk as a block; hash and count in order; heartbeat the bytes so far."""
    digest = hashlib.sha256()
    blocks: list[str] = []
    in_flight: set[asyncio.Future[Any]] = set()
    total = 0
    try:
        async for chunk in chunks:
            block_id = base64.b64encode(f"{len(blocks):010d}".encode()).decode()  # equal lengths
            if len(chunk) >= HASH_IN_THREAD:
                await asyncio.to_thread(digest.update, chunk)  # in order: awaited before the next
            else:
                digest.update(chunk)
            total += len(chunk)
            blocks.append(block_id)
            if len(in_flight) >= concurrency:
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            staging = blob.stage_block(block_id, chunk, length=len(chunk))
            in_flight.add(asyncio.ensure_future(staging))
            if heartbeat:
                activity.heartbeat(total)
        for task in asyncio.as_completed(in_flight):
            await task
        in_flight = set()
    finally:
        for task in in_flight:
            task.cancel()
    return StagedBlob(block_ids=blocks, bytes=total, sha256=digest.hexdigest())


def open_pipe() -> tuple[int, int]:
    """A pipe (read end, write end), widened to `PIPE_SIZE` where the system allows it.

    The default 64 KiB stalls the writer whenever the reader is busy for a moment; a wider
    pipe lets it run ahead. Both ends are non-inheritable: only the child given the write
    end as its stdout holds it, so the read end sees EOF as soon as that child exits.
    """
    read_end, write_end = os.pipe()
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    if set_size is not None:
        with contextlib.suppress(OSError):  # over the user's pipe quota: keep the default
            fcntl.fcntl(read_end, set_size, PIPE_SIZE)
    return read_end, write_end


class PipeBlocks:
    """`size`-byte blocks from the read end of a pipe (the last one shorter), read by a thread.

    Use `async for` to read and always `await close()` once the writer is gone (exited or
    killed): it waits for the read in progress, which then ends at EOF, and closes the pipe.
    """

    def __init__(self, read_end: int, size: int) -> None:
        self._source = open(read_end, "rb", buffering=0)  # closed by close()
        self._size = size
        self._reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pipe-reader")
        self._reading: concurrent.futures.Future[bytes] | None = None

    def __aiter__(self) -> PipeBlocks:
        return self

    async def __anext__(self) -> bytes:
        self._reading = self._reader.submit(self._read_block)
        block = await asyncio.wrap_future(self._reading)
        if not block:
            raise StopAsyncIteration
        return block

    async def close(self) -> None:
        self._reader.shutdown(wait=False)
        reading = self._reading
        if reading is None:
            self._source.close()
            return
        # Closed by the reader thread when its read returns (at once if it has): never while a
        # read runs, even if this wait is cancelled, so the descriptor cannot be reused under it.
        reading.add_done_callback(lambda _: self._source.close())
        await asyncio.wait([asyncio.wrap_future(reading)])

    def _read_block(self) -> bytes:
        block = bytearray(self._size)
        filled = 0
        with memoryview(block) as view:
            while filled < self._size:
                count = self._source.readinto(view[filled:])
                if not count:  # EOF: the writer closed its end or exited
                    break
                filled += count
        if filled < self._size:
            del block[filled:]
        return bytes(block)


async def tail(stream: asyncio.StreamReader, limit: int = 2000) -> str:
    """Read a stream to its end, keeping the last `limit` bytes (a tool's stderr)."""
    kept = b""
    while data := await stream.read(65536):
        kept = (kept + data)[-limit:]
    return kept.decode(errors="replace").strip()
