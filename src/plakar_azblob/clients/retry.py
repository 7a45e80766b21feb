"""How long a request may take, and how often it is tried again.

One policy for every request of the connectors: those of the Azure SDK's
clients (:mod:`.factory`) and the direct reads and listings
(:mod:`plakar_azblob.transfer.direct`) alike.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.storage.blob import ExponentialRetry

# The timeouts of every request, through the SDK's clients and the direct path alike.
CONNECTION_TIMEOUT = 10  # seconds: a wrong endpoint must fail fast
READ_TIMEOUT = 120  # seconds without a byte from the service
# The direct path's bodies must also arrive at this rate (bytes/s) once READ_TIMEOUT
# has passed: a body dripping a byte now and then would never hit READ_TIMEOUT.
MIN_BODY_RATE = 16 * 1024
# Retries of one request (see AzblobRetry).
STATUS_RETRIES = 6  # 408, 429 and 5xx answers (not 501/505)
READ_RETRIES = 3  # the connection failed after the request was sent
CONNECT_RETRIES = 1  # the service could not be reached: a wrong endpoint fails fast
INITIAL_BACKOFF = 0.5  # seconds, doubled at each retry, +-20 % jitter
MAX_BACKOFF = 8.0
MAX_RETRY_AFTER = 30.0  # a longer Retry-After is waited for this long only


def _retryable_status(status: int) -> bool:
    """Statuses worth another try: timeouts, throttling, server errors."""
    return status in (408, 429) or (status >= 500 and status not in (501, 505))


def retry_after(headers: Any) -> float | None:
    """Seconds asked for by ``Retry-After`` (seconds or an HTTP date) or
    ``x-ms-retry-after-ms`` / ``retry-after-ms``; None without one."""
    for name, scale in (("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001),
                        ("retry-after", 1.0)):
        value = headers.get(name)
        if not value:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    return None


class AzblobRetry(ExponentialRetry):
    """The storage retry policy, with short backoff, throttling retried and Retry-After honoured.

    azure-storage-blob's own policy never retries a 429 (it treats every 4xx
    but 408 as final) and ignores Retry-After; its backoff (15 s, then
    15 + 3^n s by default) makes a few transient errors cost minutes. Here
    each request is retried up to STATUS_RETRIES times on 408, 429 and 5xx,
    READ_RETRIES times when the connection breaks after the request went out,
    and CONNECT_RETRIES time when the service cannot be reached, so that a
    wrong endpoint is reported within seconds. The wait before retry n is
    INITIAL_BACKOFF * 2^(n-1) seconds (at most MAX_BACKOFF, +-20 %), or what
    the service's Retry-After asks if longer (at most MAX_RETRY_AFTER).
    """

    def __init__(self) -> None:
        super().__init__(initial_backoff=0, increment_base=2, retry_total=STATUS_RETRIES,
                         random_jitter_range=0, retry_connect=CONNECT_RETRIES,
                         retry_read=READ_RETRIES, retry_status=STATUS_RETRIES)

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        count = max(1, int(settings["count"]))
        backoff = min(MAX_BACKOFF, INITIAL_BACKOFF * 2 ** (count - 1))
        backoff *= random.uniform(0.8, 1.2)
        asked = settings.pop("retry_after", None)
        if asked is not None:
            backoff = max(backoff, min(float(asked), MAX_RETRY_AFTER))
        return float(backoff)

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        settings = self.configure_retries(request)
        while True:
            try:
                response = self.next.send(request)
            except AzureError as err:
                # A request that cannot be signed, or a token refused, is final.
                if isinstance(err, ClientAuthenticationError) or not self.increment(
                        settings, request=request.http_request, error=err):
                    raise
                time.sleep(self.get_backoff_time(settings))
                continue
            http = response.http_response
            if not _retryable_status(http.status_code) or not self.increment(
                    settings, request=request.http_request, response=http):
                break
            settings["retry_after"] = retry_after(http.headers)
            time.sleep(self.get_backoff_time(settings))
        if settings["history"]:
            response.context["history"] = settings["history"]
        http.location_mode = settings["mode"]
        return response


