"""DLMS/COSEM (IEC 62056) over TCP: a sans-I/O codec and a polling adapter.

Entry point ``adapters.dlms:create_adapter`` (group ``meterhub.adapters``, type ``dlms``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.dlms.adapter import DlmsAdapter, PollReport
from adapters.dlms.config import DlmsConfig, MeterEndpoint, parse_config
from adapters.port import IngestPort

__all__ = ["DlmsAdapter", "DlmsConfig", "MeterEndpoint", "PollReport", "create_adapter", "parse_config"]


def create_adapter(name: str, config: Mapping[str, Any], port: IngestPort) -> DlmsAdapter:
    """Validate the source's table (raises gateway.errors.ConfigError) and build the adapter."""
    return DlmsAdapter(name, parse_config(config), port)
