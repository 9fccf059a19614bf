"""The per-group ordering state: offsets, gaps, repairs and position reads, without Redis."""

from __future__ import annotations

from fullduplex.brokers.base import Gap, Publication
from fullduplex.brokers.sequencer import MAX_BUFFERED, Sequencer


def pub(offset: int, epoch: str = "e1") -> Publication:
    return Publication("g", epoch, offset, f"m{offset}".encode(), True)


def offsets(publications: list[Publication]) -> list[int]:
    return [p.offset for p in publications]


class TestLive:
    def test_in_order(self) -> None:
        seq = Sequencer("g", history=False)
        seq.position("e1", 4)
        delivered = []
        for offset in (5, 6, 7):
            outcome = seq.arrive(pub(offset))
            assert outcome.gaps == [] and outcome.fetch is None
            delivered += outcome.deliver
        assert offsets(delivered) == [5, 6, 7]

    def test_duplicate_dropped(self) -> None:
        seq = Sequencer("g", history=False)
        seq.position("e1", 0)
        assert offsets(seq.arrive(pub(1)).deliver) == [1]
        assert seq.arrive(pub(1)).deliver == []
        assert seq.duplicates == 1

    def test_gap_reported_without_history(self) -> None:
        seq = Sequencer("g", history=False)
        seq.position("e1", 0)
        seq.arrive(pub(1))
        outcome = seq.arrive(pub(4))
        assert outcome.gaps == [Gap("g", "e1", 2, 3, "offset")]
        assert offsets(outcome.deliver) == [4]

    def test_first_arrival_in_flight_is_delivered(self) -> None:
        # Counted in the position read but still on its way: not a duplicate.
        seq = Sequencer("g", history=False)
        seq.position("e1", 10)
        assert offsets(seq.arrive(pub(9)).deliver) == [9]
        assert offsets(seq.arrive(pub(10)).deliver) == [10]
        assert seq.arrive(pub(10)).deliver == []

    def test_first_arrival_beyond_the_position_is_a_gap(self) -> None:
        seq = Sequencer("g", history=False)
        seq.position("e1", 10)
        outcome = seq.arrive(pub(13))
        assert outcome.gaps == [Gap("g", "e1", 11, 12, "offset")]

    def test_epoch_change_reported(self) -> None:
        seq = Sequencer("g", history=False)
        seq.position("e1", 0)
        seq.arrive(pub(1))
        outcome = seq.arrive(pub(1, "e2"))
        assert outcome.gaps == [Gap("g", "e1", None, None, "epoch_changed")]
        assert offsets(outcome.deliver) == [1]
        # The new epoch's first offsets are checked too.
        outcome = seq.arrive(pub(3, "e2"))
        assert outcome.gaps == [Gap("g", "e2", 2, 2, "offset")]

    def test_a_group_nobody_published_to_yet(self) -> None:
        seq = Sequencer("g", history=False)
        seq.position("", 0)
        outcome = seq.arrive(pub(1))
        assert outcome.gaps == [] and offsets(outcome.deliver) == [1]


class TestRepair:
    def test_gap_fetched_and_merged_in_order(self) -> None:
        seq = Sequencer("g", history=True)
        seq.position("e1", 0)
        seq.arrive(pub(1))
        outcome = seq.arrive(pub(5))
        assert outcome.deliver == [] and outcome.fetch is not None
        fetch = outcome.fetch
        assert (fetch.first, fetch.last) == (2, 4)
        # What arrives during the repair waits.
        assert seq.arrive(pub(6)).deliver == []
        merged = seq.repaired(fetch.token, [pub(2), pub(3), pub(4)])
        assert merged.gaps == []
        assert offsets(merged.deliver) == [2, 3, 4, 5, 6]
        assert not seq.repairing

    def test_history_missing_part_reported(self) -> None:
        seq = Sequencer("g", history=True)
        seq.position("e1", 1)
        seq.arrive(pub(2))
        fetch = seq.arrive(pub(6)).fetch
        assert fetch is not None
        merged = seq.repaired(fetch.token, [pub(4), pub(5)])
        assert merged.gaps == [Gap("g", "e1", 3, 3, "offset")]
        assert offsets(merged.deliver) == [4, 5, 6]

    def test_failed_fetch_reports_the_range(self) -> None:
        seq = Sequencer("g", history=True)
        seq.position("e1", 0)
        seq.arrive(pub(1))
        fetch = seq.arrive(pub(4)).fetch
        assert fetch is not None
        merged = seq.repaired(fetch.token, None)
        assert merged.gaps == [Gap("g", "e1", 2, 3, "offset")]
        assert offsets(merged.deliver) == [4]

    def test_late_answer_of_an_abandoned_repair_ignored(self) -> None:
        seq = Sequencer("g", history=True)
        seq.position("e1", 0)
        seq.arrive(pub(1))
        fetch = seq.arrive(pub(3)).fetch
        assert fetch is not None
        assert seq.repaired(fetch.token + 1, [pub(2)]).deliver == []
        assert seq.repairing

    def test_buffer_bounded(self) -> None:
        seq = Sequencer("g", history=True)
        seq.position("e1", 0)
        seq.arrive(pub(1))
        assert seq.arrive(pub(3)).fetch is not None
        for offset in range(4, 4 + MAX_BUFFERED - 1):
            assert seq.arrive(pub(offset)).deliver == []
        outcome = seq.arrive(pub(3 + MAX_BUFFERED))
        assert outcome.gaps == [Gap("g", "e1", 2, 2, "offset")]
        assert offsets(outcome.deliver) == list(range(3, 4 + MAX_BUFFERED))

    def test_second_gap_in_the_held_messages(self) -> None:
        seq = Sequencer("g", history=True)
        seq.position("e1", 0)
        seq.arrive(pub(1))
        first = seq.arrive(pub(3)).fetch
        assert first is not None
        seq.arrive(pub(6))
        merged = seq.repaired(first.token, [pub(2)])
        assert offsets(merged.deliver) == [2, 3]
        assert merged.fetch is not None and (merged.fetch.first, merged.fetch.last) == (4, 5)
        again = seq.repaired(merged.fetch.token, [pub(4), pub(5)])
        assert offsets(again.deliver) == [4, 5, 6]


