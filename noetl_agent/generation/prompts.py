"""What the model is told: the language, the tools, similar playbooks, the constraints.

The first message carries the playbook JSON Schema, the tool catalog (each kind's fields
and result), the routing rules, and up to a few similar catalog playbooks as examples;
the second the description and constraints. A repair message lists every problem of the
previous answer with its path, line and hint (or the dry run's failure) and asks for the
whole corrected playbook. The client redacts every message before it is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from engine.dsl.models import Playbook
from engine.errors import Issue
from noetl_agent.llm import Message

EXAMPLE_CHARS = 4000  # longest example included
_FENCE = re.compile(r"```(?:ya?ml)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)

TOOL_CATALOG: dict[str, tuple[str, str]] = {
    "http": (
        "method, url, headers, params, json | body | data, auth, timeout",
        "{status_code, headers, json} (or text); 4xx/5xx are errors with error.code",
    ),
    "python": (
        "code: defines `def main(**input)` (the step's `input` are its arguments) or assigns "
        "`result`; libs",
        "the return value",
    ),
    "postgres": (
        "auth (a keychain credential name), query or command, params ($1, $2 ...)",
        "rows as a list of mappings; for a command {rowcount, status}",
    ),
    "duckdb": (
        "query or command, database (file; default in memory), params",
        "rows as a list of mappings",
    ),
    "playbook": ("path (catalog path), version, input", "the child execution's result"),
    "workbook": ("name (of an entry of the playbook's `workbook`), input", "as that tool"),
    "shell": ("cmds (list, run in order), env, cwd, timeout", "{stdout, stderr, exit_code}"),
    "noop": ("input (returned as the result)", "its input, or {}"),
    "approval": (
        "prompt, approvers, timeout, on_timeout: reject|approve",
        "{approved, comment, decided_by}; the execution pauses until a person decides",
    ),
}

RULES = """\
Rules of the language:
- Every step has a unique snake_case `step` name and one `tool`; a routing-only step uses
  `tool: {kind: noop}`. The entry step is `start` (or the first step).
- `next: {arcs: [{step: NAME, when: "{{ condition }}"}]}` routes after a step;
  `next.spec.mode: exclusive` (default) takes the first arc that holds, `inclusive` takes
  all of them (fan-out); a step with several incoming arcs is a join. An arc without
  `when` holds on success only; route a failure with `when: "{{ event.status == 'error' }}"`.
- Templates are Jinja2: a finished step's result by its name (`{{ fetch.json.items }}`),
  workload keys by name, `ctx.*`; a string that is exactly one `{{ expr }}` keeps its type.
- `loop: {in: "{{ list }}", iterator: item, spec: {mode: parallel, max_in_flight: 4}}` runs
  the step's tool once per item; the step's result is the list of the results.
- Retries: `tool.spec.policy.rules: [{when: "{{ output.status == 'error' and
  output.error.retryable }}", then: {do: retry, attempts: 3, backoff: exponential, delay: 1}}]`.
- Credentials are never written in a playbook: list them in `keychain` and name them in
  `auth`. Never invent URLs, tables or SQL the description does not give: make them
  workload inputs with a clear name instead."""


@dataclass(frozen=True, slots=True)
class Example:
    """A catalog playbook similar to the description, shown to the model."""

    path: str
    version: int
    score: float
    content: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "version": self.version, "score": round(self.score, 4)}


@lru_cache(maxsize=1)
def schema_text() -> str:
    """The playbook JSON Schema, compact."""
    return json.dumps(Playbook.model_json_schema(by_alias=True), separators=(",", ":"))


def tool_catalog() -> str:
    """One line per tool kind: its fields and its result."""
    return "\n".join(
        f"- {kind}: fields {fields}; result {result}"
        for kind, (fields, result) in TOOL_CATALOG.items()
    )


def first_messages(
    description: str, constraints: dict[str, Any], examples: Sequence[Example]
) -> list[Message]:
    """The system and user messages that ask for a playbook."""
    system = [
        "You write NoETL playbooks (apiVersion noetl.io/v2) in YAML. Answer with exactly one "
        "YAML document in a ```yaml fenced block and nothing else.",
        RULES,
        "Tool kinds:\n" + tool_catalog(),
        "JSON Schema of a playbook:\n" + schema_text(),
    ]
    for example in examples:
        system.append(
            f"A similar playbook from the catalog ({example.path}, similarity "
            f"{example.score:.2f}):\n```yaml\n{example.content[:EXAMPLE_CHARS]}\n```"
        )
    user = f"Write a playbook that does this:\n{description.strip()}"
    wanted = {key: value for key, value in constraints.items() if value not in (None, [], {})}
    if wanted:
        user += "\n\nConstraints:\n" + "\n".join(
            f"- {key}: {json.dumps(value, default=str)}" for key, value in wanted.items()
        )
    return [{"role": "system", "content": "\n\n".join(system)}, {"role": "user", "content": user}]


def repair_message(issues: Sequence[Issue]) -> Message:
    """The message asking the model to fix every listed problem."""
    lines = "\n".join(f"- {issue}" for issue in issues)
    return {
        "role": "user",
        "content": "The playbook is invalid. Fix every problem below and answer with the "
        f"whole corrected playbook in one ```yaml block:\n{lines}",
    }


def dry_run_message(error: dict[str, Any] | None, steps: Sequence[dict[str, Any]]) -> Message:
    """The message asking the model to fix a playbook whose dry run failed."""
    failed = [s for s in steps if s.get("status") == "error"]
    detail = "; ".join(f"step {s['step']}: {(s.get('error') or {}).get('message')}" for s in failed)
    message = (error or {}).get("message") or "the execution did not complete"
    return {
        "role": "user",
        "content": "The playbook validates, but a dry run (side effects replaced by "
        f"synthesised outputs) failed: {message}. {detail}\nFix it and answer with the whole "
        "corrected playbook in one ```yaml block.",
    }


def extract_yaml(answer: str) -> str:
    """The YAML of a model's answer: its first fenced block, else the whole answer."""
    match = _FENCE.search(answer)
    text = match.group(1) if match else answer
    return text.strip() + "\n"
