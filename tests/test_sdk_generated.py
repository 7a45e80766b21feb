"""The committed protobuf modules are exactly what proto/ generates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "src" / "kloset_sdk" / "_proto"


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_proto.py"), str(tmp_path)],
                   check=True, capture_output=True)
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir() if p.is_file()}
    committed = {p.name: p.read_text() for p in COMMITTED.iterdir() if p.is_file()}
    assert sorted(fresh) == sorted(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert stale == [], f"regenerate with `make proto`: {stale} differ"


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
