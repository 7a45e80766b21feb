"""How a connector program starts: :func:`serve` one connector on stdio.

The only module of the SDK's face that reaches its runtime, and only when
called: importing it loads nothing else.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: importing typing alone costs a launcher ~10 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn


def serve(kind: str, factory: Callable[..., Any]) -> NoReturn:
    """Serve the connector built by ``factory`` on stdio, then exit the process.

    ``kind`` is "importer", "exporter" or "storage"; ``factory`` is called on
    plakar's Init with ``(proto, config, options)`` (``(proto, config)`` for
    a store) and returns the connector: usually its class. Never returns: the
    process exits as soon as plakar closes stdin.
    """
    from ._process import stdio

    stdio.serve(kind, factory)
