"""`python -m train --config C --workers N` (and `python -m train.site ... --workers N`, a site adaptation): N worker
processes on this machine's loopback, one TF_CONFIG each, to run and test multi-worker training without a cluster. On real machines each one sets its own TF_CONFIG and runs
the same command without `--workers` (README "Data and training").

Every worker runs the same command line with `TF_CONFIG = {"cluster": {"worker": [N loopback addresses]},
"task": {"type": "worker", "index": i}}`; worker 0 is the chief. The launcher holds the single-run lock for all of
them (the chief inherits it), prefixes their output with `[worker i]`, records them in the run folder's
`workers.json` (the live status and the Training page read it) and waits for all. When one ends badly (killed,
failed) it stops the others, whose collectives would fail or wait, and exits 1: rerunning the same command starts
the cluster again, and it resumes from the run's last checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from cxr_core.fileio import write_json_atomic
from cxr_core.settings import PROJECT_ROOT
from train.run_folder import LOCK_FD_ENV, RunFolder, single_run_lock

MAX_WORKERS = 16


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on loopback (held open together while chosen, so never the same one twice)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker_tf_config(addresses: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})


def run_local_cluster(argv: list[str], workers: int, run_dir: Path, runs_dir: Path,
                      log: Callable[[str], None] = print, module: str = "train", out: Any = None) -> int:
    """Start `workers` processes of `python -m MODULE *argv` (a training run, or a site adaptation: train.site),
    wait for all; 0 when every one finished. Their output, prefixed, goes to `out` (default stdout)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    addresses = [f"localhost:{p}" for p in free_ports(workers)]
    procs: list[subprocess.Popen] = []
    records: list[dict[str, Any]] = []
    relays: list[threading.Thread] = []
    with single_run_lock(runs_dir) as lock:
        try:
            for i, address in enumerate(addresses):
                env = {**os.environ, "TF_CONFIG": worker_tf_config(addresses, i), "PYTHONUNBUFFERED": "1"}
                env.pop(LOCK_FD_ENV, None)
                pass_fds: tuple[int, ...] = ()
                if i == 0:  # the chief writes the run folder: it holds the lock (shared with this launcher)
                    env[LOCK_FD_ENV], pass_fds = str(lock.fh.fileno()), (lock.fh.fileno(),)
                proc = subprocess.Popen([sys.executable, "-m", module, *argv], cwd=PROJECT_ROOT, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        pass_fds=pass_fds)
                procs.append(proc)
                records.append({"task": f"worker:{i}", "role": "chief" if i == 0 else "worker", "pid": proc.pid,
                                "address": address, "state": "running"})
                relays.append(threading.Thread(target=_relay, args=(proc, f"[worker {i}] ", out or sys.stdout),
                                               daemon=True))
                relays[-1].start()
            _write(run_dir, records)
            log(f"Started {workers} workers on {', '.join(addresses)} (worker 0 is the chief).")
            failed = _wait(procs, records, run_dir)
        finally:
            _stop(procs, records, run_dir)
            for relay in relays:
                relay.join(timeout=5)
    if failed is not None:
        log(f"Worker {failed} {records[failed]['state']}; the others were stopped. Rerun the same command to resume "
            "from the last finished epoch.")
        return 1
    return 0


def _wait(procs: list[subprocess.Popen], records: list[dict[str, Any]], run_dir: Path) -> int | None:
    """Until every worker ended: None when all finished, else the index of the first that ended badly."""
    while True:
        for i, proc in enumerate(procs):
            rc = proc.poll()
            if rc is None or records[i]["state"] != "running":
                continue
            records[i]["state"] = "finished" if rc == 0 else (
                f"killed (signal {-rc})" if rc < 0 else f"failed (exit status {rc})")
            _write(run_dir, records)
            if rc != 0:
                return i
        if all(r["state"] != "running" for r in records):
            return None
        time.sleep(0.2)


def _stop(procs: list[subprocess.Popen], records: list[dict[str, Any]], run_dir: Path) -> None:
    """End the workers still running (SIGTERM, then SIGKILL after 10 s), by their own process ids."""
    running = [(i, p) for i, p in enumerate(procs) if p.poll() is None]
    for _, p in running:
        p.send_signal(signal.SIGTERM)
    deadline = time.time() + 10
    for i, p in running:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        records[i]["state"] = "stopped by the launcher"
    if running:
        _write(run_dir, records)


def _relay(proc: subprocess.Popen, prefix: str, out: Any) -> None:
    """The worker's output, each line prefixed; a progress bar's redraws (ended by a carriage return) too."""
    assert proc.stdout is not None
    pending = b""
    for chunk in iter(lambda: proc.stdout.read1(4096), b""):  # type: ignore[union-attr]
        pending += chunk
        *done, pending = re.split(rb"(?<=[\r\n])", pending)
        for piece in done:
            if piece.strip():
                out.write(prefix + piece.decode(errors="replace"))
        out.flush()
    if pending.strip():
        out.write(prefix + pending.decode(errors="replace") + "\n")
        out.flush()


def _write(run_dir: Path, records: list[dict[str, Any]]) -> None:
    write_json_atomic(RunFolder(run_dir).workers_file, {"launcher_pid": os.getpid(), "workers": records,
                                                     "updated": time.time()})
