"""The pipeline runner's per-job CPU time (``tradeflow.pipeline.process_cpu_s``), which
bench/pipeline.py divides by the ticks fed."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tradeflow.pipeline import process_cpu_s


def test_a_busy_process_has_used_about_the_cpu_it_spun_for() -> None:
    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n" \
           "import sys; sys.stdout.write('done\\n'); sys.stdout.flush(); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE)  # noqa: S603
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"done\n"
        used = process_cpu_s(proc.pid)
        assert used is not None
        assert 0.25 <= used <= 5.0  # the 0.3 s spun, start-up included, in clock ticks
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_is_gone_has_no_figure() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])  # noqa: S603
    proc.wait()
    time.sleep(0.05)
    assert process_cpu_s(proc.pid) is None
    assert process_cpu_s(os.getpid()) is not None
