"""ANSI C12.22 adapter: a sans-I/O C12.22 codec, C12.19 tables and a polling reader."""

from adapters.c1222.adapter import ADAPTER_TYPE, C1222Adapter, PollOutcome, create_adapter
from adapters.c1222.codec import Apdu, ApTitle, AuthValue, Epsem, KeyRing, SecurityMode
from adapters.c1222.config import C1222Config, parse_config
from adapters.c1222.errors import C1222Error, ResponseError

__all__ = [
           "ADAPTER_TYPE",
           "ApTitle",
           "Apdu",
           "AuthValue",
           "C1222Adapter",
           "C1222Config",
           "C1222Error",
           "Epsem",
           "KeyRing",
           "PollOutcome",
           "ResponseError",
           "SecurityMode",
           "create_adapter",
           "parse_config",
]
