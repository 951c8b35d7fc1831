"""Warm training workers: a fork server that has imported torch once and forks a worker per run.

Starting ``python -m vmonf.studio.worker`` from scratch costs an interpreter start, the torch import and the
scikit-learn import: about 2-4 s of CPU before the first step, paid again by every run, and by all four
runs when four people press Start together. The fork server pays it once per server, then waits,
blocked on a socket (no CPU while idle). Each run is a ``fork()`` of it (tens of milliseconds), whose
memory pages stay shared with the server until written.

Protocol, on a Unix ``SOCK_SEQPACKET`` pair (one message per packet):
- server -> fork server: ``b"S <n>"`` (request number ``n``) with three file descriptors attached: the child's
  stdin (read end), stdout and stderr (write ends). The child runs :func:`vmonf.studio.worker.main` on them.
- fork server -> server: ``b"P <pid> <n>"`` (the child forked for request ``n``), ``b"X <pid> <code>"`` (it
  exited; code as :class:`subprocess.Popen` gives it, negative for a signal).

A request that timed out (a fork server still importing on a loaded machine) is answered later; its number
tells that late reply from the next request's, whose worker would otherwise get the wrong pid. The late
child's pipes were closed on this side, so it reads the end of its input and exits.

Fork safety: the fork server never starts a thread (torch's and OpenMP's pools are created lazily, in
each child, by the first parallel operation) and only forks from its single thread, as torch's own
DataLoader workers do. Where this cannot work (no ``fork`` or no descriptor passing, i.e. not Linux)
:func:`spawn` starts plain processes.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (vmonf/studio/pool.py)
WORKER = [sys.executable, "-m", "vmonf.studio.worker"]
#: Seconds a run waits for the fork server to finish its imports before starting a plain process instead.
READY_TIMEOUT = 30.0
SUPPORTED = sys.platform.startswith("linux") and hasattr(socket, "send_fds") and hasattr(os, "fork")


def worker_env(threads: int = 1) -> dict[str, str]:
    """The environment a worker runs in: this repository on the path, ``threads`` OpenMP threads, and this
    server's folder of chosen starts (:func:`start_memo_folder`)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path}
    memo = start_memo_folder()
    if memo is not None:
        env["VMONF_START_MEMO"] = memo
    return env


_memo: str | None = None
_memo_lock = threading.Lock()


def start_memo_folder() -> str | None:
    """A folder, made once per server and removed when it exits, where its workers keep the starts they chose
    (:mod:`vmonf.startmemo`): a run started again, or by another session, replays its start instead of choosing
    it again. ``VMONF_START_MEMO=0`` switches this off; a folder given there is used as it is."""
    global _memo
    given = os.environ.get("VMONF_START_MEMO")
    if given is not None:
        return given if given not in ("", "0") else None
    with _memo_lock:
        if _memo is None:
            import atexit
            import shutil
            import tempfile

            with contextlib.suppress(OSError):
                _memo = tempfile.mkdtemp(prefix="vmonf-starts-")
                atexit.register(shutil.rmtree, _memo, True)
        return _memo


class ForkedWorker:
    """A worker forked by the fork server: the part of :class:`subprocess.Popen` that ``TrainingJob`` uses.

    It is not this process's child, so its exit status comes from the fork server's ``X`` message.
    """

    def __init__(self, pid: int, stdin: int, stdout: int, stderr: int):
        self.pid = pid
        self.stdin, self.stdout, self.stderr = os.fdopen(stdin, "wb"), os.fdopen(stdout, "rb"), os.fdopen(stderr, "rb")
        self.returncode: int | None = None
        self._exited = threading.Event()

    def _set_exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired("vmonf.studio.worker", timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # not yet reaped, so the pid is still this worker's
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkServer:
    """The server side of one fork server process (see the module docstring)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        self.proc = subprocess.Popen(
            [*WORKER, "--fork-server", str(theirs.fileno())], pass_fds=[theirs.fileno()], env=worker_env(1),
            cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self._request = threading.Lock()  # one request at a time: replies come back in order
        self._table = threading.Lock()  # guards _workers and _early_exits (the reader thread writes them)
        self._replies: queue.Queue[tuple[int, int] | None] = queue.Queue()  # (pid, request number)
        self._requests = 0
        self._workers: dict[int, ForkedWorker] = {}
        self._early_exits: dict[int, int] = {}  # exits that arrived before their worker was registered
        self.forked = 0
        threading.Thread(target=self._read, name="vmonf-fork-server", daemon=True).start()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def spawn(self, timeout: float = READY_TIMEOUT) -> ForkedWorker:
        """Fork a worker. Raises ``OSError`` when the fork server is gone or did not answer in ``timeout`` s."""
        pipes = [os.pipe() for _ in range(3)]  # (read, write) for the child's stdin, stdout, stderr
        child = [pipes[0][0], pipes[1][1], pipes[2][1]]
        mine = [pipes[0][1], pipes[1][0], pipes[2][0]]
        try:
            with self._request:
                self._requests += 1
                number, end = self._requests, time.monotonic() + timeout
                socket.send_fds(self._sock, [f"S {number}".encode()], child)
                while (reply := self._replies.get(timeout=max(0.0, end - time.monotonic()))) is not None:
                    if reply[1] == number:
                        break  # older numbers: requests that timed out, answered late
                pid = None if reply is None else reply[0]
        except (OSError, queue.Empty) as exc:
            for fd in mine:  # (the child's ends are closed below, once: a second close could hit a reused number)
                os.close(fd)
            raise OSError(f"the warm worker process did not answer ({exc or 'timed out'})") from None
        finally:
            for fd in child:  # the child has its copies; ours would keep its pipes open after it exits
                with contextlib.suppress(OSError):
                    os.close(fd)
        if pid is None:
            for fd in mine:
                os.close(fd)
            raise OSError("the warm worker process has exited")
        worker = ForkedWorker(pid, *mine)
        with self._table:
            self._workers[pid] = worker
            if pid in self._early_exits:
                worker._set_exit(self._early_exits.pop(pid))
        self.forked += 1
        return worker

    def _read(self) -> None:
        while True:
            try:
                msg = self._sock.recv(64)
            except OSError:
                msg = b""
            if not msg:
                break
            kind, *rest = msg.decode().split()
            if kind == "P":
                self._replies.put((int(rest[0]), int(rest[1])))
            elif kind == "X":
                pid, code = int(rest[0]), int(rest[1])
                with self._table:
                    worker = self._workers.pop(pid, None)
                    if worker is None:
                        self._early_exits[pid] = code
                if worker is not None:
                    worker._set_exit(code)
        self._replies.put(None)  # a spawn waiting for a reply gets none
        with self._table:
            orphans, self._workers = list(self._workers.values()), {}
        for worker in orphans:  # nobody reports their exit any more: watch for it
            threading.Thread(target=_watch_orphan, args=(worker,), daemon=True).start()

    def close(self) -> None:
        """End the fork server (its workers carry on until told to stop)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)  # reaped, so callers see it gone


