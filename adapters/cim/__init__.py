"""IEC 61968-9 MeterReadings in the IEC 61968-100 envelope: push endpoint
(SOAP binding and plain XML), get polling, drop directory, outbound events."""

from adapters.cim.adapter import CimAdapter, create_adapter
from adapters.cim.config import CimConfig, OutboundConfig, parse_config, parse_outbound_config
from adapters.cim.errors import (
    BadQualityCode,
    BadReadingType,
    BadTimestamp,
    BadValue,
    CimError,
    CimTransportError,
    ConflictingReading,
    ContentError,
    DocumentTooLarge,
    EnvelopeError,
    ForbiddenXml,
    MalformedXml,
    MisalignedReading,
    MissingMeterId,
    RejectedByHub,
    ReplyFailed,
    SchemaInvalid,
    UnsupportedMessage,
)
from adapters.cim.outbound import EventSender, build_created_event

__all__ = [
    "BadQualityCode", "BadReadingType", "BadTimestamp", "BadValue", "CimAdapter", "CimConfig", "CimError",
    "CimTransportError", "ConflictingReading", "ContentError", "DocumentTooLarge", "EnvelopeError", "EventSender",
    "ForbiddenXml", "MalformedXml", "MisalignedReading", "MissingMeterId", "OutboundConfig", "RejectedByHub",
    "ReplyFailed", "SchemaInvalid", "UnsupportedMessage", "build_created_event", "create_adapter",
    "parse_config", "parse_outbound_config",
]
