"""h2spec, the HTTP/2 server conformance suite, run against a server; results by case.

h2spec (github.com/summerwind/h2spec, built by ``make h2spec`` into .tools/)
opens one TCP connection per case. The connectors serve on their stdin and
stdout, so they are reached through :class:`socket_stdio.SocketStdio`: each
connection becomes a new connector process (as plakar spawns them). A case
is named by h2spec's section and its position there (``http2/6.9.1/3``:
the third case of RFC 7540 section 6.9.1; ``generic/...``, ``hpack/...``).

``python tests/h2spec_run.py`` prints the figures of docs/sdk.md side by side:
our storage connector, the official Go package's storage connector (grpc-go,
built by tests/go_package.py) under the same adapter, and grpcio's C-core
server (a trivial servicer on TCP).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

from socket_stdio import SocketStdio

ROOT = Path(__file__).resolve().parent.parent
CASES = 145  # in h2spec v2.2.1, without its --strict ones
# Seconds h2spec waits for each expected frame. A conforming answer comes in
# milliseconds; the wait is spent on cases a server fails by not answering.
TIMEOUT = 2
RUN_TIMEOUT = 900  # seconds for a whole run: 145 cases, most failing by timeout at worst


def h2spec_path() -> Path | None:
    """The h2spec binary ``make h2spec`` installs ($H2SPEC_BIN), or None."""
    configured = os.environ.get("H2SPEC_BIN")
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    found = sorted((ROOT / ".tools").glob("h2spec-*/h2spec"))
    return found[-1] if found else None


@dataclass(frozen=True)
class Case:
    title: str
    outcome: str  # "passed", "failed" or "skipped"
    detail: str  # what h2spec expected and saw, for a failure


def parse_report(path: Path) -> dict[str, Case]:
    """The cases of an h2spec JUnit report, by id."""
    cases = {}
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for position, case in enumerate(suite.iter("testcase"), 1):
            outcome, detail = "passed", ""
            for tag in ("failure", "error", "skipped"):
                element = case.find(tag)
                if element is not None:
                    outcome = "skipped" if tag == "skipped" else "failed"
                    detail = " | ".join((element.text or "").split("\n"))
            cases[f"{case.get('package')}/{position}"] = Case(
                case.get("classname") or "", outcome, detail)
    return cases


def run_h2spec(port: int, timeout: int = TIMEOUT) -> dict[str, Case]:
    """Run every case against 127.0.0.1:``port``."""
    binary = h2spec_path()
    if binary is None:
        raise FileNotFoundError("h2spec is not installed (make h2spec)")
    with tempfile.TemporaryDirectory(prefix="h2spec-") as tmp:
        report = Path(tmp) / "report.xml"
        subprocess.run([str(binary), "-h", "127.0.0.1", "-p", str(port), "-o", str(timeout),
                        "-j", str(report)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT, check=False)
        cases = parse_report(report)
    if len(cases) != CASES:
        raise RuntimeError(f"h2spec ran {len(cases)} cases, not {CASES}")
    return cases


def passed(cases: dict[str, Case]) -> set[str]:
    return {case_id for case_id, case in cases.items() if case.outcome == "passed"}


def our_connector() -> list[str]:
    """Our storage connector, as the development package runs it."""
    from azblob_package import entry_point

    return [str(entry_point()), "storage"]


def go_connector() -> list[str]:
    """The official Go package's storage connector (built once per machine)."""
    from go_package import go_binary

    return [str(go_binary("storage"))]


def run_on_stdio(argv: list[str], timeout: int = TIMEOUT) -> tuple[dict[str, Case], SocketStdio]:
    """h2spec against ``argv`` spawned per connection; the adapter tells of its processes."""
    with SocketStdio(argv) as adapter:
        cases = run_h2spec(adapter.port, timeout)
    return cases, adapter


def run_on_grpcio(timeout: int = TIMEOUT) -> dict[str, Case]:
    """h2spec against grpcio's C-core server on TCP, serving one trivial method."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # its log of each broken rule
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(8))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("store.Store", {
        "Ping": grpc.unary_unary_rpc_method_handler(lambda request, context: b""),
    })])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        return run_h2spec(port, timeout)
    finally:
        server.stop(None)


def main() -> None:
    rows = {
        "this package's storage connector": run_on_stdio(our_connector())[0],
        "official Go package's storage connector (grpc-go)": run_on_stdio(go_connector())[0],
        "grpcio's C-core server (a trivial servicer on TCP)": run_on_grpcio(),
    }
    print(f"| server | h2spec v2.2.1 cases passed (of {CASES}) |\n|---|---|")
    for name, cases in rows.items():
        print(f"| {name} | {len(passed(cases))} |")
    ours = passed(rows["this package's storage connector"])
    for name, cases in rows.items():
        extra = sorted(passed(cases) - ours)
        if extra:
            print(f"passed by the {name} and not by ours: {', '.join(extra)}")


if __name__ == "__main__":  # python tests/h2spec_run.py (tests/ is then on sys.path)
    main()
