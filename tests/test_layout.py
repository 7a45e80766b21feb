"""The layers of the two packages, read from their imports (no code is run).

kloset_sdk: its top level (the face a connector imports) imports nothing of
the runtime (``_wire``, ``_services``, ``_process``, ``_proto``) but through
``entry.py``, and there only inside functions; no service adapter imports
another. plakar_azblob: clients/, transfer/, mapping/ and the connectors each
import only the layers below them, and kloset_sdk's top level only. Neither
knows the other's business: no Azure in the SDK, no gRPC in the connectors.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
SDK = SRC / "kloset_sdk"
AZBLOB = SRC / "plakar_azblob"
RUNTIME = ("_wire", "_services", "_process", "_proto")


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The absolute names of the modules ``path`` imports (``from X import y``: X and
    X.y); with ``top_level_only``, not those made inside functions."""
    tree = ast.parse(path.read_text())
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found: set[str] = set()
    # The module's own statements (under if/try too), or everything.
    scopes = [s for s in tree.body if not isinstance(
        s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)] if top_level_only else [tree]
    for node in (n for scope in scopes for n in ast.walk(scope)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def _sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "_proto" not in p.parts)


def test_the_sdks_face_imports_no_runtime_but_through_entry() -> None:
    face = sorted(SDK.glob("*.py"))
    assert {p.name for p in face} >= {"__init__.py", "entry.py", "importer.py", "content.py"}
    for path in face:
        runtime = {m for m in imports(path, top_level_only=path.name == "entry.py")
                   if m.startswith(tuple(f"kloset_sdk.{r}" for r in RUNTIME))}
        assert runtime == set(), f"{path.name} imports the runtime: {sorted(runtime)}"
    # entry.py reaches it, in its functions.
    assert "kloset_sdk._process.stdio" in imports(SDK / "entry.py")


def test_no_service_adapter_imports_another() -> None:
    adapters = {name: SDK / "_services" / f"{name}.py" for name in
                ("importer", "exporter", "storage")}
    for name, path in adapters.items():
        others = {f"kloset_sdk._services.{other}" for other in adapters if other != name}
        assert not imports(path) & others, name


def test_the_sdk_knows_nothing_of_azure() -> None:
    for path in _sources(SDK):
        assert not [m for m in imports(path) if m.startswith(("azure", "plakar_azblob"))], path


def test_the_azure_layers_import_downwards_and_the_sdks_top_level_only() -> None:
    layers = ["clients", "transfer", "mapping"]  # from the bottom up; the connectors on top
    for path in _sources(AZBLOB):
        mods = imports(path)
        sdk = {m for m in mods if m.startswith("kloset_sdk.")} - {
            f"kloset_sdk.{name}" for name in __import__("kloset_sdk").__all__}
        assert sdk == set(), f"{path}: {sorted(sdk)}"
        assert not [m for m in mods if m.startswith(("grpc", "h2", "hpack", "google.protobuf"))]
        rel = path.relative_to(AZBLOB).parts
        if len(rel) > 1 and rel[0] in layers:
            above = layers[layers.index(rel[0]) + 1:]
            connectors = {"source", "storage", "destination", "__main__"}
            bad = {m for m in mods if m.split(".")[1:2] and m.split(".")[0] == "plakar_azblob"
                   and m.split(".")[1] in {*above, *connectors}}
            assert bad == set(), f"{path} imports a layer above it: {sorted(bad)}"
