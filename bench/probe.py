"""``python -m bench.probe``: the unchanged ``telemetry worker``, run in a process that also
times its garbage collector (``python -m bench --profile-worker``).

The worker code is not modified: this module adds one ``gc.callbacks`` entry, then calls
``telemetry.cli.main(["worker"])``, exactly what ``python -m telemetry worker`` does. The
callback adds up the wall time of every collection per generation (a collection holds the GIL,
so this is time no Python code of the worker runs). Every second, and at exit, the figures and
the native ids of the Python threads are written as JSON to ``BENCH_PROBE_OUT``.

Stack sampling is done from outside by ``py-spy`` (see ``bench.spy``): an in-process sampler
needs the GIL to look, so it sees threads mostly at the moments they release it (``select``,
socket calls) and misplaces the busy time.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
import time
from typing import Any

import orjson


class GcTimer:
    def __init__(self, out: str) -> None:
        self.out = out
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self.collected = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            g = info.get("generation", 0)
            self.seconds[g] += time.perf_counter() - self._started
            self.collections[g] += 1
            self.collected += info.get("collected", 0)

    def dump(self) -> None:
        data = {
            "written": time.time(),
            "gc_seconds": [round(x, 4) for x in self.seconds],
            "gc_collections": list(self.collections),
            "gc_collected": self.collected,
            "gc_thresholds": list(gc.get_threshold()),
            "python_threads": {str(t.native_id): t.name for t in threading.enumerate() if t.native_id is not None},
        }
        tmp = self.out + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(data))
        os.replace(tmp, self.out)

    def run(self) -> None:
        while True:
            time.sleep(1.0)
            self.dump()


def main() -> int:
    timer = GcTimer(os.environ.get("BENCH_PROBE_OUT", "probe.json"))
    gc.callbacks.append(timer)
    threading.Thread(target=timer.run, name="bench-probe", daemon=True).start()
    atexit.register(timer.dump)
    from telemetry.cli import main as telemetry_main

    sys.argv = ["telemetry", "worker"]
    return telemetry_main(["worker"])


if __name__ == "__main__":
    raise SystemExit(main())
