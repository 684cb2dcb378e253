"""Run a command; print its peak resident set (KiB) on stderr.

`python -m benchmarks.scripts.peak CMD...`"""

from __future__ import annotations

import resource
import subprocess
import sys


def main() -> None:
    result = subprocess.run(sys.argv[1:])
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
