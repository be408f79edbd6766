"""The demo's example playbooks and the workload of each run.

- ``demo/price_list``: GET ``/prices`` (503 now and then), no retry in v1; the learners
  should propose retrying the 503.
- ``demo/user_profile``: GET ``/profile/<user>``, v1 retries every error 5 times; one
  user in four is revoked (401 on every attempt); they should propose to stop retrying
  the 401.
- ``demo/render_report``: a slow GET ``/render`` on pool small ($0.10/h); the version
  before ran on large ($0.20/h), which is faster and cheaper per run; they should
  propose moving it back.

The render playbook gets an earlier version first (the same step on pool ``large``), as
if an operator had moved it to ``small`` by hand for the lower hourly price: the hardware
learner only proposes pools it has observations of.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import yaml

USERS = ("alice", "bob", "carol", "mallory")  # mallory's token is revoked


@dataclass(frozen=True, slots=True)
class Example:
    """One example playbook of the demo."""

    file: str
    rotate_users: bool = False  # the workload's `user` cycles through USERS, run by run
    earlier_pool: str | None = None  # the version before ran step `start` on this pool

    @property
    def content(self) -> str:
        return files("noetl_agent.demo.playbooks").joinpath(self.file).read_text()

    @property
    def path(self) -> str:
        document = yaml.safe_load(self.content)
        return str(document["metadata"]["path"])

    @property
    def pools(self) -> list[str]:
        document = yaml.safe_load(self.content)
        return [str(pool["name"]) for pool in document.get("pools") or []]

    def earlier_content(self) -> str | None:
        """The version before the file's: step ``start`` on ``earlier_pool``."""
        if self.earlier_pool is None:
            return None
        document = yaml.safe_load(self.content)
        for step in document["workflow"]:
            if step["step"] == "start":
                step.setdefault("spec", {}).setdefault("runtime", {})["pool"] = self.earlier_pool
        return yaml.safe_dump(document, sort_keys=False)

    def workload(self, base_url: str, index: int) -> dict[str, Any]:
        """The workload of run number ``index``."""
        workload: dict[str, Any] = {"base_url": base_url}
        if self.rotate_users:
            workload["user"] = USERS[index % len(USERS)]
        return workload


EXAMPLES: tuple[Example, ...] = (
    Example("price_list.yaml"),
    Example("user_profile.yaml", rotate_users=True),
    Example("render_report.yaml", earlier_pool="large"),
)
