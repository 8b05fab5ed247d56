"""`meterhub serve` as a plain process: the container's entry command."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.net import free_port


def wait_serving(target: str, deadline: float) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)


def test_serve_starts_reports_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "hub.toml"
    config.write_text(f'[hub]\nstore = "hub.sqlite"\n[grpc]\nlisten = "127.0.0.1:{port}"\n')
    with subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            wait_serving(f"127.0.0.1:{port}", time.monotonic() + 30)
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0
    assert (tmp_path / "hub.sqlite").exists()
    assert "draining" in err


def test_serve_rejects_a_bad_config_with_the_key(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('[grpc]\nlisten = "0.0.0.0:50051"\n')
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "grpc.allow_plaintext_remote" in result.stderr
