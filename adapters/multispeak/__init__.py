"""MultiSpeak v4.1 adapter: polls a head-end's MR_Server (zeep, our own WSDL subset) and hosts
the CB_Server callback endpoint for asynchronous reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.multispeak.adapter import MultiSpeakAdapter
from adapters.multispeak.config import MultiSpeakConfig, parse_config
from adapters.multispeak.errors import (
    AuthenticationFault,
    ExpiredTransaction,
    ForbiddenXml,
    HttpStatusError,
    MalformedXml,
    MultiSpeakError,
    MultiSpeakProtocolError,
    MultiSpeakTimeout,
    MultiSpeakTransportError,
    SoapClientFault,
    SoapFault,
    SoapServerFault,
    UndecodableReading,
    UnexpectedContent,
    UnknownTransaction,
    XmlTooLarge,
)
from adapters.port import IngestPort

__all__ = [
    "AuthenticationFault",
    "ExpiredTransaction",
    "ForbiddenXml",
    "HttpStatusError",
    "MalformedXml",
    "MultiSpeakAdapter",
    "MultiSpeakConfig",
    "MultiSpeakError",
    "MultiSpeakProtocolError",
    "MultiSpeakTimeout",
    "MultiSpeakTransportError",
    "SoapClientFault",
    "SoapFault",
    "SoapServerFault",
    "UndecodableReading",
    "UnexpectedContent",
    "UnknownTransaction",
    "XmlTooLarge",
    "create_adapter",
    "parse_config",
]


def create_adapter(name: str, config: Mapping[str, Any], port: IngestPort) -> MultiSpeakAdapter:
    """Entry point (group meterhub.adapters, name "multispeak")."""
    return MultiSpeakAdapter(name, parse_config(config), port)
