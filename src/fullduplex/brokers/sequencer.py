"""Per-group ordering in one process: offsets checked, gaps found, repairs merged. Sans-I/O.

A :class:`Sequencer` sees the publications of one group in the order they arrive on this
process's pub/sub connection, and the group's position read from the broker after a
(re)subscription. It returns what to deliver now, the gaps it found, and, when the group keeps
history, the range to fetch to repair a gap; what arrives during a repair waits until the
repair is merged, so members always get offsets in increasing order.

Why a position read needs care: the read travels on the command connection and publications
on the pub/sub connection, so a publication counted in the position may still be in flight.
Publications arrive in order on their connection, though, so the next arrival tells: one that
is not the next offset proves a loss; and when nothing arrives, :meth:`Sequencer.settle`
(called a little later) reports what the position showed and never came.
"""

from __future__ import annotations

from typing import NamedTuple

from .base import Gap, Publication

__all__ = ["Fetch", "Outcome", "Sequencer"]

MAX_BUFFERED = 10_000
"""Publications a group may hold back while a repair runs; beyond, the repair is abandoned."""


class Fetch(NamedTuple):
    """A range of one epoch to read from history: offsets ``first`` to ``last`` inclusive.

    ``token`` is given back to :meth:`Sequencer.repaired`, so that a late answer to an
    abandoned repair is ignored.
    """

    epoch: str
    first: int
    last: int
    token: int


class Outcome(NamedTuple):
    """What to do after an event: deliver these, report these gaps, fetch this range."""

    deliver: list[Publication]
    gaps: list[Gap]
    fetch: Fetch | None


