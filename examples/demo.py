"""`make demo`: start a worker, send tasks, read their results, stop the worker.

Runs on the embedded default (a SQLite file, celeriac.sqlite, in this folder): nothing else
needs to be running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.chdir(HERE)

from tasks import add  # noqa: E402

from celeriac.result import AsyncResult  # noqa: E402


def main() -> int:
    print("$ celeriac -A tasks worker --loglevel=INFO -c 2")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celeriac", "-A", "tasks", "worker", "--loglevel=INFO", "-c", "2"],
        cwd=HERE,
    )
    try:
        time.sleep(1.0)
        print("\n>>> result = add.delay(4, 4)")
        result = add.delay(4, 4)
        print(f">>> result.id\n{result.id!r}")
        print(f">>> result.get(timeout=10)\n{result.get(timeout=10)!r}")
        same = AsyncResult(result.id, app=add.app)
        print(f">>> AsyncResult(result.id).state, .result\n{same.state!r}, {same.result!r}")
        batch = [add.delay(i, i) for i in range(10)]
        print(f">>> [r.get() for r in ten more]\n{[r.get(timeout=10) for r in batch]!r}")
        later = add.apply_async((1, 2), countdown=1)
        print(f">>> add.apply_async((1, 2), countdown=1).get()\n{later.get(timeout=10)!r}")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    print("\nDemo finished: the worker ran every task and stopped warmly.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
