"""Peer environments for the engine benchmark.

Each peer (upstream NoETL, Prefect) lives in its own virtual environment under
``evals/.peers/<name>``, installed from the package index on first use and reused
afterwards. A marker file records the installed requirement so that a changed pin
triggers a fresh install.

When a plain ``pip install`` fails because one of the peer's own requirements has
no matching release on the index (Prefect 3.9.1 asks for a ``certifi`` newer than
the index may carry), the peer is installed with ``--no-deps`` and its declared
requirements are installed next, with the unsatisfiable ones relaxed to any release.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

PEERS_DIR = Path(__file__).resolve().parents[1] / ".peers"
MARKER = ".bench-ready"

_REQUIRES_SCRIPT = """
import importlib.metadata as md
import sys
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
for line in md.requires(sys.argv[1]) or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    print(str(req).split(";")[0].strip())
"""

_NO_MATCH = re.compile(r"No matching distribution found for ([A-Za-z0-9_.\-]+)")


class PeerInstallError(RuntimeError):
    """A peer environment could not be installed."""


@dataclass(frozen=True)
class Peer:
    """A peer tool installed into its own cached virtual environment."""

    name: str
    requirement: str
    dist: str

    @property
    def root(self) -> Path:
        """Directory of the peer's virtual environment."""
        return PEERS_DIR / self.name

    @property
    def python(self) -> Path:
        """The peer environment's interpreter."""
        return self.root / "bin" / "python"

    def bin(self, name: str) -> Path:
        """Path of an executable installed into the peer environment."""
        return self.root / "bin" / name

    @property
    def log(self) -> Path:
        """Installation log of the peer environment."""
        return PEERS_DIR / f"{self.name}.install.log"

    def ready(self) -> bool:
        """Whether the environment exists and holds the pinned requirement."""
        marker = self.root / MARKER
        return (
            self.python.exists()
            and marker.exists()
            and marker.read_text().strip() == self.requirement
        )

    def ensure(self, echo: bool = True) -> Path:
        """Install the environment unless a matching cached one is present."""
        if self.ready():
            return self.root
        if echo:
            print(f"installing peer {self.requirement} into {self.root} ...", file=sys.stderr)
        if self.root.exists():
            shutil.rmtree(self.root)
        PEERS_DIR.mkdir(parents=True, exist_ok=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(self.root)
        with self.log.open("w") as log:
            first = self._pip(log, "install", self.requirement)
            if first.returncode != 0:
                self._install_relaxed(log, first.stdout + first.stderr)
        (self.root / MARKER).write_text(self.requirement + "\n")
        return self.root

    def _pip(
        self, log: TextIO, *args: str, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.python), "-m", "pip", "--disable-pip-version-check", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        log.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\nexit {proc.returncode}\n")
        if check and proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise PeerInstallError(
                f"{self.name}: pip {' '.join(args[:2])} failed: "
                + " | ".join(tail)
                + f" (see {self.log})"
            )
        return proc

    def _install_relaxed(self, log: TextIO, first_output: str) -> None:
        unsatisfiable = {m.lower().replace("_", "-") for m in _NO_MATCH.findall(first_output)}
        if not unsatisfiable:
            tail = first_output.strip().splitlines()[-5:]
            raise PeerInstallError(
                f"{self.name}: install failed: " + " | ".join(tail) + f" (see {self.log})"
            )
        self._pip(log, "install", "--no-deps", self.requirement, check=True)
        proc = subprocess.run(
            [str(self.python), "-c", _REQUIRES_SCRIPT, self.dist],
            capture_output=True,
            text=True,
            check=True,
        )
        requirements: list[str] = []
        for line in proc.stdout.splitlines():
            name = re.split(r"[\[<>=!~ ]", line, maxsplit=1)[0]
            if name.lower().replace("_", "-") in unsatisfiable:
                extras = re.match(r"[^\[<>=!~ ]+(\[[^\]]*\])?", line)
                line = name + ((extras.group(1) or "") if extras else "")
            requirements.append(line)
        self._pip(log, "install", *requirements, check=True)


NOETL = Peer(name="noetl", requirement="noetl==5.3.2", dist="noetl")
PREFECT = Peer(name="prefect", requirement="prefect==3.9.1", dist="prefect")
PEERS: dict[str, Peer] = {p.name: p for p in (NOETL, PREFECT)}


def main(argv: list[str] | None = None) -> int:
    """Install (or confirm) the peer environments named on the command line."""
    names = (argv if argv is not None else sys.argv[1:]) or list(PEERS)
    for name in names:
        peer = PEERS[name]
        peer.ensure()
        print(f"{name}: ready at {peer.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
