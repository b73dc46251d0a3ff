"""bench.soak's accounting, in memory: what counts as lost, duplicated, unflagged.

The soak's verdict (exit status, the integration test) rests on these counts, so they are
checked here without any broker: a message is lost for an acknowledged flow (amqp,
jms.queue) until some consumer acknowledged it, for a topic flow until it was delivered.
"""

from __future__ import annotations

from bench.soak import Ledger, heap_change


def test_a_delivered_but_unacknowledged_queue_message_is_still_missing() -> None:
    ledger = Ledger()
    ledger.confirmed("amqp", "m1")
    ledger.got("amqp", "m1")
    assert ledger.missing("amqp") == 1  # its consumer left without the ack
    ledger.got("amqp", "m1", redelivered=True)
    ledger.acked("amqp", "m1")
    assert ledger.missing("amqp") == 0
    totals = ledger.totals()["amqp"]
    assert (totals["lost"], totals["duplicates"], totals["duplicates_not_redelivered"]) == \
        (0, 1, 0)


def test_a_topic_message_counts_once_delivered() -> None:
    ledger = Ledger()
    for m in ("a", "b"):
        ledger.confirmed("jms.topic", m)
    ledger.got("jms.topic", "a")
    totals = ledger.totals()["jms.topic"]
    assert (totals["confirmed_sent"], totals["lost"], totals["acked"]) == (2, 1, None)


def test_a_second_delivery_without_the_redelivered_flag_is_recorded() -> None:
    ledger = Ledger()
    ledger.confirmed("jms.queue", "q1")
    ledger.got("jms.queue", "q1")
    ledger.acked("jms.queue", "q1")
    ledger.got("jms.queue", "q1", redelivered=False)
    assert ledger.totals()["jms.queue"]["duplicates_not_redelivered"] == 1
    assert ledger.unflagged == [{"flow": "jms.queue", "id": "q1", "deliveries": 1,
                                 "acked_before": True}]


def test_received_but_never_confirmed_is_not_lost_and_is_counted_apart() -> None:
    ledger = Ledger()
    ledger.got("jms.topic", "sent-but-no-receipt")
    totals = ledger.totals()["jms.topic"]
    assert (totals["lost"], totals["received_unconfirmed"]) == (0, 1)


def test_heap_change_reads_start_and_end() -> None:
    start = {"allocated_blocks": 10, "gc_objects": 5,
             "malloc": {"in_use": 2**20, "free": 0, "mmapped": 0}}
    end = {"allocated_blocks": 12, "gc_objects": 5,
           "malloc": {"in_use": 3 * 2**20, "free": 2**19, "mmapped": 0}}
    assert heap_change(start, end) == {
        "allocated_blocks": "10 -> 12", "gc_objects": "5 -> 5",
        "malloc_in_use_mib": "1.00 -> 3.00", "malloc_free_mib": "0.00 -> 0.50",
        "malloc_mmapped_mib": "0.00 -> 0.00"}
    assert heap_change(None, end) is None
