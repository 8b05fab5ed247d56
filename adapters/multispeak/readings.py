"""Decoding of reading payloads element by element, so one bad element costs only itself.

Pure: takes parsed lxml elements, returns protobufs plus what was rejected (with its bytes
and reason) for the dead-letter store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree  # type: ignore[import-untyped]

from adapters.multispeak.errors import MultiSpeakProtocolError, UndecodableReading
from adapters.multispeak.normalize import (
    Delimiters,
    StatusMapper,
    formatted_block_blocks,
    interval_blocks,
    profile_for,
    profiles,
    register_reads,
)
from adapters.multispeak.soap import MSP_NS, MultiSpeakCodec
from meterhub.v1 import model_pb2 as pb

_BLOCKS = f"{{{MSP_NS}}}blocks"
_BLOCK = f"{{{MSP_NS}}}block"


@dataclass(frozen=True, slots=True)
class Rejected:
    payload: bytes
    reason_code: str
    reason: str


@dataclass(slots=True)
class Decoded:
    blocks: list[pb.IntervalBlock] = field(default_factory=list)
    register_reads: list[pb.RegisterRead] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def extend(self, other: Decoded) -> None:
        self.blocks.extend(other.blocks)
        self.register_reads.extend(other.register_reads)
        self.rejected.extend(other.rejected)

    @property
    def reads(self) -> int:
        return sum(len(b.values) for b in self.blocks) + len(self.register_reads)


def _bytes(element: etree._Element) -> bytes:
    return bytes(etree.tostring(element, encoding="utf-8"))


def _with_profiles(head: etree._Element, block_els: list[etree._Element]) -> bytes:
    """Rejected blocks with the intervalData header (profiles, delimiters) they need to be read by hand."""
    kept = etree.Element(head.tag, nsmap=head.nsmap)
    for child in head:
        kept.append(etree.fromstring(etree.tostring(child)))
    blocks = etree.SubElement(kept, _BLOCKS)
    for block_el in block_els:
        blocks.append(block_el)
    return _bytes(kept)


class ReadingDecoder:
    def __init__(self, codec: MultiSpeakCodec, statuses: StatusMapper, *, value_exponent: int,
                 interval_seconds: int) -> None:
        self.codec = codec
        self.statuses = statuses
        self.value_exponent = value_exponent
        self.interval_seconds = interval_seconds

    def interval_data(self, element: etree._Element) -> Decoded:
        """One <intervalData> (or <intervalReads>): profiles first, then each block on its own.

        An undecodable header rejects the element whole; an undecodable profile rejects the
        blocks that refer to it, together (one dead letter per profile); any other undecodable
        block rejects that block alone.
        """
        out = Decoded()
        blocks_el = element.find(_BLOCKS)
        block_els = list(blocks_el.iterfind(_BLOCK)) if blocks_el is not None else []
        if blocks_el is not None:
            element.remove(blocks_el)
        try:
            head = self.codec.decode("intervalData", element)
            known = profiles(head)
            delimiters = Delimiters.of(head)
        except MultiSpeakProtocolError as exc:
            if blocks_el is not None:
                element.append(blocks_el)
            out.rejected.append(Rejected(_bytes(element), exc.reason, f"intervalData: {exc.message}"))
            return out
        orphans: dict[str, list[etree._Element]] = {}
        for block_el in block_els:
            try:
                block = self.codec.decode("intervalBlock", block_el)
                pid, profile = profile_for(block["profileID"] or "", known)
                if isinstance(profile, UndecodableReading):
                    orphans.setdefault(pid, []).append(block_el)
                    continue
                out.blocks.extend(interval_blocks(block, known, delimiters, self.statuses,
                                                  value_exponent=self.value_exponent))
            except MultiSpeakProtocolError as exc:
                out.rejected.append(Rejected(_with_profiles(element, [block_el]), exc.reason,
                                             f"intervalData block: {exc.message}"))
        for pid, els in orphans.items():
            error = known[pid]
            assert isinstance(error, UndecodableReading)
            out.rejected.append(Rejected(_with_profiles(element, els), error.reason,
                                         f"intervalData: {error.message} ({len(els)} block(s) refer to it)"))
        return out

    def meter_readings(self, elements: list[etree._Element]) -> Decoded:
        """<meterReading> elements -> register reads."""
        out = Decoded()
        for element in elements:
            try:
                reading = self.codec.decode("meterReading", element)
                reads, errors = register_reads(reading, self.statuses, value_exponent=self.value_exponent)
            except MultiSpeakProtocolError as exc:
                out.rejected.append(Rejected(_bytes(element), exc.reason, f"meterReading: {exc.message}"))
                continue
            out.register_reads.extend(reads)
            if errors:
                out.rejected.append(Rejected(_bytes(element), UndecodableReading.reason, "; ".join(errors)))
        return out

    def formatted_blocks(self, elements: list[etree._Element]) -> Decoded:
        out = Decoded()
        for element in elements:
            try:
                fb = self.codec.decode("formattedBlock", element)
                blocks, errors = formatted_block_blocks(fb, self.interval_seconds, self.statuses,
                                                        value_exponent=self.value_exponent)
            except MultiSpeakProtocolError as exc:
                out.rejected.append(Rejected(_bytes(element), exc.reason, f"formattedBlock: {exc.message}"))
                continue
            out.blocks.extend(blocks)
            if errors:
                out.rejected.append(Rejected(_bytes(element), UndecodableReading.reason, "; ".join(errors[:20])))
        return out
