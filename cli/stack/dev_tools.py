"""Programs the checks need besides the stack: ``promtool`` (Debian's ``prometheus`` package)
checks and tests the Prometheus rules in ``docs/prometheus/``.

``make test`` runs ``python -m cli.stack.dev_tools`` before the unit tests; like the stack's own
programs (:func:`cli.stack.installer.ensure`), a missing one is installed with apt-get when we are
root on Debian, and named with its package otherwise. The package's server is never started
here (and Debian's ``policy-rc.d`` keeps apt from starting it on container images).
"""

from __future__ import annotations

import sys

from cli.stack import installer
from cli.stack.errors import StackError
from cli.stack.paths import StackPaths
from schemas.settings import get_settings

DEV_TOOLS = (installer.command("promtool", "prometheus"),)


def main() -> int:
    paths = StackPaths(get_settings().stack.home)
    try:
        installer.ensure(DEV_TOOLS, paths.logs_dir / "apt.log", print)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
