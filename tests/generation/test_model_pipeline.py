"""The model path of generation, driven through litellm's own ``mock_response``: a
malformed answer repaired in a second round, retries on rate limits, every call recorded
with its tokens and cost, the offline fallback, and prompts that never carry a secret."""

from __future__ import annotations

from typing import Any

import pytest

from engine.adapters.memory.stores import MemoryCatalogStore, MemoryEventStore
from engine.core import events as ev
from engine.runtime.redaction import Redactor
from noetl_agent.generation import Constraints, Generator, generate
from noetl_agent.llm import LlmCallFailed, LlmClient, LlmNotConfigured, LlmSettings

MODEL = "gpt-4o-mini"  # priced in litellm's bundled cost map
SETTINGS = LlmSettings(model=MODEL, delay=0.0, attempts=3)
VALID = """Here it is:
```yaml
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: prices, path: model/prices}
workflow:
  - step: start
    tool: {kind: http, method: GET, url: "https://prices.example.com/list"}
    next: {arcs: [{step: cheapest}]}
  - step: cheapest
    tool:
      kind: python
      code: |
        def main(rows=None):
            return {"first": rows}
    input: {rows: "{{ start.json }}"}
```
"""
MALFORMED = """```yaml
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: prices}
workflow:
  - step: start
    nxet: cheapest
    tool: {kind: http, url: "https://prices.example.com/list"}
```"""


class Sent:
    """Captures what litellm is asked, through a custom logger callback."""

    def __init__(self) -> None:
        self.messages: list[list[dict[str, Any]]] = []


@pytest.fixture
def sent() -> Any:
    import os

    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm
    from litellm.integrations.custom_logger import CustomLogger

    captured = Sent()

    class Capture(CustomLogger):
        def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
            captured.messages.append(list(messages))

    capture = Capture()
    before = list(litellm.callbacks)
    litellm.callbacks = [*before, capture]
    try:
        yield captured
    finally:
        litellm.callbacks = before


async def test_a_malformed_answer_is_repaired_in_a_second_round() -> None:
    events = MemoryEventStore()
    llm = LlmClient(SETTINGS, redactor=Redactor(), scripted=[MALFORMED, VALID])
    draft = await generate("List prices and pick the cheapest", llm=llm, events=events)
    assert draft.generator == "model" and draft.model == MODEL
    assert draft.valid and draft.rounds == 1
    assert draft.dry_run is not None and draft.dry_run.passed
    assert "model/prices" in draft.yaml
    assert [call.purpose for call in draft.llm_calls] == ["generate", "repair"]
    first, second = draft.llm_calls
    assert second.prompt_chars > first.prompt_chars  # the repair round carries the issues
    assert all(c.prompt_tokens and c.completion_tokens for c in draft.llm_calls)
    assert all(c.cost_usd is not None and c.cost_usd > 0 for c in draft.llm_calls)
    report = draft.to_dict()
    assert report["llm"]["calls"][0]["usage"]["total_tokens"] > 0
    assert report["llm"]["cost_usd"] == pytest.approx(sum(c.cost_usd for c in draft.llm_calls))
    recorded = await events.read(f"generation:{draft.generation_id}")
    assert [e.event_type for e in recorded] == [ev.LLM_CALLED, ev.LLM_CALLED]
    assert recorded[0].payload["usage"]["prompt_tokens"] == first.prompt_tokens
    assert recorded[1].payload["cost_usd"] == second.cost_usd


async def test_the_repair_message_names_the_problem(sent: Sent) -> None:
    llm = LlmClient(SETTINGS, redactor=Redactor(), scripted=[MALFORMED, VALID])
    await generate("List prices and pick the cheapest", llm=llm)
    repair = sent.messages[-1][-1]["content"]
    assert "did not expect `nxet`" in repair and "did you mean `next`" in repair


async def test_rate_limits_are_retried_and_each_attempt_is_recorded() -> None:
    llm = LlmClient(SETTINGS, redactor=Redactor(), scripted=["litellm.RateLimitError", VALID])
    draft = await generate("List prices", llm=llm)
    assert draft.generator == "model" and draft.valid
    failed, succeeded = draft.llm_calls
    assert (failed.status, failed.error_kind, failed.attempt) == ("error", "rate_limit", 1)
    assert (succeeded.status, succeeded.attempt) == ("ok", 2)


