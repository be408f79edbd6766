"""Model access for the agent layer: litellm behind timeouts, retries, redaction and
per-call cost accounting (see :mod:`noetl_agent.llm.client`)."""

from noetl_agent.llm.calls import LlmCall, Recorder, record_in, total_cost
from noetl_agent.llm.client import LlmClient, LlmReply, Message
from noetl_agent.llm.errors import LlmCallFailed, LlmError, LlmNotConfigured
from noetl_agent.llm.settings import LlmSettings

__all__ = [
    "LlmCall",
    "LlmCallFailed",
    "LlmClient",
    "LlmError",
    "LlmNotConfigured",
    "LlmReply",
    "LlmSettings",
    "Message",
    "Recorder",
    "record_in",
    "total_cost",
]
