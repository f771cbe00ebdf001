"""Unprivileged OS users for servers that must not (or should not) run as root."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from cli.stack import process
from cli.stack.errors import StackError
from cli.stack.process import RunAs


def is_root() -> bool:
    return os.geteuid() == 0


def lookup(name: str) -> RunAs | None:
    """The OS user ``name``, or None if there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def ensure_system_user(name: str) -> RunAs:
    """The OS user ``name``, created as a system user without home or login shell if missing."""
    user = lookup(name)
    if user is not None:
        return user
    argv = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
    result = process.run(argv)
    user = lookup(name)
    if user is None:
        raise StackError(f"could not create OS user {name!r}: {result.stdout.strip()}")
    return user


def blocking_dir(path: Path, uid: int, gids: set[int]) -> Path | None:
    """The first folder on the way to ``path`` that ``uid`` may not enter (None: all fine).

    Checks the search (x) bit for the owner, group or others class that applies to the user.
    """
    for folder in [*reversed(path.parents), path]:
        try:
            info = folder.stat()
        except FileNotFoundError:
            return None  # we create the rest ourselves, owned by the right user
        if info.st_uid == uid:
            bit = stat.S_IXUSR
        elif info.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return folder
    return None


def groups_of(user: RunAs) -> set[int]:
    """Primary and supplementary group ids of ``user``."""
    return set(os.getgrouplist(user.name, user.gid))


def chown_tree(root: Path, user: RunAs) -> None:
    """Give ``root`` and everything under it to ``user`` (skipped when it already owns root)."""
    if root.stat().st_uid == user.uid:
        return
    os.chown(root, user.uid, user.gid)
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.chown(Path(folder) / name, user.uid, user.gid, follow_symlinks=False)
