"""The committed protobuf modules and gRPC stubs are exactly what proto/ generates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = ROOT / "src" / "kloset_sdk" / "_proto"
STUBS = ROOT / "tests" / "kloset_grpc"


def _files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir() if p.is_file()}


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_proto.py"),
                    str(tmp_path / "messages"), str(tmp_path / "stubs")],
                   check=True, capture_output=True)
    for fresh, committed in ((_files(tmp_path / "messages"), _files(MESSAGES)),
                             (_files(tmp_path / "stubs"), _files(STUBS))):
        assert sorted(fresh) == sorted(committed)
        stale = [name for name in fresh if fresh[name] != committed[name]]
        assert stale == [], f"regenerate with `make proto`: {stale} differ"


def test_no_grpc_stub_ships_in_the_sdk() -> None:
    """The SDK serves gRPC without grpcio: its package holds the messages only."""
    shipped = sorted(p.name for p in (ROOT / "src").rglob("*.py*") if p.suffix in (".py", ".pyi"))
    assert [name for name in shipped if "_grpc" in name] == []
    assert {"importer_pb2.py", "importer_pb2.pyi"} <= set(shipped)


def test_method_paths_match_plakar() -> None:
    from kloset_sdk._proto import exporter_pb2, importer_pb2, store_pb2

    def methods(module: object, service: str) -> set[str]:
        desc = module.DESCRIPTOR.services_by_name[service]  # type: ignore[attr-defined]
        return {f"/{desc.full_name}/{m.name}" for m in desc.methods}

    assert methods(importer_pb2, "Importer") == {
        f"/importer.Importer/{m}" for m in ("Init", "Ping", "Import", "Open", "Close")}
    assert methods(exporter_pb2, "Exporter") == {
        f"/plakar.exporter.Exporter/{m}" for m in ("Init", "Ping", "Export", "Close")}
    assert methods(store_pb2, "Store") == {
        f"/store.Store/{m}" for m in ("Init", "Create", "Open", "Ping", "Mode", "Size", "List",
                                      "Put", "Get", "Delete", "Close")}
    assert store_pb2.InitResponse.DESCRIPTOR.fields_by_name["flags"].number == 5
    assert importer_pb2.InitResponse.DESCRIPTOR.fields_by_name["flags"].number == 4
