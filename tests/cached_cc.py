#!/usr/bin/env python3
"""The tests' C compiler: the real one, each build's output kept by what was built (flags and
the sources' text), so a kernel compiles once per test session and not once for every fresh
QWEN3TUI_HOME (a subprocess test's kernel cache starts empty). conftest.py sets it as CC."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path


def main(args: list[str]) -> int:
    real = os.environ["QWEN3TUI_TEST_REAL_CC"]
    if "-o" not in args:  # --version and the like
        return subprocess.run([real, *args]).returncode
    out = Path(args[args.index("-o") + 1])
    sources = [Path(a) for a in args if a.endswith(".c")]
    key = hashlib.sha256()
    for a in args:
        if a != str(out) and not a.endswith(".c"):
            key.update(a.encode() + b"\0")
    for source in sources:  # which source, then it and the files beside it, by content
        key.update(source.name.encode() + b"\0")
        for f in sorted(source.parent.glob("*.[ch]")):
            key.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    kept = Path(os.environ["QWEN3TUI_TEST_CC_CACHE"]) / f"{key.hexdigest()}.so"
    if not kept.exists():
        done = subprocess.run([real, *args])
        if done.returncode != 0:
            return done.returncode
        partial = kept.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(out, partial)
        os.replace(partial, kept)  # atomic: concurrent tests see one complete file
        return 0
    shutil.copyfile(kept, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
