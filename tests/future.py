"""Run the unit tests again with the system clock 400 days ahead.

A test that builds its data from the wall clock but pins "now" (or the reverse) passes on the
day it is written and fails weeks later. Run under libfaketime (Debian's ``faketime``, installed
here when missing, like the stack's packages), such a test fails today instead. Only the
clocks move, all by the same offset.

    python -m tests.future [pytest args...]     (``make test`` runs it after the unit tests)
"""

from __future__ import annotations

import os
import shutil
import sys

from cli.stack import installer
from schemas.settings import get_settings

AHEAD = "+400d"


def main(argv: list[str]) -> None:
    log = get_settings().stack.home / "logs" / "apt.log"
    installer.ensure([installer.command("faketime", "faketime")], log, print)
    args = argv or ["tests/unit", "-q", "-p", "no:cacheprovider"]
    print(f"unit tests with the system clock {AHEAD} (faketime)", flush=True)
    faketime = shutil.which("faketime") or "faketime"
    argv = [faketime, "-f", AHEAD, sys.executable, "-m", "pytest", *args]
    os.execv(faketime, argv)  # noqa: S606 - becomes pytest; every argument is ours


if __name__ == "__main__":
    main(sys.argv[1:])
