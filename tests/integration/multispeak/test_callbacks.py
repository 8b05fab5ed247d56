"""InitiateMeterReadingsByMeterID and the CB_Server callbacks, over loopback HTTP and HTTPS."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.multispeak import MultiSpeakAdapter, parse_config
from adapters.multispeak.soap import CB_SERVER, MessageHeader, MultiSpeakCodec
from meterhub.v1 import model_pb2 as pb
from simulators.multispeak.fleet import FleetData, meter_ids
from simulators.multispeak.server import XXE_PAYLOAD, HeadEndSimulator
from tests.support.recording_port import RecordingPort

NOW = datetime(2026, 3, 3, 6, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def make_adapter(url: str, meters: tuple[str, ...], port: RecordingPort, clock: Clock, **extra: object
                 ) -> MultiSpeakAdapter:
    raw: dict[str, object] = {"url": url, "meters": list(meters), "user": "hub", "password": "secret",
                              "callback_listen": "127.0.0.1:0", "callback_user": "headend",
                              "callback_password": "cb-secret", "transaction_expiry_seconds": 60.0,
                              "max_retries": 0}
    raw.update(extra)
    return MultiSpeakAdapter("ms-cb", parse_config(raw), port, clock=clock)


async def test_initiate_reads_arrive_by_callback_correlated() -> None:
    clock = Clock()
    port = RecordingPort()
    meters = meter_ids(3)
    async with HeadEndSimulator(meters, user="hub", password="secret", clock=clock, callback_user="headend",
                                callback_password="cb-secret") as sim:
        adapter = make_adapter(sim.url, meters, port, clock)
        async with adapter.session():
            opened = await adapter.initiate_reads(meters)
            await sim.wait_callbacks()
    assert len(opened) == 1
    assert sim.stats.callbacks_sent == 2 and not sim.stats.callback_errors
    data = FleetData(900)
    registers = {r.meter_id: r.value for b in port.batches for r in b.register_reads}
    assert registers == {m: data.register_wh(m, NOW) for m in meters}
    day = NOW.replace(hour=0)
    for m in meters:
        assert port.interval_values(m) == {e: data.interval_wh(m, e) for e in data.ends(day - timedelta(days=1), day)}
    assert not port.dead_letters
    assert adapter.callback is not None and adapter.callback.notifications == 2


async def test_unknown_and_expired_transactions_are_dead_lettered() -> None:
    clock = Clock()
    port = RecordingPort()
    meters = meter_ids(1)
    async with HeadEndSimulator(meters, clock=clock, callback_user="headend", callback_password="cb-secret") as sim:
        adapter = make_adapter(sim.url, meters, port, clock)
        async with adapter.session():
            url = adapter.callback_url
            # Never initiated.
            async with httpx.AsyncClient(trust_env=False) as client:
                for _, body in sim.notifications("not-ours", list(meters), NOW)[:1]:
                    reply = await client.post(url, content=body)
                assert reply.status_code == 200
                assert b"UNKNOWN_TRANSACTION" in reply.content
                # Initiated, then expired before the callback came.
                adapter.transactions.open("late", frozenset(meters), clock(), timedelta(seconds=60))
                clock.now = NOW + timedelta(seconds=61)
                body = sim.notifications("late", list(meters), NOW)[0][1]
                reply = await client.post(url, content=body)
                assert b"TRANSACTION_EXPIRED" in reply.content
    assert [d.reason_code for d in port.dead_letters] == ["UNKNOWN_TRANSACTION", "TRANSACTION_EXPIRED"]
    assert not port.batches


async def test_callback_refuses_xxe_and_wrong_credentials() -> None:
    clock = Clock()
    port = RecordingPort()
    meters = meter_ids(1)
    adapter = make_adapter("http://127.0.0.1:9/MR_Server.asmx", meters, port, clock, max_callback_bytes=65536)
    async with adapter.session(), httpx.AsyncClient(trust_env=False) as client:
        url = adapter.callback_url
        reply = await client.post(url, content=XXE_PAYLOAD)
        assert reply.status_code == 500
        assert b"XML_FORBIDDEN" in reply.content
        codec = MultiSpeakCodec(CB_SERVER, max_bytes=1 << 20)
        ping = codec.build_request("PingURL", MessageHeader(user="headend", password="wrong"))
        reply = await client.post(url, content=ping)
        assert reply.status_code == 500 and b"Client.Authentication" in reply.content
        ping = codec.build_request("PingURL", MessageHeader(user="headend", password="cb-secret"))
        reply = await client.post(url, content=ping)
        assert reply.status_code == 200 and b"PingURLResponse" in reply.content
        reply = await client.post(url, content=b"x" * 100_000, headers={"Authorization": "Basic c2VjcmV0"})
        assert reply.status_code == 413
    assert [d.reason_code for d in port.dead_letters] == ["XML_FORBIDDEN", "XML_TOO_LARGE"]
    assert b"file:///etc/passwd" in port.dead_letters[0].payload
    # The 413 is recorded with the request head it was decided on; the body was never read.
    too_large = port.dead_letters[1]
    assert too_large.reason == ("callback: POST /CB_Server.asmx declared a body of 100000 bytes, above the "
                                "65536-byte cap; body not read")
    assert too_large.content_type == "message/http"
    assert too_large.payload.startswith(b"POST /CB_Server.asmx HTTP/1.1\r\n")
    assert b"content-length: 100000\r\n" in too_large.payload and too_large.payload.endswith(b"\r\n\r\n")
    assert b"authorization: [redacted]\r\n" in too_large.payload and b"c2VjcmV0" not in too_large.payload


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


async def test_https_both_ways(tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    client_tls = ssl.create_default_context(cafile=str(cert_file))
    clock = Clock()
    port = RecordingPort()
    meters = meter_ids(2)
    async with HeadEndSimulator(meters, user="hub", password="secret", clock=clock, ssl_context=server_tls,
                                callback_ssl_context=client_tls, callback_user="headend",
                                callback_password="cb-secret", start=NOW - timedelta(hours=2)) as sim:
        assert sim.url.startswith("https://")
        adapter = make_adapter(sim.url, meters, port, clock, tls_ca_file=str(cert_file),
                               callback_tls_cert_file=str(cert_file), callback_tls_key_file=str(key_file),
                               start=(NOW - timedelta(hours=2)).isoformat())
        async with adapter.session():
            assert adapter.callback_url.startswith("https://")
            reads = await adapter.poll_once()
            await adapter.initiate_reads(meters)
            await sim.wait_callbacks()
    assert reads == 2 * 8 + 2
    assert not sim.stats.callback_errors
    assert any(b.register_reads for b in port.batches[-2:])
    assert all(isinstance(b, pb.ReadingBatch) for b in port.batches)


async def test_untrusted_certificate_is_a_transport_error(tmp_path: Path) -> None:
    from adapters.multispeak import MultiSpeakTransportError
    cert_file, key_file = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    port = RecordingPort()
    async with HeadEndSimulator(meter_ids(1), ssl_context=server_tls) as sim:
        adapter = make_adapter(sim.url, sim.meters, port, Clock(), callback_listen="")
        async with adapter.session():
            with pytest.raises(MultiSpeakTransportError, match=r"(?i)certificate"):
                await adapter.call("PingURL")
    await asyncio.sleep(0)