class TestReconnect:
    def test_missed_during_outage_fetched(self) -> None:
        seq = Sequencer("g", history=True)
        seq.position("e1", 0)
        seq.arrive(pub(1))
        outcome = seq.position("e1", 4)  # read again after a reconnect
        assert outcome.fetch is not None and (outcome.fetch.first, outcome.fetch.last) == (2, 4)
        seq.arrive(pub(4))  # was in flight: arrives during the repair, a duplicate after it
        merged = seq.repaired(outcome.fetch.token, [pub(2), pub(3), pub(4)])
        assert offsets(merged.deliver) == [2, 3, 4]
        assert seq.duplicates == 1

    def test_missed_without_history_reported_after_settling(self) -> None:
        seq = Sequencer("g", history=False)
        seq.position("e1", 0)
        seq.arrive(pub(1))
        assert seq.position("e1", 3) == ([], [], None)
        # In flight: arrives in order, nothing missing.
        assert offsets(seq.arrive(pub(2)).deliver) == [2]
        assert seq.settle().gaps == [Gap("g", "e1", 3, 3, "reconnect")]
        assert seq.settle().gaps == []

    def test_state_lost_in_redis(self) -> None:
        seq = Sequencer("g", history=False)
        seq.position("e1", 0)
        seq.arrive(pub(1))
        outcome = seq.position("", 0)  # Redis restarted empty
        assert outcome.gaps == [Gap("g", "e1", None, None, "epoch_changed")]
        # The next epoch starts at 1, from the first publish after the restart.
        assert seq.arrive(pub(1, "e2")) == ([pub(1, "e2")], [], None)

    def test_published_after_restart_before_resubscribe(self) -> None:
        seq = Sequencer("g", history=False)
        seq.position("e1", 0)
        seq.arrive(pub(1))
        outcome = seq.position("e2", 2)
        assert outcome.gaps == [Gap("g", "e1", None, None, "epoch_changed")]
        assert seq.settle().gaps == [Gap("g", "e2", 1, 2, "reconnect")]

    def test_offsets_rewound_by_redis(self) -> None:
        """A failover lost the latest writes: the position is below what was delivered."""
        seq = Sequencer("g", history=True)
        seq.position("e1", 0)
        for offset in (1, 2, 3):
            seq.arrive(pub(offset))
        outcome = seq.position("e1", 1, seq.snapshot())
        assert outcome == ([], [Gap("g", "e1", 2, 3, "rewound")], None)
        # Until the new epoch, a reused offset is taken as new rather than dropped.
        assert offsets(seq.arrive(pub(2)).deliver) == [2]

    def test_answer_behind_arrivals_after_the_issue_is_no_rewind(self) -> None:
        """The read was issued at 2, publication 3 arrived before its answer (2): fine."""
        seq = Sequencer("g", history=True)
        seq.position("e1", 0)
        seq.arrive(pub(1))
        seq.arrive(pub(2))
        issued = seq.snapshot()
        seq.arrive(pub(3))
        assert seq.position("e1", 2, issued) == ([], [], None)
        assert offsets(seq.arrive(pub(4)).deliver) == [4]

    def test_answer_of_an_older_epoch_after_arrivals_of_a_newer_is_stale(self) -> None:
        seq = Sequencer("g", history=False)
        seq.position("e1", 0)
        seq.arrive(pub(1))
        issued = seq.snapshot()
        seq.arrive(pub(1, "e2"))  # the state was lost and a new epoch began meanwhile
        assert seq.position("e1", 1, issued) == ([], [], None)
        assert offsets(seq.arrive(pub(2, "e2")).deliver) == [2]
