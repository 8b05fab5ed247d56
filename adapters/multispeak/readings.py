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


class ReadingDecoder:
    def __init__(self, codec: MultiSpeakCodec, statuses: StatusMapper, *, value_exponent: int,
                 interval_seconds: int) -> None:
        self.codec = codec
        self.statuses = statuses
        self.value_exponent = value_exponent
        self.interval_seconds = interval_seconds

    def interval_data(self, element: etree._Element) -> Decoded:
        """One <intervalData> (or <intervalReads>): profiles first, then each block on its own."""
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
        for block_el in block_els:
            try:
                block = self.codec.decode("intervalBlock", block_el)
                out.blocks.extend(interval_blocks(block, known, delimiters, self.statuses,
                                                  value_exponent=self.value_exponent))
            except MultiSpeakProtocolError as exc:
                # Keep the profiles with the rejected block so the operator can decode it by hand.
                kept = etree.Element(element.tag, nsmap=element.nsmap)
                for child in element:
                    kept.append(etree.fromstring(etree.tostring(child)))
                etree.SubElement(kept, _BLOCKS).append(block_el)
                out.rejected.append(Rejected(_bytes(kept), exc.reason, f"intervalData block: {exc.message}"))
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
