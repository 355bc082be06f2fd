"""Helpers for streamed responses, shared by every wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any


async def started(events: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Run a stream up to its first event before the 200 goes out, so that validation errors, unknown
    models and load failures are answered as ordinary errors with a 4xx/5xx status, not mid-stream."""
    first = await anext(events)

    async def chained() -> AsyncIterator[Any]:
        yield first
        async for event in events:
            yield event

    return chained()
