"""Scale out on a real multi-node Ray cluster: the README's commands, several nodes, one node lost.

The nodes are separate `ray start` processes. Where the test may create namespaces (root, `ip`
and `unshare`), every worker node lives in a network namespace of its own with its own address
behind a bridge, so what Ray sends between nodes really crosses a network, and has a compile
cache of its own; elsewhere the nodes share the loopback address and the disk. The head stays in
the host's namespace, where the study's driver runs and PostgreSQL listens.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import require
from tuner.db import Store, StoreError
from tuner.service import NotFound, Service

DOC = Path(__file__).resolve().parent.parent / "docs" / "scale_out.md"
DOC_PORT = "6379"  # the docs' head port; the test takes a free one instead
STUDY = "attention-cpu-B1-H2-S128-D64-causal0"
# Flags the test adds to the docs' `ray start` lines because all nodes share one small machine.
ONE_MACHINE = ["--num-cpus=1", "--object-store-memory=100000000", "--block"]
HEAD_ONLY = ["--include-dashboard=false"]
# Dead nodes are noticed after 1 s x 3 failed health checks instead of Ray's 3 s x 5.
FAST_HEALTH_CHECKS = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}


@dataclass(frozen=True)
class DocCommands:
    """The scale-out section's commands: environment, head, worker and study lines."""

    env: dict[str, str]
    head: list[str]
    worker: list[str]
    study: list[str]


def doc_commands(text: str | None = None) -> DocCommands:
    """Parses the block after ``<!-- cluster-commands -->`` (comments and exports understood)."""
    text = DOC.read_text() if text is None else text
    block = re.search(r"<!-- cluster-commands -->\n```sh\n(.*?)```", text, re.DOTALL)
    assert block, f"{DOC} lost its cluster-commands block"
    env, lines = {}, []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            env.update(word.split("=", 1) for word in words[1:])
        elif words:
            lines.append(words)
    head, worker = (next(w for w in lines if w[:2] == ["ray", "start"] and test(w))
                    for test in (lambda w: "--head" in w, lambda w: "--head" not in w))
    study = next(w for w in lines if w[:2] == ["tuner", "run"])
    return DocCommands(env, head, worker, study)


def expand(words: list[str], values: dict[str, str]) -> list[str]:
    """The docs' words with $NAME placeholders and the docs' port replaced by this run's."""
    port = values["PORT"]
    expanded = [re.sub(r"\$(\w+)", lambda m: values[m.group(1)], w) for w in words]
    return [w.replace(f":{DOC_PORT}", f":{port}").replace(f"={DOC_PORT}", f"={port}") for w in expanded]


