"""Go ``fs.FileMode`` values, as plakar puts them on the wire.

plakar's ``mode`` field is a Go ``fs.FileMode``: permissions in the low nine
bits and Go's own type bits at the top. POSIX ``st_mode`` type bits (such as
``stat.S_IFDIR``) mean something else entirely, so every conversion goes
through this module.
"""

from __future__ import annotations

import stat

DIR = 1 << 31
APPEND = 1 << 30
EXCLUSIVE = 1 << 29
TEMPORARY = 1 << 28
SYMLINK = 1 << 27
DEVICE = 1 << 26
NAMED_PIPE = 1 << 25
SOCKET = 1 << 24
SETUID = 1 << 23
SETGID = 1 << 22
CHAR_DEVICE = 1 << 21
STICKY = 1 << 20
IRREGULAR = 1 << 19

PERM = 0o777
TYPE = DIR | SYMLINK | NAMED_PIPE | SOCKET | DEVICE | CHAR_DEVICE | IRREGULAR


def is_dir(mode: int) -> bool:
    return bool(mode & DIR)


def is_symlink(mode: int) -> bool:
    return bool(mode & SYMLINK)


def is_regular(mode: int) -> bool:
    return not mode & TYPE


def perm(mode: int) -> int:
    return mode & PERM


def from_posix(st_mode: int) -> int:
    """Convert a POSIX ``st_mode`` (as ``os.stat`` gives it) to a Go FileMode."""
    mode = st_mode & PERM
    fmt = stat.S_IFMT(st_mode)
    if fmt == stat.S_IFDIR:
        mode |= DIR
    elif fmt == stat.S_IFLNK:
        mode |= SYMLINK
    elif fmt == stat.S_IFBLK:
        mode |= DEVICE
    elif fmt == stat.S_IFCHR:
        mode |= DEVICE | CHAR_DEVICE
    elif fmt == stat.S_IFIFO:
        mode |= NAMED_PIPE
    elif fmt == stat.S_IFSOCK:
        mode |= SOCKET
    elif fmt != stat.S_IFREG:
        mode |= IRREGULAR
    if st_mode & stat.S_ISUID:
        mode |= SETUID
    if st_mode & stat.S_ISGID:
        mode |= SETGID
    if st_mode & stat.S_ISVTX:
        mode |= STICKY
    return mode


def to_posix(mode: int) -> int:
    """Convert a Go FileMode to a POSIX ``st_mode``."""
    st = mode & PERM
    if mode & DIR:
        st |= stat.S_IFDIR
    elif mode & SYMLINK:
        st |= stat.S_IFLNK
    elif mode & DEVICE:
        st |= stat.S_IFCHR if mode & CHAR_DEVICE else stat.S_IFBLK
    elif mode & NAMED_PIPE:
        st |= stat.S_IFIFO
    elif mode & SOCKET:
        st |= stat.S_IFSOCK
    else:
        st |= stat.S_IFREG
    if mode & SETUID:
        st |= stat.S_ISUID
    if mode & SETGID:
        st |= stat.S_ISGID
    if mode & STICKY:
        st |= stat.S_ISVTX
    return st
