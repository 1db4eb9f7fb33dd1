"""A circuit breaker for the Triton calls: once Triton is known to be down or hanging, feeds stop
waiting for it.

Closed: every call goes through. After `failures` calls in a row found Triton unavailable (no
answer, or none within the timeout), the circuit opens: calls fail at once for `open_s` seconds.
Then it is half-open: one call goes through as a probe (the others still fail at once); if Triton
answers, the circuit closes, if not, it opens again. A known-bad Triton so costs one timeout per
`open_s`, not one per feed. An answer of any kind, a refusal included, counts as Triton being up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from phoenix.errors import TritonUnavailable


class CircuitBreaker:
    def __init__(
        self,
        *,
        failures: int = 3,
        open_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if failures < 1 or not open_s > 0:
            raise ValueError(f"failures must be >= 1 and open_s > 0, not {failures}, {open_s}")
        self.failures = failures
        self.open_s = open_s
        self._clock = clock
        self.on_change = on_change
        self._in_a_row = 0
        self._opened_at: float | None = None
        self._probing = False
        self._reason = ""

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def before_call(self) -> None:
        """Raise TritonUnavailable at once while the circuit is open (but let one probe through
        every `open_s`)."""
        if self._opened_at is None:
            return
        if self._probing or self._clock() - self._opened_at < self.open_s:
            raise TritonUnavailable(f"circuit open after repeated failures ({self._reason})")
        self._probing = True

    def succeeded(self) -> None:
        self._in_a_row = 0
        self._probing = False
        if self._opened_at is not None:
            self._opened_at = None
            if self.on_change is not None:
                self.on_change(False)

    def failed(self, reason: str) -> bool:
        """Count an unavailable answer; True when this failure opened the circuit."""
        self._in_a_row += 1
        self._reason = reason
        if self._probing:  # the probe failed: open again for another open_s
            self._probing = False
            self._opened_at = self._clock()
            return False
        if self._opened_at is None and self._in_a_row >= self.failures:
            self._opened_at = self._clock()
            if self.on_change is not None:
                self.on_change(True)
            return True
        return False
