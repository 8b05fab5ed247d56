"""The committed Python bindings must match protos/ exactly."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "protos"))

from generate import PROTO_DIR, generate  # noqa: E402


def test_committed_bindings_are_fresh(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh = sorted((tmp_path / "meterhub" / "v1").glob("*_pb2*.py*"))
    assert fresh, "protoc generated nothing"
    committed = sorted(p.name for p in PROTO_DIR.glob("*_pb2*.py*"))
    assert [p.name for p in fresh] == committed, "bindings were added or removed: run `make protos`"
    stale = [p.name for p in fresh if p.read_bytes() != (PROTO_DIR / p.name).read_bytes()]
    assert not stale, f"stale bindings {stale}: run `make protos` and commit the result"


def test_protos_follow_buf_style() -> None:
    """Every enum starts with <ENUM>_UNSPECIFIED = 0 and every RPC has its own messages."""
    import re

    for proto in PROTO_DIR.glob("*.proto"):
        text = proto.read_text()
        assert "package meterhub.v1;" in text
        for name, body in re.findall(r"enum (\w+) \{(.*?)\}", text, re.S):
            prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()
            first = re.search(r"(\w+) = 0;", body)
            assert first and first.group(1) == f"{prefix}_UNSPECIFIED", f"{proto.name}: {name}"
        for rpc, req, resp in re.findall(r"rpc (\w+)\((?:stream )?(\w+)\) returns \((?:stream )?(\w+)\)", text):
            assert req == f"{rpc}Request", f"{rpc} takes {req}"
            assert resp == f"{rpc}Response", f"{rpc} returns {resp}"
        assert not re.search(r"\buint(32|64)\b", text), f"{proto.name} uses unsigned ints"


def test_protos_compile_alone_for_other_languages(tmp_path: Path) -> None:
    """A Java or Go team needs nothing but protos/ and protoc's well-known types:
    the files compile on their own into a descriptor set that any language's
    plugin consumes, and carry java_package / go_package options."""
    import grpc_tools
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    protos = [str(p.relative_to(ROOT / "protos")) for p in PROTO_DIR.glob("*.proto")]
    out = tmp_path / "meterhub.pb"
    code = protoc.main(["protoc", f"-I{ROOT / 'protos'}", f"-I{well_known}", "--include_imports",
                        f"--descriptor_set_out={out}", *protos])
    assert code == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    ours = [f for f in files if f.package == "meterhub.v1"]
    assert len(ours) == len(protos)
    assert {f.name.split("/")[0] for f in files} == {"meterhub", "google"}
    for f in ours:
        assert f.options.java_package == "io.meterhub.v1", f.name
        assert f.options.go_package.endswith(";meterhubv1"), f.name