def _watch_orphan(worker: ForkedWorker) -> None:
    """Once the fork server is gone, a worker's exit is seen as its pid disappearing (status unknown: -1)."""
    while True:
        try:
            os.kill(worker.pid, 0)
        except ProcessLookupError:
            worker._set_exit(-1)
            return
        except PermissionError:
            pass
        time.sleep(0.5)


_server: ForkServer | None = None
_server_lock = threading.Lock()


def enabled() -> bool:
    """Fork server on: supported here, and not switched off with ``VMONF_FORK_SERVER=0``."""
    return SUPPORTED and os.environ.get("VMONF_FORK_SERVER", "1") != "0"


def warm() -> ForkServer | None:
    """Start this process's fork server if it is not running (returns at once; imports run in the background)."""
    global _server
    if not enabled():
        return None
    with _server_lock:
        if _server is None or not _server.alive:
            _server = ForkServer()
        return _server


def fork_server() -> ForkServer | None:
    """This process's fork server, if one was started."""
    return _server


def spawn(threads: int = 1) -> subprocess.Popen | ForkedWorker:
    """A worker process ready for its spec on stdin: forked from the warm fork server where possible,
    otherwise a fresh ``python -m vmonf.studio.worker``. Raises ``OSError`` if neither can be started."""
    server = warm()
    if server is not None:
        try:
            return server.spawn()
        except OSError:
            pass  # fall through to a plain process: slower to start, same behaviour
    return subprocess.Popen(WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=worker_env(threads), cwd=str(ROOT), start_new_session=True)


def shutdown() -> None:
    global _server
    with _server_lock:
        if _server is not None:
            _server.close()
            _server = None


# -- the fork server process ---------------------------------------------------------------------------
def set_process_name(name: str) -> None:
    """Name this process in ``ps``/``top`` (Linux ``comm``, 15 characters): tells the idle fork server and the
    training workers apart, as they share one command line."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(name[:15])


def serve(fd: int) -> int:
    """The fork server's main loop (``python -m vmonf.studio.worker --fork-server FD``)."""
    import warnings

    sock = socket.socket(fileno=fd)
    from vmonf.studio.worker import warm_up

    warm_up()
    # Python >= 3.12 warns about fork() in a process with threads. The only other thread here is the
    # background purger of the jemalloc that pyarrow brings (imported with scikit-learn), which jemalloc's own
    # fork handlers take care of; this process itself starts none.
    warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning)
    set_process_name("vmonf-forksrv")
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD wakes the select below
    while True:
        ready, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 512)
        _reap(sock)
        if sock not in ready:
            continue
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 16, 3)
        except OSError:
            msg, fds = b"", []
        if not msg:  # the server is gone: so is the reason to exist
            return 0
        if len(fds) != 3:
            for f in fds:
                os.close(f)
            continue
        pid = os.fork()
        if pid == 0:
            _child(fds, [sock.fileno(), wake_r, wake_w])
        for f in fds:
            os.close(f)
        sock.send(f"P {pid} {msg.split()[-1].decode()}".encode())


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(OSError):
            sock.send(f"X {pid} {code}".encode())


def _child(fds: list[int], close: list[int]) -> None:
    """In the forked child: become a worker on the given pipes. Never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()  # a session (and Linux autogroup) of its own, as a plain worker has: see lower_priority
        for target, f in enumerate(fds):
            os.dup2(f, target)
        for f in fds + close:
            os.close(f)
        set_process_name("vmonf-worker")
        from vmonf.studio.worker import main

        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
