"""The explanation in prose, written by a language model from the gathered evidence.

Only when a model is configured (``NOETL_LLM_MODEL``, see :mod:`noetl_agent.llm`). The
prompt holds the structured evidence of the explanation, which is already masked, and is
masked once more before it leaves (the model client masks it a third time with what the
process knows); the model is told to use that evidence only. Each call is recorded as
``llm.called`` events in the log ``explain:<execution id>``, never in the execution's
own log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from engine.ports import EventStore
from noetl_agent.explain_evidence import Masker
from noetl_agent.llm import LlmClient, LlmSettings, Message, record_in

MAX_EVIDENCE = 12_000  # characters of evidence in a prompt
PURPOSE = "explain"
SYSTEM = (
    "You explain why a workflow execution failed. Use only the evidence given: the "
    "failed step, its error, inputs and events, the ranked likely causes, and similar past "
    "failures with how they were resolved. Answer in three short parts titled 'Root "
    "cause', 'Evidence' and 'Suggested fixes'. Cite execution ids and event sequence "
    "numbers for every claim; when the evidence is not enough to decide, say so. Secrets "
    "are shown as ***; never guess them."
)


def calls_log(execution_id: str) -> str:
    """The pseudo execution id under which the model calls explaining one are recorded."""
    return f"explain:{execution_id}"


def configured_client(events: EventStore, execution_id: str) -> LlmClient | None:
    """A model client from ``NOETL_LLM_*`` recording into :func:`calls_log`, or None
    when no model is configured (offline)."""
    settings = LlmSettings.from_environment()
    if not settings.configured:
        return None
    return LlmClient(settings, recorder=record_in(events, calls_log(execution_id)))


def prompt(evidence: Mapping[str, Any], masker: Masker) -> list[Message]:
    """The chat messages asking for the explanation of ``evidence`` (masked again)."""
    text = json.dumps(evidence, default=str, ensure_ascii=False, indent=1)
    if len(text) > MAX_EVIDENCE:
        text = text[:MAX_EVIDENCE] + "\n… (evidence clipped)"
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": masker.text("Evidence (JSON):\n" + text)},
    ]
