"""Streaming bytes into a block blob: bounded memory, hashed and counted on the way.

Blocks are staged (`stage_block`) as they arrive, at most `concurrency` in flight, so memory
stays near block size x concurrency whatever the total. Nothing is visible until the caller
commits the block list, which it does only when the producer succeeded.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from azure.storage.blob import BlobBlock
from azure.storage.blob.aio import BlobClient
from temporalio import activity


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


async def fixed_chunks(stream: asyncio.StreamReader, size: int) -> AsyncIterator[bytes]:
    """`size`-byte chunks of a stream (the last one shorter)."""
    while True:
        try:
            chunk = await stream.readexactly(size)
        except asyncio.IncompleteReadError as end:
            if end.partial:
                yield end.partial
            return
        yield chunk


async def tail(stream: asyncio.StreamReader, limit: int = 2000) -> str:
    """Read a stream to its end, keeping the last `limit` bytes (a tool's stderr)."""
    kept = b""
    while data := await stream.read(65536):
        kept = (kept + data)[-limit:]
    return kept.decode(errors="replace").strip()
