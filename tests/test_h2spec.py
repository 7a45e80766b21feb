"""HTTP/2 conformance, proven by a suite no one here wrote: h2spec v2.2.1.

Our storage connector is served one h2spec connection per process, the
socket as its stdin and stdout (as plakar's pipes), and so is the official
Go package's (grpc-go): every case passes for ours, except those named in
NOT_APPLICABLE with the reason, and every case the Go connector passes,
ours passes too. ``python tests/h2spec_run.py`` prints the figures of docs/sdk.md
(with grpcio's server).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from h2spec_run import CASES, Case, go_connector, h2spec_path, our_connector, passed, run_on_stdio
from socket_stdio import SocketStdio

pytestmark = pytest.mark.skipif(h2spec_path() is None,
                                reason="h2spec is not installed (make h2spec)")

# Cases that cannot apply to a gRPC server on plakar's private pipe, with why.
# None so far: every case of h2spec v2.2.1 applies and passes.
NOT_APPLICABLE: dict[str, str] = {}
# Ours is given more time per expected frame than the default, so that a
# loaded machine (a connector process starting slowly) fails no case.
OUR_TIMEOUT = 5


@pytest.fixture(scope="module")
def ours() -> Iterator[tuple[dict[str, Case], SocketStdio]]:
    yield run_on_stdio(our_connector(), OUR_TIMEOUT)


def _failures(cases: dict[str, Case], ids: set[str]) -> str:
    return "\n".join(f"{i} {cases[i].title} ({cases[i].outcome}): {cases[i].detail}"
                     for i in sorted(ids))


def test_every_case_passes(ours: tuple[dict[str, Case], SocketStdio]) -> None:
    cases, _ = ours
    assert len(cases) == CASES
    not_passed = set(cases) - passed(cases)
    assert not_passed <= set(NOT_APPLICABLE), _failures(cases, not_passed - set(NOT_APPLICABLE))
    for case_id in NOT_APPLICABLE:
        assert case_id in cases, f"{case_id} is no h2spec case"


def test_connector_processes_end_cleanly(ours: tuple[dict[str, Case], SocketStdio]) -> None:
    """Every connection's process exits by itself once h2spec is done with it, and a
    broken rule shows as one line on stderr naming it, never a traceback."""
    _, adapter = ours
    assert len(adapter.spawned) >= CASES
    assert adapter.killed == []
    errors = []
    for spawned in adapter.spawned:
        assert spawned.proc.returncode == 0
        lines = spawned.stderr().splitlines()
        assert len(lines) <= 1, lines
        assert "Traceback" not in spawned.stderr()
        errors += lines
    connection_errors = [line for line in errors if "HTTP/2 connection error" in line]
    stream_errors = [line for line in errors if "HTTP/2 stream" in line]
    assert len(connection_errors) + len(stream_errors) == len(errors), errors
    # h2spec breaks rules of both kinds, many times: each is told.
    assert any("FRAME_SIZE_ERROR" in line for line in connection_errors)
    assert any("PROTOCOL_ERROR" in line for line in stream_errors)


@pytest.mark.interop
def test_every_case_the_go_connector_passes_passes(
    ours: tuple[dict[str, Case], SocketStdio]
) -> None:
    cases, _ = ours
    go_cases, _ = run_on_stdio(go_connector())
    assert len(go_cases) == CASES
    missing = passed(go_cases) - passed(cases)
    assert not missing, _failures(cases, missing)
    # The floor is a real one: grpc-go passes most of the suite here.
    assert len(passed(go_cases)) > 100
    print(f"h2spec: ours {len(passed(cases))}, Go connector {len(passed(go_cases))} of {CASES}")
