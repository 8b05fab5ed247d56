"""Hardened XML parsing: entities, DTDs and network off, sizes capped.

Every parser here is built with ``resolve_entities=False, no_network=True,
load_dtd=False, huge_tree=False``, and any document carrying a DOCTYPE is
rejected outright: we never need one, and refusing it closes XXE and entity
expansion ("billion laughs") regardless of libxml2 defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from lxml import etree  # type: ignore[import-untyped]

from adapters.cim.errors import DocumentTooLarge, ForbiddenXml, MalformedXml

PARSER_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
    "remove_comments": False,
}


def new_parser() -> etree.XMLParser:
    """A fresh hardened parser (lxml parsers are not shared between threads)."""
    return etree.XMLParser(**PARSER_OPTIONS)


DOCTYPE = b"<!DOCTYPE"
DTD_REFUSED = "document has a DOCTYPE; DTDs and entity declarations are not accepted"
_PEEK_BYTES = 64 * 1024


def _reject_dtd(root: etree._Element) -> None:
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise ForbiddenXml(DTD_REFUSED)


class _PeekingReader:
    """Keeps the first bytes read, to tell a refused DTD from other syntax errors."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self.head = b""

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if len(self.head) < _PEEK_BYTES:
            self.head += data[: _PEEK_BYTES - len(self.head)]
        return data


def _reject_entities(root: etree._Element) -> None:
    for _ in root.iter(etree.Entity):
        raise ForbiddenXml("document contains an entity reference; entities are not accepted")


def parse_document(data: bytes, *, max_bytes: int) -> etree._Element:
    """Parse a whole document held in memory; the size cap is checked first."""
    if len(data) > max_bytes:
        raise DocumentTooLarge(f"document of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        root = etree.fromstring(data, new_parser())
    except etree.XMLSyntaxError as exc:
        if DOCTYPE in data:
            # libxml2 may trip over the DTD itself (entity amplification) first.
            raise ForbiddenXml(DTD_REFUSED) from exc
        raise MalformedXml(f"malformed XML: {_describe(exc)}") from exc
    except ValueError as exc:  # e.g. an encoding declaration lxml refuses
        raise MalformedXml(f"malformed XML: {_describe(exc)}") from exc
    _reject_dtd(root)
    _reject_entities(root)
    return root


def iterparse(source: IO[bytes], *, tags: tuple[str, ...] | None = None,
              events: tuple[str, ...] = ("start", "end")) -> Iterator[tuple[str, etree._Element]]:
    """Streaming parse of a file-like object with the hardened options.

    The DOCTYPE check runs at the first event (a DOCTYPE always precedes the
    root element, so nothing of the body has been looked at yet), or at the
    end when ``tags`` filtered out every element. Syntax errors surface as
    MalformedXml with libxml2's line and column.
    """
    kwargs: dict[str, Any] = dict(PARSER_OPTIONS)
    kwargs.pop("remove_comments")
    if tags is not None:
        kwargs["tag"] = tags
    peeking = _PeekingReader(source)
    context = etree.iterparse(peeking, events=events, **kwargs)
    first = True
    try:
        for event, element in context:
            if first:
                _reject_dtd(element)
                first = False
            if event == "end" and _has_entity_child(element):
                raise ForbiddenXml(f"entity reference inside <{etree.QName(element).localname}>; "
                                   "entities are not accepted")
            yield event, element
        if first and context.root is not None:
            # No element matched ``tags``: the document still must not carry a DTD.
            _reject_dtd(context.root)
    except etree.XMLSyntaxError as exc:
        if first and DOCTYPE in peeking.head:
            raise ForbiddenXml(DTD_REFUSED) from exc
        raise MalformedXml(f"malformed XML: {_describe(exc)}") from exc
    except ValueError as exc:
        raise MalformedXml(f"malformed XML: {_describe(exc)}") from exc


def _has_entity_child(element: etree._Element) -> bool:
    # Undeclared entities are syntax errors and declared ones need a DTD, which
    # is refused first; this is a cheap belt-and-braces check on leaf values.
    return len(element) == 1 and isinstance(element[0], etree._Entity)


def _describe(exc: etree.XMLSyntaxError) -> str:
    """libxml2's first fatal error with its position (iterparse's own text can be vague)."""
    log = exc.error_log
    fatal = log.filter_from_fatals() if log is not None else None
    if fatal:
        first = fatal[-1]
        return f"{first.message} (line {first.line}, column {first.column})"
    return str(exc)
