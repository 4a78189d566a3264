"""``describe-images ray --address``: a real two-node Ray cluster on this machine.

``ray start --head`` (1 CPU) and ``ray start --address`` (2 CPUs) make two nodes, each its
own raylet, as on two machines; both run with Ray's token authentication, the token in
``RAY_AUTH_TOKEN`` (made up for the run). The command runs as a user runs it, in a process
of its own that joins the cluster by its address; the emulator runs on a thread here.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_KEY
from imaging import jpeg

from describer.emulator import EmulatorSettings, GeminiEmulator

pytest.importorskip("ray")

BIN = Path(sys.executable).parent
#: What ``ray start --block`` prints once its node is up.
READY = "block forever"
START_S = 90.0


class Node:
    """One ``ray start ... --block`` process: up once it says so, ended by SIGTERM."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._process = subprocess.Popen(
            [str(BIN / "ray"), "start", *args, "--block"], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line)
            if READY in line:
                self._ready.set()
        self._ready.set()  # it ended: wait_up says so

    def wait_up(self) -> None:
        assert self._ready.wait(START_S), "".join(self.lines[-20:])
        assert self._process.poll() is None, "".join(self.lines[-20:])

    def end(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """A two-node cluster: its address and the environment that joins it. Its files (and
    the ``ray_current_cluster`` file Ray leaves behind) go in a folder of its own
    (``RAY_TMPDIR``): a later plain ``ray.init()`` on this machine would join that cluster."""
    home = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths are long
    env = {**os.environ, "RAY_TMPDIR": home,
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_USAGE_STATS_ENABLED": "0",
           # no 30 s drain on SIGTERM (it is for Ray Serve's replicas): the nodes end at once
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # fmt: skip
    address = f"127.0.0.1:{free_port()}"
    head = Node(["--head", f"--port={address.split(':')[1]}", "--num-cpus=1",
                 "--include-dashboard=false", "--disable-usage-stats"], env)  # fmt: skip
    nodes = [head]
    try:
        head.wait_up()
        nodes.append(Node([f"--address={address}", "--num-cpus=2"], env))
        nodes[-1].wait_up()
        yield address, env
    finally:
        for node in reversed(nodes):
            node.end()
        shutil.rmtree(home, ignore_errors=True)


def table_of(tmp_path: Path, count: int) -> Path:
    """A CSV table of ``count`` small JPEG files, keyed ``k0``, ``k1``..."""
    folder = tmp_path / "images"
    folder.mkdir()
    lines = ["key,url"]
    for index in range(count):
        path = folder / f"{index:03d}.jpg"
        path.write_bytes(jpeg(24, 16, seed=index))
        lines.append(f"k{index},{path}")
    table = tmp_path / "table.csv"
    table.write_text("\n".join(lines) + "\n")
    return table


def run(args: list[str], env: dict[str, str], emulator: GeminiEmulator, home: Path) -> Any:
    """``describe-images ray ARGS`` in a process of its own against ``emulator``."""
    with emulator.in_thread() as url:
        run_env = {**env, "GEMINI_API_KEY": TEST_KEY, "GOOGLE_GEMINI_BASE_URL": url,
                   "DESCRIBER_HOME": str(home)}  # fmt: skip
        return subprocess.run([str(BIN / "describe-images"), "ray", *args], env=run_env,
                              text=True, capture_output=True, timeout=300, check=False)  # fmt: skip


def test_a_run_joins_a_cluster_by_its_address_and_uses_both_nodes(
    cluster: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    address, env = cluster
    table, out = table_of(tmp_path, 60), tmp_path / "out"
    emulator = GeminiEmulator(EmulatorSettings(rpm=600))
    done = run([str(table), "-o", str(out), "--address", address, "--workers", "3",
                "--batch-rows", "10", "-c", "2", "--id-col", "key", "--rpm", "600",
                "--no-cache", "--embed", "--embed-dim", "8", "--embed-timeout", "0.2"],
               env, emulator, tmp_path / "home")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = [line for line in done.stderr.splitlines() if line.startswith("describer:")]
    assert re.search(r"60 rows this run: 60 described, 0 failed", summary[-1]), summary
    # the actors ran on both nodes, under the one keeper
    assert re.search(r"3 worker\(s\) on 2 node\(s\)", summary[-1]), summary
    shards = sorted(out.glob("part-*.parquet"))
    rows = [r for shard in shards for r in pq.read_table(shard).to_pylist()]
    assert sorted(r["id"] for r in rows) == sorted(f"k{i}" for i in range(60))
    assert all(r["error"] is None and r["description"] for r in rows)
    assert all(len(r["embedding"]) == 8 for r in rows)
    assert (emulator.stats.generate_requests, emulator.stats.rate_limited) == (60, 0)


def test_without_an_address_it_starts_its_own_ray_beside_a_running_cluster(
    cluster: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    # plain ray.init() would join the cluster running here (and refuse num_cpus)
    _, env = cluster
    table, out = table_of(tmp_path, 6), tmp_path / "out"
    emulator = GeminiEmulator(EmulatorSettings())
    done = run([str(table), "-o", str(out), "--workers", "1", "--id-col", "key", "--no-cache"],
               env, emulator, tmp_path / "home")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = [line for line in done.stderr.splitlines() if line.startswith("describer:")]
    assert re.search(r"6 described, 0 failed.*1 worker\(s\) on 1 node\(s\)", summary[-1])


def test_an_address_that_does_not_answer_is_one_line_and_exit_2(tmp_path: Path) -> None:
    table = table_of(tmp_path, 1)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        done = run([str(table), "-o", str(tmp_path / "out"), "--address", address],
                   dict(os.environ), GeminiEmulator(EmulatorSettings()), tmp_path / "home")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"describe-images: error: cannot reach the Ray cluster at {address}: Connection refused"
    ]
