"""The pipe between the engine's process and its export process: framed messages.

A frame is a 4-byte big-endian length and a pickled message. The engine writes an
:class:`ExportConfig` first, then :class:`Batch` frames of records; the export process
acknowledges the batches it has materialised with an :class:`Ack` (one for several batches,
at once for a flush). Both ends are the same voiceobs in the same interpreter, so pickle is
the compact and fast encoding here; nothing else ever reads this pipe.

A batch carries its records as plain tuples (:func:`pack`): the record's kind, then its
fields. Pickle writes a plain tuple in C, but a named tuple through a Python call of its own
(``__getnewargs__``), which made pickling a frame about 2.5 times as costly on the engine's
side; the export process turns them back into records (:func:`unpack`). A turn's stages go
without the four fields they share with their turn (call, turn number, turn span, speech end):
those are large integers, which pickle writes one by one, and leaving them out halves the cost
of pickling a turn.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
from typing import Any, NamedTuple, get_args

from opentelemetry.util.types import Attributes

from voiceobs.cost import RateCard
from voiceobs.records import Record, StageEnded, TurnEnded
from voiceobs.settings import VoiceobsSettings

_HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024
"""A longer frame means a broken stream, not a big batch."""


class ExportConfig(NamedTuple):
    """The first frame: what the export process builds its pipeline from."""

    settings: VoiceobsSettings
    resource: Attributes
    rate_card: RateCard


PlainRecord = tuple[Any, ...]
"""A record as :func:`pack` sends it: its kind's index in :data:`KINDS`, then its fields."""
KINDS: tuple[type[Record], ...] = get_args(Record)
_KIND_OF = {kind: index for index, kind in enumerate(KINDS)}
_TURN_ENDED = _KIND_OF[TurnEnded]


_SHARED_WITH_TURN = 4
"""A stage record starts with its turn's call span id, number, span id and speech end
(:class:`StageEnded`); :func:`pack` leaves them out of a turn's stages."""


def pack(records: list[Record]) -> list[PlainRecord]:
    """``records`` as plain tuples; a turn's stages too, without what they share with it."""
    kind_of = _KIND_OF
    return [
        (_TURN_ENDED, *record[:-1], tuple([stage[_SHARED_WITH_TURN:] for stage in record.stages]))
        if type(record) is TurnEnded
        else (kind_of[type(record)], *record)
        for record in records
    ]


def unpack(plain: list[PlainRecord]) -> list[Record]:
    """The records :func:`pack` made ``plain`` from."""
    records: list[Record] = []
    for kind, *fields in plain:
        record = KINDS[kind](*fields)
        if type(record) is TurnEnded:
            shared = (record.call_span_id, record.number, record.span_id, record.speech_end_ns)
            stages = tuple(StageEnded(*shared, *stage) for stage in fields[-1])
            record = record._replace(stages=stages)
        records.append(record)
    return records


class Batch(NamedTuple):
    """Records in the order the engine sent them, packed (:func:`pack`). ``flush``: after
    materialising them, export everything and say whether it was delivered."""

    seq: int
    records: list[PlainRecord]
    flush: bool


class Ack(NamedTuple):
    """The export process has materialised every batch up to ``seq``. ``flushed``: and
    exported them (``delivered``: without an export failure)."""

    seq: int
    flushed: bool
    delivered: bool


def write_frame(fd: int, message: Any) -> None:
    """Write one message; blocks while the pipe is full (only the engine's shipper thread
    and the export process write)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FrameReader:
    """Reads whole frames from a file descriptor, with an optional timeout."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()

    def read(self, timeout_s: float | None = None) -> Any | None:
        """The next message; None if none completed within ``timeout_s``. Raises
        ``EOFError`` when the other end closed the pipe."""
        while True:
            message = self._take()
            if message is not None:
                return message
            if timeout_s is not None:
                ready, _, _ = select.select([self._fd], [], [], timeout_s)
                if not ready:
                    return None
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                raise EOFError("the other end of the export channel closed it")
            self._buffer += chunk

    def _take(self) -> Any | None:
        if len(self._buffer) < _HEADER.size:
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        if length > MAX_FRAME:
            raise EOFError(f"a frame of {length} bytes: the export channel is corrupt")
        end = _HEADER.size + length
        if len(self._buffer) < end:
            return None
        data = bytes(self._buffer[_HEADER.size : end])
        del self._buffer[:end]
        return pickle.loads(data)