class Sequencer:
    """The ordering state of one group in one process.

    Args:
        group: The group's name.
        history: Whether the group keeps history (gaps are then fetched, not just reported).
    """

    __slots__ = (
        "_buffer",
        "_fetch",
        "_tokens",
        "duplicates",
        "epoch",
        "floor",
        "fresh",
        "group",
        "history",
        "last",
        "synced",
    )

    def __init__(self, group: str, *, history: bool) -> None:
        self.group = group
        self.history = history
        self.epoch = ""
        # Offsets up to ``last`` were delivered (or reported as gaps).
        self.last = 0
        # Until the first arrival nothing was delivered: an arrival at or below ``last`` is
        # then one in flight when the position was read, not a duplicate.
        self.fresh = True
        # The highest offset a position read showed: see settle().
        self.floor = 0
        # Whether a first position was read (its epoch may be "": nothing published yet).
        self.synced = False
        self.duplicates = 0
        self._fetch: Fetch | None = None
        self._buffer: list[Publication] = []
        self._tokens = 0

    @property
    def repairing(self) -> bool:
        """True while a fetch is outstanding (arrivals are held back meanwhile)."""
        return self._fetch is not None

    def __repr__(self) -> str:
        return f"<Sequencer {self.group!r} {self.epoch}:{self.last}>"

    # ---- events ----------------------------------------------------------------------------

    def arrive(self, publication: Publication) -> Outcome:
        """A publication arrived live."""
        if self._fetch is not None:
            return self._hold(publication)
        deliver: list[Publication] = []
        gaps: list[Gap] = []
        fetch = self._accept(publication, deliver, gaps)
        return Outcome(deliver, gaps, fetch)

    def snapshot(self) -> tuple[str, int]:
        """Where this group is: give it to :meth:`position` with the read issued now."""
        return self.epoch, self.last

    def position(self, epoch: str, top: int, issued: tuple[str, int] | None = None) -> Outcome:
        """The group's position was read after this process (re)subscribed to it.

        The first read sets where this process joined the group's stream; a later one (after
        a reconnect, or a periodic check) finds what went missing since.

        Args:
            epoch: The epoch read.
            top: The offset read.
            issued: :meth:`snapshot` when the read was issued (default: now). Publications
                may arrive between the issue and the answer, so the answer can be behind what
                was delivered; only one behind what was delivered *before* the issue proves
                that Redis forgot offsets.
        """
        gaps: list[Gap] = []
        if self._fetch is not None:
            return Outcome([], gaps, None)  # the repair's merge checks continuity
        if not self.synced:
            self.synced = True
            if self.fresh:
                self.epoch = epoch
                self.last = self.floor = top
                return Outcome([], gaps, None)
        issued_epoch, issued_last = issued if issued is not None else (self.epoch, self.last)
        if epoch != self.epoch:
            if self.epoch != issued_epoch:
                return Outcome([], gaps, None)  # arrivals moved on meanwhile: a stale read
            # A read after a reconnect: what the old connection had in flight is gone, so
            # everything after ``last`` must arrive on the new one or come from history.
            self.fresh = False
            if self.epoch:  # "": nothing had been published, so no history was lost
                gaps.append(Gap(self.group, self.epoch, None, None, "epoch_changed"))
            self.epoch = epoch
            self.last = self.floor = 0
        elif epoch == issued_epoch and top < issued_last:
            # Redis forgot offsets that were delivered (a failover lost writes the replica had
            # not received): the next publishes would reuse them. Say so; the broker then
            # starts a new epoch, so that an offset never names two messages.
            self.fresh = False
            gaps.append(Gap(self.group, self.epoch, top + 1, self.last, "rewound"))
            self.last = self.floor = top
            return Outcome([], gaps, None)
        self.fresh = False
        if top <= self.last:
            return Outcome([], gaps, None)
        if self.history:
            return Outcome([], gaps, self._start_fetch(self.last + 1, top, []))
        self.floor = max(self.floor, top)
        return Outcome([], gaps, None)

    def settle(self) -> Outcome:
        """Some time after a position read: what it showed and never arrived is a gap."""
        gaps: list[Gap] = []
        if self._fetch is None and not self.fresh and self.last < self.floor:
            gaps.append(Gap(self.group, self.epoch, self.last + 1, self.floor, "reconnect"))
            self.last = self.floor
        return Outcome([], gaps, None)

    def repaired(self, token: int, entries: list[Publication] | None) -> Outcome:
        """The answer to a :class:`Fetch`: the publications history held (None: it failed)."""
        fetch = self._fetch
        deliver: list[Publication] = []
        gaps: list[Gap] = []
        if fetch is None or fetch.token != token:
            return Outcome(deliver, gaps, None)
        self._fetch = None
        expected = self.last + 1
        for entry in entries or ():
            if entry.epoch != fetch.epoch or entry.offset < expected:
                continue
            if entry.offset > fetch.last:
                break
            if entry.offset > expected:
                gaps.append(Gap(self.group, fetch.epoch, expected, entry.offset - 1, "offset"))
            deliver.append(entry)
            expected = entry.offset + 1
        if expected <= fetch.last:
            gaps.append(Gap(self.group, fetch.epoch, expected, fetch.last, "offset"))
        self.last = max(self.last, fetch.last)
        held, self._buffer = self._buffer, []
        next_fetch = None
        for index, publication in enumerate(held):
            next_fetch = self._accept(publication, deliver, gaps)
            if next_fetch is not None:
                self._buffer = held[index + 1 :] + self._buffer
                break
        return Outcome(deliver, gaps, next_fetch)

    # ---- internals -------------------------------------------------------------------------

    def _accept(
        self, publication: Publication, deliver: list[Publication], gaps: list[Gap]
    ) -> Fetch | None:
        offset = publication.offset
        if publication.epoch != self.epoch:
            if self.epoch:
                gaps.append(Gap(self.group, self.epoch, None, None, "epoch_changed"))
                self.fresh = False
            self.epoch = publication.epoch
            self.last = 0
            self.floor = 0
        if self.fresh:
            self.fresh = False
            if offset <= self.last + 1:
                self.last = offset
                deliver.append(publication)
                return None
        if offset <= self.last:
            self.duplicates += 1
            return None
        if offset > self.last + 1:
            if self.history:
                return self._start_fetch(self.last + 1, offset - 1, [publication])
            gaps.append(Gap(self.group, self.epoch, self.last + 1, offset - 1, "offset"))
        self.last = offset
        deliver.append(publication)
        return None

    def _start_fetch(self, first: int, last: int, held: list[Publication]) -> Fetch:
        self._tokens += 1
        self._fetch = Fetch(self.epoch, first, last, self._tokens)
        self._buffer = held
        return self._fetch

    def _hold(self, publication: Publication) -> Outcome:
        if len(self._buffer) < MAX_BUFFERED:
            self._buffer.append(publication)
            return Outcome([], [], None)
        # Too much held back: give up the repair rather than grow without bound.
        fetch = self._fetch
        assert fetch is not None
        outcome = self.repaired(fetch.token, None)
        more = self.arrive(publication)
        return Outcome(outcome.deliver + more.deliver, outcome.gaps + more.gaps, more.fetch)
