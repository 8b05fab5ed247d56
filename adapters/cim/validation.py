"""XSD validation of inbound messages against our own schema subset
(switched on per head-end with ``validate_schema``)."""

from __future__ import annotations

from pathlib import Path

from lxml import etree  # type: ignore[import-untyped]

from adapters.cim.errors import SchemaInvalid
from adapters.cim.message import MRM
from adapters.cim.xmlsafe import new_parser

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
MAX_REPORTED_ERRORS = 5


class SchemaValidator:
    """Loads the subset once; ``validate`` takes the message element (the SOAP
    Body's child for the SOAP binding)."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self._generic = self._load(schema_dir / "message.xsd")
        self._typed = self._load(schema_dir / "meterreadings-message.xsd")

    @staticmethod
    def _load(path: Path) -> etree.XMLSchema:
        document = etree.parse(str(path), new_parser())
        return etree.XMLSchema(document)

    def validate(self, message: etree._Element) -> None:
        schema = self._typed if etree.QName(message).namespace == MRM else self._generic
        if schema.validate(message):
            return
        errors = [f"line {e.line}: {e.message}" for e in list(schema.error_log)[:MAX_REPORTED_ERRORS]]
        raise SchemaInvalid("message does not match the schema: " + "; ".join(errors))
