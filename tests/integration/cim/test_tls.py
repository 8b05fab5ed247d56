"""The push endpoint over HTTPS (TLS), with a throw-away self-signed certificate."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.cim import EventSender, parse_outbound_config
from simulators.cim.fleet import Fleet
from tests.integration.cim.conftest import running
from tests.support.net import free_port
from tests.support.recording_port import RecordingPort


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_events_over_https(tmp_path: Path, fleet: Fleet) -> None:
    cert, key = self_signed(tmp_path)
    port = RecordingPort()
    listen = free_port()
    config = {"listen": f"127.0.0.1:{listen}", "tls_cert_file": str(cert), "tls_key_file": str(key)}
    async with running(config, port):
        sender = EventSender(parse_outbound_config({"url": f"https://127.0.0.1:{listen}/cim/MeterReadings",
                                                    "ca_file": str(cert)}))
        reply = await sender.send(fleet.blocks(fleet.meter_ids[:2], fleet.start, fleet.end))
        await sender.close()
    assert reply.result == "OK"
    assert port.interval_values("CIM-000002") == fleet.expected("CIM-000002")
