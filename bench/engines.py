"""Another dockerd beside the host's, as a second machine: its own data root
(an empty store), socket, exec root and bridge; the factory's builder image
given to it as a new machine gets the factory. Stopped by PID, its bridge
and any NAT rules it was given removed."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path


class SecondEngine:
    def __init__(self, root: Path, bridge: str = "factory-bench0", subnet: str = "172.31.250", route_out: bool = False):
        self.root, self.bridge, self.subnet, self.route_out = root, bridge, subnet, route_out
        root.mkdir()
        self.host = f"unix://{root}/docker.sock"
        self.process: subprocess.Popen | None = None
        self._rules: list[list[str]] = []

    def start(self, builder: str) -> float:
        """Start it and load the builder image (and its base); returns the seconds that took."""
        started = time.monotonic()
        # A bridge of its own: with --bridge=none a dockerd deletes docker0,
        # the host engine's bridge, and every container the host engine
        # starts after that fails to get a network.
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge], check=True)
        subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True)
        if self.route_out:
            # Its own NAT rules, not dockerd's: two dockerds managing iptables
            # would fight over the same chains.
            self._rules = [
                ["-t", "nat", "POSTROUTING", "-s", f"{self.subnet}.0/24", "!", "-o", self.bridge, "-j", "MASQUERADE"],
                ["FORWARD", "-i", self.bridge, "-j", "ACCEPT"],
                ["FORWARD", "-o", self.bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
            ]
            for rule in self._rules:
                subprocess.run(["iptables", *_verb(rule, "-I")], check=True)
        log = open(self.root / "dockerd.log", "wb")
        self.process = subprocess.Popen(
            ["dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "dockerd.pid"), "-H", self.host, "--bridge", self.bridge,
             "--iptables=false", "--ip-masq=false"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(60):
            if subprocess.run(["docker", "-H", self.host, "info"], capture_output=True).returncode == 0:
                break
            time.sleep(1)
        else:
            raise SystemExit(f"the second dockerd did not answer; see {self.root / 'dockerd.log'}")
        base_id = subprocess.run(["docker", "image", "inspect", "--format", '{{index .Config.Labels "org.factory.builder.base"}}', builder],
                                 capture_output=True, text=True).stdout.strip()
        base = subprocess.run(["docker", "image", "inspect", "--format", "{{index .RepoTags 0}}", base_id],
                              capture_output=True, text=True).stdout.strip()
        save = subprocess.Popen(["docker", "save", builder, base], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", self.host, "load", "-q"], stdin=save.stdout, check=True, capture_output=True)
        save.wait()
        return time.monotonic() - started

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for rule in self._rules:
            subprocess.run(["iptables", *_verb(rule, "-D")], capture_output=True)
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _verb(rule: list[str], verb: str) -> list[str]:
    """An iptables rule with its verb before the chain: [-t TABLE] CHAIN ARGS."""
    if rule[0] == "-t":
        return [*rule[:2], verb, *rule[2:]]
    return [verb, *rule]