def program(words: list[str]) -> list[str]:
    """`ray ...` and `tuner ...` as this interpreter's installation runs them."""
    if words[0] == "tuner":
        return [sys.executable, "-m", "tuner", *words[1:]]
    ray = Path(sys.executable).with_name("ray")
    return [str(ray) if ray.exists() else shutil.which("ray") or "ray", *words[1:]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Node:
    """One `ray start --block` process group; ``prefix`` runs a command in the node's namespace."""

    name: str
    ip: str
    prefix: list[str]
    manager_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def start(self, words: list[str], env: dict[str, str], temp: Path) -> None:
        extra = [f"--temp-dir={temp / self.name}", f"--node-manager-port={self.manager_port}"]
        with open(temp / f"{self.name}.log", "w") as log:  # the node keeps its own copy
            self.process = subprocess.Popen([*self.prefix, *program(words), *ONE_MACHINE, *extra],
                                            env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def kill(self) -> None:
        """Gone at once, as when a machine loses power: raylet, workers and all."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


class Namespaces:
    """A bridge in the host's namespace and one network namespace per worker node behind it.

    Each worker node also gets a compile cache of its own (a private tmpfs over the cache
    directory), as separate machines have separate disks: a kernel compiled on one node must
    reach the node that measures it through Ray, not through a shared file.
    """

    PRIVATE_CACHE = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
                     'mount -t tmpfs tmpfs "$TUNER_CACHE_DIR" && exec "$@"', "node")

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10_000}"
        self.bridge, self.subnet = f"tcbr{tag}", f"10.213.{os.getpid() % 250}"
        self.host_ip = f"{self.subnet}.254"
        self.spaces: list[str] = []
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def node(self, index: int) -> tuple[str, list[str]]:
        """A fresh namespace: its address and the prefix that runs commands in it."""
        space, veth = f"tc{os.getpid()}n{index}", f"tcv{os.getpid() % 10_000}n{index}"
        self.spaces.append(space)
        address = f"{self.subnet}.{index}"
        ip("netns", "add", space)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", space)
        ip("link", "set", veth, "master", self.bridge)
        ip("link", "set", veth, "up")
        inside = ["ip", "netns", "exec", space]
        for args in (["addr", "add", f"{address}/24", "dev", "eth0"], ["link", "set", "eth0", "up"],
                     ["link", "set", "lo", "up"], ["route", "add", "default", "via", self.host_ip]):
            run([*inside, "ip", *args])
        return address, [*inside, *self.PRIVATE_CACHE]

    def close(self) -> None:
        for space in self.spaces:
            run(["ip", "netns", "del", space], check=False)
        run(["ip", "link", "del", self.bridge], check=False)


def ip(*args: str) -> None:
    run(["ip", *args])


def run(command: list[str], check: bool = True) -> None:
    subprocess.run(command, check=check, capture_output=True)


def namespaces() -> Namespaces | None:
    """Namespaces where this process may make them, else None (the nodes share loopback)."""
    if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("unshare")):
        return None
    try:
        return Namespaces()
    except subprocess.CalledProcessError as exc:
        print(f"no network namespaces ({exc.stderr.decode().strip()}): nodes share loopback")
        return None


class Cluster:
    """A head in the host's namespace and worker nodes, each started by the docs' command."""

    def __init__(self, docs: DocCommands, temp: Path, network: Namespaces | None):
        self.docs, self.temp, self.network = docs, temp, network
        head_ip = network.host_ip if network else "127.0.0.1"
        self.values = {"HEAD": head_ip, "PORT": str(free_port())}
        self.address = f"{head_ip}:{self.values['PORT']}"
        self.env = {**os.environ, **docs.env, **FAST_HEALTH_CHECKS}
        self.head = Node("head", head_ip, [])
        self.head.start(expand(docs.head, self.values) + HEAD_ONLY, self.env, temp)
        self.workers: list[Node] = []

    def add_worker(self) -> Node:
        index = len(self.workers) + 1
        address, prefix = self.network.node(index) if self.network else ("127.0.0.1", [])
        node = Node(f"worker{index}", address, prefix)
        node.start(expand(self.docs.worker, self.values), self.env, self.temp)
        self.workers.append(node)
        return node

    def node_ids(self, alive: int) -> dict[tuple[str, int], str]:
        """Waits for ``alive`` live nodes, however long a busy machine takes to start them; their
        Ray node ids by (address, node manager port)."""
        script = ("import json, sys, time, ray\n"
                  "ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR')\n"
                  "while True:\n"
                  "    nodes = [n for n in ray.nodes() if n['Alive']]\n"
                  "    if len(nodes) >= int(sys.argv[2]): break\n"
                  "    time.sleep(0.5)\n"
                  "print(json.dumps([[n['NodeManagerAddress'], n['NodeManagerPort'], n['NodeID']]"
                  " for n in nodes]))\n")
        done = subprocess.run([sys.executable, "-c", script, self.address, str(alive)],
                              env=self.env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        found = {(a, p): node for a, p, node in json.loads(done.stdout.splitlines()[-1])}
        assert len(found) >= alive, f"only {len(found)} of {alive} Ray nodes came up: see {self.temp}"
        return found

    def node_id(self, node: Node, ids: dict[tuple[str, int], str]) -> str:
        return ids[(node.ip, node.manager_port)]

    def close(self) -> None:
        for node in [*self.workers, self.head]:
            node.stop()


@contextmanager
def cluster(workers: int) -> Iterator[Cluster]:
    # Short path: Ray's unix sockets live under the temp dir and have a 107-byte limit.
    temp = Path(tempfile.mkdtemp(prefix="tc", dir="/tmp"))
    network = namespaces()
    started = Cluster(doc_commands(), temp, network)
    try:
        for _ in range(workers):
            started.add_worker()
        yield started
    finally:
        started.close()
        if network:
            network.close()
        shutil.rmtree(temp, ignore_errors=True)


def rows(url: str) -> list:
    try:
        with Store.open(url, create=False) as store:
            return Service(store).trials(STUDY, limit=10_000).items
    except (StoreError, NotFound):
        return []


def study_command(c: Cluster, url: str) -> list[str]:
    return program(expand(c.docs.study, {**c.values, "TUNER_DB": url}))


def wait_for_measurements_on(url: str, workers: dict[str, Node], study: subprocess.Popen) -> Node:
    """The first worker node (not the head) that stored a measurement, once one has."""
    while study.poll() is None:
        for trial in rows(url):
            if trial.environment.get("ray_node") in workers:
                return workers[trial.environment["ray_node"]]
        time.sleep(0.3)
    pytest.fail(f"no worker node stored a measurement (study exit {study.poll()}): "
                f"{study.stdout.read() if study.poll() is not None else ''}")


@contextmanager
def running(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """The study as its own Ray driver; killed if the test leaves before it ends."""
    study = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        yield study
    finally:
        if study.poll() is None:
            study.kill()
            study.communicate()


@pytest.mark.slow
@pytest.mark.postgres
def test_study_spreads_over_nodes_and_loses_no_trial_when_a_node_dies(pg_url):
    require(Path(program(["ray"])[0]).exists(), "the `ray` command is not installed next to python")
    with cluster(workers=2) as c:
        ids = c.node_ids(alive=3)
        workers = {c.node_id(node, ids): node for node in c.workers}
        command = study_command(c, pg_url)
        trials = int(command[command.index("--trials") + 1])
        with running(command, c.env) as study:
            victim = wait_for_measurements_on(pg_url, workers, study)
            victim.kill()  # mid-run, as it stores a trial: its actor has likely been given the next
            stored_at_kill = len(rows(pg_url))
            # A node that joins mid-run: without its CPU the lost actor's successor and the
            # compiles could not all be placed, and the study would stall.
            c.add_worker()
            output, _ = study.communicate()
    assert study.returncode == 0, output[-3000:]
    assert stored_at_kill < trials, "the node was stopped after the study had ended"
    stored = rows(pg_url)
    assert sorted(t.number for t in stored) == list(range(trials)), output[-3000:]
    # The template is sound: any other status is a trial the cluster lost or broke.
    assert not [(t.number, t.status, t.reason) for t in stored if t.status not in ("ok", "invalid")]
    assert len({t.environment["ray_node"] for t in stored}) >= 2
    optuna_trials = optuna.load_study(study_name=STUDY, storage=pg_url).trials
    assert len(optuna_trials) == trials
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in optuna_trials)
