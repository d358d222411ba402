"""Imported first by every bench script, run as ``python bench/<name>.py``.

Puts the repository root on ``sys.path`` (for ``bench.harness``, ``tests`` and the
project's packages) and takes ``bench/`` itself off it, where a script would shadow a
package of the same name (``bench/fluss.py`` and pyfluss's ``fluss``).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
