"""Fuzz every decoder with >= 100,000 hostile inputs and count what escapes (issue 17).

Targets (tests/fuzzing.py, shared with tests/unit/test_fuzz.py):

- ``decode_bytes``: ``schemas.decode`` of a random stream model on random bytes;
- ``decode_json``: ``schemas.decode`` of a valid record of every model with fields made
  hostile (1e30, 30 decimals, NaN, huge ints, control characters, lone surrogates,
  out-of-range times, deep nesting, oversize payloads...); an accepted record must
  encode and decode back to itself;
- ``fix_frame``: the FIX framer and parser on random bytes and mutated or corrupted
  messages;
- ``fix_session``: a logged-on FIX session and its application on mutated, correctly
  framed venue messages (a disconnect starts a new session).

A crash is any exception other than the documented refusal (``DecodeError``; a bad
frame or ``ValueError`` from the FIX parser; the session never raises). A seeded
``random.Random`` drives everything, so a run is reproducible; a crash prints its
target, case number and exception.

Usage: ``python bench/fuzz.py [--cases N] [--seed S]``. The last line printed is one
JSON object: ``cases``, ``crashes``, and per target its cases, crashes and outcomes.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import _root  # noqa: F401 - first: puts the repository root on sys.path

from tests import fuzzing

SHARES = {"decode_bytes": 0.25, "decode_json": 0.35, "fix_frame": 0.2, "fix_session": 0.2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000, help="total cases (default 100000)")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # every refusal is logged; thousands of lines otherwise

    rng = random.Random(args.seed)
    report: dict[str, dict[str, object]] = {}
    total_cases = total_crashes = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rig = fuzzing.FixRig(Path(tmp))
        targets = {
            "decode_bytes": fuzzing.decode_bytes,
            "decode_json": fuzzing.decode_json,
            "fix_frame": fuzzing.fix_frame,
            "fix_session": rig.case,
        }
        for name, target in targets.items():
            n = round(args.cases * SHARES[name])
            outcomes: Counter[str] = Counter()
            crashes = 0
            t0 = time.perf_counter()
            for i in range(n):
                try:
                    outcomes[target(rng)] += 1
                except Exception as exc:
                    crashes += 1
                    if crashes <= 5:
                        print(f"CRASH {name} case {i}: {exc!r}", file=sys.stderr)
                        traceback.print_exc(limit=3)
                    if name == "fix_session":  # start again from a fresh session
                        rig.close()
                        rig.open()
            seconds = time.perf_counter() - t0
            report[name] = {"cases": n, "crashes": crashes, "outcomes": dict(outcomes),
                            "cases_per_s": round(n / seconds) if seconds else None}
            print(f"{name}: {n} cases, {crashes} crashes, {dict(outcomes)}, {seconds:.1f} s")
            total_cases += n
            total_crashes += crashes
        rig.close()
    print(json.dumps({"cases": total_cases, "crashes": total_crashes, "seed": args.seed,
                      "seconds": round(time.perf_counter() - started, 1), "targets": report}))


if __name__ == "__main__":
    main()
