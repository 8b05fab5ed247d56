"""TLS, mutual TLS and role tokens on the real gRPC server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from gateway.config import GrpcConfig, HubConfig, parse_config
from gateway.errors import ConfigError
from gateway.hub import Hub
from gateway.security import TlsConfig, TokenAuthority, hash_token
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import ingest_service_pb2 as ing
from meterhub.v1 import ingest_service_pb2_grpc as ing_grpc
from tests.support.certs import Pki, make_pki

TOKENS = {"reader-token": ["reader"], "cis-token": ["cis"], "admin-token": ["admin"]}


def authority() -> TokenAuthority:
    return TokenAuthority.from_entries(
        [{"name": t.split("-")[0], "roles": roles, "sha256": hash_token(t)} for t, roles in TOKENS.items()],
        "security.tokens")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture
async def secured_hub(tmp_path: Path, pki: Pki) -> AsyncIterator[Hub]:
    config = HubConfig(store=str(tmp_path / "hub.sqlite"), grpc=GrpcConfig(
        listen="127.0.0.1:0", tls=TlsConfig(pki.server_cert, pki.server_key, pki.ca_cert), authority=authority()))
    async with Hub(config) as hub:
        yield hub


def client_credentials(pki: Pki, with_cert: bool = True) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca_cert.read_bytes(),
        private_key=pki.client_key.read_bytes() if with_cert else None,
        certificate_chain=pki.client_cert.read_bytes() if with_cert else None,
    )


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_roles_decide_who_may_call_what(secured_hub: Hub, pki: Pki) -> None:
    async with grpc.aio.secure_channel(secured_hub.grpc_target, client_credentials(pki)) as channel:
        admin = adm_grpc.AdminServiceStub(channel)
        created = await admin.UpsertMeters(adm.UpsertMetersRequest(meters=[adm.Meter(meter_id="M1")]),
                                           metadata=bearer("cis-token"))
        assert created.created_count == 1
        listed = await admin.ListMeters(adm.ListMetersRequest(), metadata=bearer("reader-token"))
        assert [m.meter_id for m in listed.meters] == ["M1"]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin.UpsertMeters(adm.UpsertMetersRequest(), metadata=bearer("reader-token"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin.ListMeters(adm.ListMetersRequest(), metadata=bearer("forged"))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin.ListMeters(adm.ListMetersRequest())
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

        async def one() -> AsyncIterator[ing.StreamBatchesRequest]:
            yield ing.StreamBatchesRequest()

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ing_grpc.IngestServiceStub(channel).StreamBatches(one(), metadata=bearer("reader-token"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_mutual_tls_refuses_a_client_without_certificate(secured_hub: Hub, pki: Pki) -> None:
    async with grpc.aio.secure_channel(secured_hub.grpc_target, client_credentials(pki, with_cert=False)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await adm_grpc.AdminServiceStub(channel).ListMeters(
                adm.ListMetersRequest(), metadata=bearer("admin-token"), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_plaintext_client_cannot_talk_to_tls_listener(secured_hub: Hub) -> None:
    async with grpc.aio.insecure_channel(secured_hub.grpc_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await adm_grpc.AdminServiceStub(channel).ListMeters(
                adm.ListMetersRequest(), metadata=bearer("admin-token"), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_token_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="unknown role 'root'"):
        parse_config({"security": {"tokens": [{"name": "x", "roles": ["root"], "sha256": "0" * 64}]}})
    with pytest.raises(ConfigError, match="sha256 must be"):
        parse_config({"security": {"tokens": [{"name": "x", "roles": ["reader"], "sha256": "plaintext"}]}})
    config = parse_config({"security": {"tokens": [{"name": "x", "roles": ["reader"], "sha256": hash_token("t")}]}})
    assert config.grpc.authority is not None
    assert config.grpc.authority.verify("t") is not None
    assert config.grpc.authority.verify("u") is None
