"""The fork server that hands out warm training workers (vmonf.studio.pool)."""

import os
import subprocess
import time

import pytest

from vmonf.studio import pool

pytestmark = pytest.mark.skipif(not pool.SUPPORTED, reason="the fork server needs Linux")


def cpu_ticks(pid: int) -> int:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@pytest.fixture(scope="module")
def server():
    srv = pool.ForkServer()
    yield srv
    srv.close()


def test_forked_workers_exit_codes_and_kill(server):
    w = server.spawn()
    assert w.poll() is None and w.pid != server.proc.pid
    end = time.monotonic() + 5  # it names itself right after the fork
    while open(f"/proc/{w.pid}/comm").read().strip() != "vmonf-worker" and time.monotonic() < end:
        time.sleep(0.02)
    assert open(f"/proc/{w.pid}/comm").read().strip() == "vmonf-worker"
    w.stdin.write(b"not json\n")  # the worker refuses a bad spec with an error event and exit code 2
    w.stdin.flush()
    assert w.wait(30) == 2 and w.stdout.read(1) == b"E"
    k = server.spawn()
    k.kill()
    assert k.wait(10) == -9
    with pytest.raises(subprocess.TimeoutExpired):
        server.spawn().wait(0.2)  # waits for its spec, so it is still running


def test_the_idle_fork_server_uses_no_cpu_and_forks_fast(server):
    server.spawn().kill()  # ready: its imports are done
    before = cpu_ticks(server.proc.pid)
    time.sleep(2)
    assert cpu_ticks(server.proc.pid) - before <= 1  # blocked on its socket, not polling
    t0 = time.perf_counter()
    w = server.spawn()
    assert time.perf_counter() - t0 < 2.0  # no interpreter or torch start-up (a plain worker: seconds)
    w.kill()


def test_plain_processes_when_the_fork_server_is_off(monkeypatch):
    monkeypatch.setenv("VMONF_FORK_SERVER", "0")
    w = pool.spawn()
    try:
        assert isinstance(w, subprocess.Popen)
    finally:
        w.kill()
        w.wait(10)


def test_workers_outlive_a_closed_fork_server():
    srv = pool.ForkServer()
    w = srv.spawn()
    srv.close()
    assert srv.proc.poll() is not None and os.path.exists(f"/proc/{w.pid}")
    w.stdin.close()  # a worker whose server is gone reads end of input: it exits by itself
    assert w.wait(30) is not None


def test_a_late_answer_never_names_the_next_worker():
    """A request that timed out while the fork server was still importing is answered later; the next
    worker must get its own pid, not the late child's (which exits at once: its pipes were closed here)."""
    srv = pool.ForkServer()
    try:
        with pytest.raises(OSError, match="did not answer"):
            srv.spawn(timeout=0.01)  # the fork server is still importing torch
        w = srv.spawn()
        time.sleep(1.5)  # the late child has read the end of its input and exited by now
        assert w.poll() is None and os.path.exists(f"/proc/{w.pid}")  # this worker waits for its spec
        w.stdin.write(b"not json\n")  # this pid's process answers on these pipes, then exits with code 2
        w.stdin.flush()
        assert w.stdout.read(1) == b"E"
        assert w.wait(30) == 2
    finally:
        srv.close()


def test_workers_share_the_servers_folder_of_starts_and_the_warm_up_keeps_none(monkeypatch, tmp_path):
    """Workers get the server's start memo folder (vmonf.startmemo) in their environment; the fork server's own
    warm-up run is no user's run, so it keeps nothing there. ``VMONF_START_MEMO=0`` switches the memo off."""
    monkeypatch.setenv("VMONF_START_MEMO", str(tmp_path))
    assert pool.worker_env()["VMONF_START_MEMO"] == str(tmp_path)
    srv = pool.ForkServer()
    try:
        srv.spawn().kill()  # answered once the warm-up is done
    finally:
        srv.close()
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv("VMONF_START_MEMO", "0")
    assert pool.start_memo_folder() is None
    monkeypatch.delenv("VMONF_START_MEMO")
    folder = pool.start_memo_folder()
    assert folder and os.path.isdir(folder) and pool.start_memo_folder() == folder  # one per server process
