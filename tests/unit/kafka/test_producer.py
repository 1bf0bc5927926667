"""The producer's report paths without a broker: the native DeliveryTally against `_on_delivery`'s
rules (tests/integration/test_producer.py runs both against the real broker)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.kafka.producer import AsyncProducer, native_tally

Tally = native_tally()
needs_native = pytest.mark.skipif(Tally is None, reason="the native extension is not built")


class Msg:
    """What a delivery report's message answers (confluent_kafka.Message)."""

    def __init__(self, offset: int | None) -> None:
        self._offset = offset

    def offset(self) -> int | None:
        return self._offset

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 0


@needs_native
def test_the_tally_counts_successes_keeps_the_highest_offset_and_passes_the_rest_on() -> None:
    passed: list[tuple[Any, Any]] = []
    assert Tally is not None
    tally = Tally(lambda err, msg: passed.append((err, msg)))
    assert (tally.delivered, tally.offset) == (0, -1)
    failed, offsetless = Msg(7), Msg(None)
    for offset in (3, 4, 9, 5):
        tally(None, Msg(offset))
    tally("an error", failed)
    tally(None, offsetless)  # no offset: not a success it can count
    assert (tally.delivered, tally.offset) == (4, 9)
    assert passed == [("an error", failed), (None, offsetless)]


@needs_native
def test_an_error_in_the_handler_is_raised_from_the_tally() -> None:
    def handler(err: Any, msg: Any) -> None:
        raise RuntimeError("handler failed")

    assert Tally is not None
    with pytest.raises(RuntimeError, match="handler failed"):
        Tally(handler)("boom", Msg(1))


def test_reports_must_be_native_or_python() -> None:
    with pytest.raises(ValueError, match="reports must be native or python"):
        AsyncProducer("127.0.0.1:1", reports="c")


@needs_native
def test_the_producer_counts_each_report_once_whoever_served_it() -> None:
    """`_count`: the producer's own count plus the tallies'; a failure counted once, by `_on_delivery`."""
    producer = AsyncProducer("127.0.0.1:1", reports="native", client={"log_level": "0"})  # no broker: quiet
    assert producer._make_tally is not None
    tally = producer._tallies[("t", 0)] = producer._make_tally(producer._on_delivery)
    tally(None, Msg(1))
    tally(None, Msg(None))
    assert producer._count() == 2
    assert producer.acked == {}  # merged by `deliver`
