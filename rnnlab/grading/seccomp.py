"""The seccomp filter of a student kernel, built with libseccomp and handed to bwrap as BPF.

bubblewrap loads a filter from ``--seccomp FD`` just before it runs the kernel (with
``no_new_privs`` set). The filter allows every system call but these, which fail with
``EPERM`` (``clone3``: ``ENOSYS``, so that the C library falls back to ``clone``):

* **mounts and namespaces** — ``mount``, ``umount2``, ``pivot_root``, ``chroot``, the new mount
  API (``open_tree``, ``move_mount``, ``fsopen``, …), ``unshare``, ``setns``, and ``clone`` with
  any ``CLONE_NEW*`` flag: the sandbox's read-only binds stay read-only;
* **new processes** — ``fork``, ``vfork`` and ``clone`` without ``CLONE_THREAD``: student code
  runs in one process (threads are allowed), so its memory, CPU and lifetime are the kernel's
  (``bpf_program(processes=True)`` leaves these out: the filter of the kernel template, whose
  forked kernels each :func:`install` the full filter before they run anything of a student);
* **objects that outlive a process** — System V shared memory, semaphores and message queues
  (``shmget``, ``semget``, ``msgget``) and POSIX message queues (``mq_open``): nothing a kernel
  leaves behind can reach the next kernel of its sandbox;
* **other processes and the kernel** — ``ptrace``, ``process_vm_readv/writev``, ``kcmp``,
  ``keyctl``/``add_key``/``request_key``, ``bpf``, ``perf_event_open``, ``userfaultfd``,
  ``io_uring_*``, module and ``kexec`` loading, ``reboot``, ``swapon/off``, ``acct``,
  ``quotactl``, ``syslog``, clock setting, ``sethostname``, ``iopl``/``ioperm``,
  ``open_by_handle_at``, ``personality``;
* **CPU placement** — ``sched_setaffinity``: a kernel pinned to its CPUs stays there;
* ``ioctl(TIOCSTI)`` and ``ioctl(TIOCLINUX)`` (typing into a terminal).

System calls of another architecture (32-bit ``int 0x80``, x32) kill the process
(libseccomp's default for a foreign ABI). libseccomp (Debian/Ubuntu package ``libseccomp2``) is
called through ``ctypes``; :func:`bpf_program` is ``None`` where it is missing.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os

__all__ = ["DENIED", "PROCESSES", "bpf_program", "memfd", "install"]

DENIED = (
    "mount", "umount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "unshare", "setns",
    "shmget", "semget", "msgget", "mq_open",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "keyctl", "add_key",
    "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
    "syslog", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname",
    "setdomainname", "iopl", "ioperm", "lookup_dcookie", "name_to_handle_at",
    "open_by_handle_at", "personality", "uselib", "vhangup", "nfsservctl",
    "sched_setaffinity",
)
"""System calls refused outright (``EPERM``)."""

PROCESSES = ("fork", "vfork")
"""Refused too (with ``clone`` without ``CLONE_THREAD``) unless ``processes=True``."""

_ALLOW = 0x7FFF0000
_MASKED_EQ = 7
_CLONE_THREAD = 0x00010000
_CLONE_NEW = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
              0x40000000, 0x00000080)      # NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
#                                            NEWNET, NEWTIME
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C


def _errno(number: int) -> int:
    return 0x00050000 | (number & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    """``struct scmp_arg_cmp``: argument ``arg`` compared with ``op`` to ``a`` (mask) / ``b``."""

    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64),
                ("b", ctypes.c_uint64)]


def _library():
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        return None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.restype = ctypes.c_int
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.restype = None
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def _rule(lib, ctx, action: int, name: str, *compare: tuple[int, int, int]) -> None:
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number < 0:               # not a system call of this architecture
        return
    array = (_ArgCmp * max(1, len(compare)))(*(_ArgCmp(arg, _MASKED_EQ, mask, value)
                                               for arg, mask, value in compare))
    if lib.seccomp_rule_add_array(ctx, action, number, len(compare), array) < 0:
        raise OSError(f"seccomp: could not add the rule for {name}")


@functools.lru_cache(maxsize=2)
def bpf_program(processes: bool = False) -> bytes | None:
    """The filter as a BPF program for ``bwrap --seccomp`` (``None`` without libseccomp).

    ``processes=True``: new processes allowed (the kernel template's filter).
    """
    lib = _library()
    if lib is None:
        return None
    ctx = lib.seccomp_init(_ALLOW)
    if not ctx:
        return None
    deny = _errno(errno.EPERM)
    try:
        for name in DENIED if processes else DENIED + PROCESSES:
            _rule(lib, ctx, deny, name)
        _rule(lib, ctx, _errno(errno.ENOSYS), "clone3")
        if not processes:
            _rule(lib, ctx, deny, "clone", (0, _CLONE_THREAD, 0))      # a process, not a thread
        for flag in _CLONE_NEW:
            _rule(lib, ctx, deny, "clone", (0, flag, flag))
        for request in (_TIOCSTI, _TIOCLINUX):
            _rule(lib, ctx, deny, "ioctl", (1, 0xFFFFFFFF, request))
        fd = os.memfd_create("rnnlab-seccomp-export")
        try:
            if lib.seccomp_export_bpf(ctx, fd) < 0:
                return None
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)


def memfd(program: bytes) -> int:
    """A file descriptor holding ``program``, positioned at its start, to pass to bwrap.

    The caller passes it with ``pass_fds`` and closes it once bwrap has started.
    """
    fd = os.memfd_create("rnnlab-seccomp")
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class _SockFprog(ctypes.Structure):
    """``struct sock_fprog``: a BPF program's length in instructions and its address."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2


def install(program: bytes) -> None:
    """Load ``program`` (from :func:`bpf_program`) into this process, for good.

    Sets ``no_new_privs`` first (needed without ``CAP_SYS_ADMIN``); the filter holds for the
    process and everything it starts, on top of any filter it already has.

    Raises:
        OSError: the kernel refused the filter.
    """
    if len(program) % 8:
        raise ValueError(f"program: expected whole 8-byte BPF instructions, got {len(program)} "
                         "bytes")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                           ctypes.c_ulong]
    buffer = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    for option, value, pointer in ((_PR_SET_NO_NEW_PRIVS, 1, None),
                                   (_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER,
                                    ctypes.addressof(prog))):
        if libc.prctl(option, value, pointer, 0, 0) != 0:
            number = ctypes.get_errno()
            raise OSError(number, f"seccomp: prctl({option}) failed: {os.strerror(number)}")
