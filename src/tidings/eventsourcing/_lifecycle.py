"""What the store backends share about opening and closing: ``async with`` and its errors."""

from __future__ import annotations

from typing import Self

from tidings.errors import BrokerClosedError

__all__ = ["Lifecycle"]


class Lifecycle:
    """``async with store:`` connects, then closes; :meth:`not_open` says which it is not."""

    _closed: bool = False

    async def connect(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def not_open(self) -> BrokerClosedError:
        """The error for a call on a store that is closed or not connected yet."""
        if self._closed:
            return BrokerClosedError("the event store is closed")
        return BrokerClosedError("the event store is not connected; call connect()")
