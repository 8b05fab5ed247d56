"""Fault injection for the simulated head-end.

Reading-level faults damage single MeterReadings (the hub must refuse just
those); message-level faults damage a whole message. Every choice comes
from a seeded generator, so a run is reproducible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from lxml import etree  # type: ignore[import-untyped]

from adapters.cim.message import MR

# kind -> what it does
FAULT_KINDS = {
    "bad-code": "a MeterReading's ReadingType ref loses fields (the hub refuses that MeterReading)",
    "bad-quality": "a reading carries a malformed ReadingQualityType code",
    "wrong-order": "a block's ReadingType precedes its IntervalReadings (schema-invalid, still mappable)",
    "missing-interval": "single IntervalReadings are left out (gaps the hub's VEE must flag)",
    "malformed": "the message is cut short (malformed XML, refused whole)",
    "oversized": "the message is padded past --oversize-bytes (refused with 413 / DOCUMENT_TOO_LARGE)",
}
READING_FAULTS = ("bad-code", "bad-quality", "wrong-order", "missing-interval")
MESSAGE_FAULTS = ("malformed", "oversized")
_T_MR = f"{{{MR}}}MeterReading"
_T_BLOCKS = f"{{{MR}}}IntervalBlocks"
_T_IR = f"{{{MR}}}IntervalReadings"
_T_RT = f"{{{MR}}}ReadingType"


@dataclass
class FaultLog:
    """What was injected, so tests can predict the hub's outcome."""

    damaged_meters: set[str] = field(default_factory=set)
    dropped_intervals: int = 0
    reordered_meters: set[str] = field(default_factory=set)
    damaged_messages: int = 0


@dataclass
class FaultPlan:
    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 1
    oversize_bytes: int = 17 * 1024 * 1024
    log: FaultLog = field(default_factory=FaultLog)

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s): {', '.join(sorted(unknown))}")
        self._random = random.Random(self.seed)

    @classmethod
    def parse(cls, specs: list[str], *, seed: int = 1, oversize_bytes: int = 17 * 1024 * 1024) -> FaultPlan:
        """``kind`` or ``kind=rate`` (rate 0..1, default 0.1)."""
        rates: dict[str, float] = {}
        for spec in specs:
            kind, _, rate = spec.partition("=")
            value = float(rate) if rate else 0.1
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault rate {value} for {kind} is not within 0..1")
            rates[kind] = value
        return cls(rates, seed, oversize_bytes)

    def _hit(self, kind: str) -> bool:
        rate = self.rates.get(kind, 0.0)
        return rate > 0 and self._random.random() < rate

    def damage_payload(self, payload: etree._Element) -> None:
        """Reading-level faults, applied in place to a MeterReadings element."""
        if not any(self.rates.get(k) for k in READING_FAULTS):
            return
        for reading in payload.iter(_T_MR):
            meter = reading.findtext(f"{{{MR}}}Meter/{{{MR}}}mRID") or ""
            blocks = reading.findall(_T_BLOCKS)
            if self._hit("bad-code") and blocks:
                blocks[0].find(_T_RT).set("ref", "0.0.2.4.1.1.12")
                self.log.damaged_meters.add(meter)
            if self._hit("bad-quality") and blocks:
                first = blocks[0].find(_T_IR)
                if first is not None:
                    quality = etree.SubElement(etree.SubElement(first, f"{{{MR}}}ReadingQualities"),
                                               f"{{{MR}}}ReadingQualityType")
                    quality.set("ref", "1.4")
                    self.log.damaged_meters.add(meter)
            if self._hit("wrong-order") and blocks:
                block = blocks[0]
                reading_type = block.find(_T_RT)
                block.remove(reading_type)
                block.insert(0, reading_type)
                self.log.reordered_meters.add(meter)
            if self.rates.get("missing-interval") and meter not in self.log.damaged_meters:
                for block in blocks:
                    for interval in block.findall(_T_IR):
                        if self._hit("missing-interval"):
                            block.remove(interval)
                            self.log.dropped_intervals += 1

    def damage_message(self, data: bytes) -> bytes:
        """Message-level faults on the serialised message."""
        if self._hit("malformed"):
            self.log.damaged_messages += 1
            return data[: max(len(data) * 3 // 4, 1)]
        if self._hit("oversized"):
            self.log.damaged_messages += 1
            padding = b"<!--" + b"x" * max(self.oversize_bytes - len(data), 0) + b"-->"
            return data + padding
        return data
