"""Types of the optional native extension (native/src/lib.rs), built as streams._native."""

from collections.abc import Callable
from typing import Any

ABI: int

class Decoder:
    """A batch of raw record values to events, equal to `fallback` of each (which it calls for those it
    does not judge)."""

    claimed: int
    passed: int

    def __init__(self, event: type, fallback: Callable[[Any], Any]) -> None: ...
    def decode(self, values: list[Any]) -> list[Any]: ...
    def claims(self, value: bytes) -> bool: ...

class DeliveryTally:
    """A delivery-report callable (`on_delivery`) of one topic partition: counts successes and keeps
    their highest offset; passes every failure to `on_error`."""

    delivered: int
    offset: int

    def __init__(self, on_error: Callable[[Any, Any], None]) -> None: ...
    def __call__(self, err: Any, msg: Any) -> None: ...