async def test_a_failing_model_falls_back_to_the_offline_planner() -> None:
    llm = LlmClient(SETTINGS, redactor=Redactor(), scripted=["litellm.RateLimitError"] * 3)
    draft = await generate("Fetch https://prices.example.com/list", llm=llm)
    assert draft.generator == "offline" and draft.valid
    assert len(draft.llm_calls) == 3 and {c.error_kind for c in draft.llm_calls} == {"rate_limit"}
    assert any("model failed" in note for note in draft.notes)


async def test_a_draft_still_invalid_after_the_repairs_falls_back_offline() -> None:
    llm = LlmClient(SETTINGS, redactor=Redactor(), scripted=[MALFORMED, MALFORMED])
    draft = await generate(
        "Fetch https://prices.example.com/list", Constraints(max_repairs=1), llm=llm
    )
    assert draft.generator == "offline" and draft.valid
    assert len(draft.llm_calls) == 2
    assert any("still invalid after 1 repair" in note for note in draft.notes)


async def test_constraints_on_tool_kinds_are_fed_back_as_issues() -> None:
    llm = LlmClient(SETTINGS, redactor=Redactor(), scripted=[VALID, VALID])
    draft = await generate(
        "List prices",
        Constraints(kinds=frozenset({"http"}), max_repairs=1),
        llm=llm,
    )
    # the model kept the python step: both rounds break the constraint, offline takes over
    assert draft.generator == "offline"
    assert any("still invalid" in note for note in draft.notes)


async def test_prompts_never_carry_a_known_secret(sent: Sent) -> None:
    secret = "s3cr3t-pa55word-9000"

    class Vault:
        def list(self) -> list[Any]:
            from engine.adapters.credentials import CredentialInfo

            return [CredentialInfo("warehouse", "postgres")]

        async def get(self, name: str) -> dict[str, str]:
            return {"user": "etl", "password": secret}

    events = MemoryEventStore()
    llm = LlmClient(SETTINGS, redactor=Redactor(), scripted=[VALID])
    generator = Generator(
        llm=llm, events=events, catalog=MemoryCatalogStore(), credentials=[Vault()]
    )
    draft = await generator.generate(f"List prices; the password is {secret}")
    assert draft.generator == "model"
    sent_text = str(sent.messages)
    assert secret not in sent_text and "***" in sent_text
    [generated] = await events.read(f"draft:{draft.fingerprint}")
    assert secret not in generated.payload["description"]


async def test_no_model_configured_means_offline() -> None:
    llm = LlmClient(LlmSettings(model=None))
    with pytest.raises(LlmNotConfigured, match="NOETL_LLM_MODEL"):
        await llm.complete([{"role": "user", "content": "hi"}], purpose="test")
    draft = await generate("Fetch https://prices.example.com/list", llm=llm)
    assert draft.generator == "offline" and draft.llm_calls == []


async def test_a_refused_call_is_not_retried() -> None:
    llm = LlmClient(SETTINGS, scripted=["Exception: content_filter_policy"])
    with pytest.raises(LlmCallFailed, match="refused") as caught:
        await llm.complete([{"role": "user", "content": "hi"}], purpose="test")
    assert len(caught.value.calls) == 1 and not caught.value.transient


def test_settings_come_from_the_environment() -> None:
    settings = LlmSettings.from_environment(
        {"NOETL_LLM_MODEL": "ollama/llama3.1", "NOETL_LLM_TIMEOUT": "12", "NOETL_LLM_ATTEMPTS": "2"}
    )
    assert (settings.model, settings.timeout, settings.attempts) == ("ollama/llama3.1", 12.0, 2)
    assert not LlmSettings.from_environment({}).configured
    with pytest.raises(ValueError, match="NOETL_LLM_TIMEOUT"):
        LlmSettings.from_environment({"NOETL_LLM_TIMEOUT": "soon"})
