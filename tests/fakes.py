"""The stand-ins unit tests hand to the code under test, in one place (Acme keeps its
test fakes in one module): a logger that records, and a clock that moves only when told.

    log, clock = RecordingLog(), FakeClock()
    part = Part(log=log, clock=clock)       # clock() or clock.monotonic() reads the time
    clock.sleep(3.0)                        # time passes only here
    part.tick()
    assert [e["seq"] for e in log.named("ack_missing")] == [1]
"""

from __future__ import annotations

from collections.abc import Callable


class RecordingLog:
    """Stands in for the structlog logger: every event at info and up with its fields,
    in order (debug is dropped, as the default level does). Safe to read while another
    thread logs (appends are atomic)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict]] = []

    def _record(self, event: str, **fields) -> None:
        self.records.append((event, fields))

    info = warning = error = exception = _record

    def debug(self, event: str, **fields) -> None:
        pass

    def events(self, name: str | None = None) -> list[dict]:
        """Every event (or every ``name`` event) as a dict with its name under "event"."""
        return [{"event": e, **f} for e, f in list(self.records) if name in (None, e)]

    def named(self, name: str) -> list[dict]:
        """The fields of every ``name`` event."""
        return [f for e, f in list(self.records) if e == name]

    def names(self) -> list[str]:
        return [e for e, _ in list(self.records)]

    def index(self, name: str, where: Callable[[dict], bool] = lambda e: True) -> int:
        """Position of the first ``name`` event for which ``where`` holds (or -1)."""
        for i, e in enumerate(self.events()):
            if e["event"] == name and where(e):
                return i
        return -1


class FakeClock:
    """A monotonic clock that moves only by ``sleep`` (or by setting ``t``). Callable,
    for code that takes a clock function, and with ``monotonic``/``sleep``, for code
    whose ``time`` module a test replaces with it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
