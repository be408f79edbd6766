"""The batch route's fast decoder reads a body exactly as ``EventBatch`` does, or leaves
it to ``EventBatch``: never a different event, never a body ``EventBatch`` refuses."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from pydantic import ValidationError

from engine.adapters.memory.stores import encode_payload
from engine.core.events import Event, JsonObject
from noetl_agent.api.models import MAX_BATCH, EventBatch, events_from_json


def _event(**fields: Any) -> dict[str, Any]:
    return {
        "event_id": "x1:start#1:0:done",
        "event_type": "tool.processed",
        "execution_id": "x1",
        "timestamp": "2026-12-01T00:00:00.000000Z",
        **fields,
    }


def _body(*events: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"events": list(events), **extra}).encode()


def _by_pydantic(body: bytes) -> list[Event] | None:
    try:
        return [item.to_event() for item in EventBatch.model_validate_json(body).events]
    except ValidationError:
        return None


FULL = _event(
    event_alias="ToolProcessed",
    seq=7,
    entity_type="tool",
    entity_id="start.t0",
    parent_id="step:start#1",
    step_run_id="start#1",
    iteration=2,
    attempt=1,
    status="success",
    duration_ms=3,
    payload={
        "output": {"rows": 3, "path": "/data/é 🙂", "list": [1, 2.5, None, True, "a"]},
        "error": None,
        "partial": True,
        "big": 123456789012345678901234567890,
        "neg": -0.0,
    },
)

READ_ALIKE = [
    _body(FULL),
    _body(_event()),  # no payload
    _body(_event(payload={})),
    _body(_event(event_type="tool.started"), _event(event_type="retry.processed")),
    b'{"events":[{"event_id":"a","event_type":"tool.started","execution_id":"x",'
    b'"timestamp":"t","payload":{"k":1,"k":2}}]}',  # duplicate keys: the last wins
    b'  {"events" : [ {"event_id":"a","event_type":"tool.started","execution_id":"x",'
    b'"timestamp":"t","payload": {"s": "\\u00e9\\n\\"q\\"", "n": 1e3}} ] }  ',
    _body(*[_event(event_id=f"e{n}") for n in range(MAX_BATCH)]),
]

LEFT_TO_PYDANTIC = [
    b"",
    b"{",
    b"[]",
    b'{"events": []}',
    b"{}",
    _body(_event(), extra=1),
    _body(_event(colour="red")),
    _body(_event(event_type="step.started")),
    _body(_event(event_id="")),
    _body(_event(execution_id="")),
    _body(_event(timestamp="")),
    _body(_event(attempt="3")),  # pydantic converts it; the fast decoder does not
    _body(_event(attempt=3.0)),
    _body(_event(attempt=True)),
    _body(_event(iteration="two")),
    _body(_event(payload=None)),
    _body(_event(payload=[1, 2])),
    _body(_event(payload="text")),
    _body(_event(status=3)),
    _body(*[_event(event_id=f"e{n}") for n in range(MAX_BATCH + 1)]),
    b'{"events":[{"event_id":"a","event_type":"tool.started","execution_id":"x",'
    b'"timestamp":"t","payload":{"v": NaN}}]}',
    b'{"events":[{"event_id":"a","event_type":"tool.started","execution_id":"x",'
    b'"timestamp":"t","payload":{"v": 1e400}}]}',
    b'{"events":[{"event_id":"a","event_type":"tool.started","execution_id":"x",'
    b'"timestamp":"t","payload":{"v": "\\ud800"}}]}',
    b'{"events":[]} trailing',
    b"\xff\xfe",
]


@pytest.mark.parametrize("body", READ_ALIKE, ids=range(len(READ_ALIKE)))
def test_the_fast_decoder_reads_what_pydantic_reads(body: bytes) -> None:
    fast = events_from_json(body)
    assert fast is not None
    assert fast == _by_pydantic(body)
    for event in fast:
        assert event.seq is None
        if isinstance(event.payload, JsonObject):
            assert event.payload.json is not None
            assert json.loads(event.payload.json) == event.payload
            assert event.payload.json == encode_payload(event)


@pytest.mark.parametrize("body", LEFT_TO_PYDANTIC, ids=range(len(LEFT_TO_PYDANTIC)))
def test_the_fast_decoder_leaves_the_rest_to_pydantic(body: bytes) -> None:
    assert events_from_json(body) is None


def test_a_payload_carries_its_json_text() -> None:
    body = (
        b'{"events":[{"event_id":"a","event_type":"tool.processed","execution_id":"x",'
        b'"timestamp":"t","payload": {"a" : [1, 2e0, 1E3],  "b": {"c": null, "d": "\\u00e9"}}}]}'
    )
    (event,) = events_from_json(body) or []
    assert isinstance(event.payload, JsonObject)
    assert event.payload == {"a": [1, 2.0, 1000.0], "b": {"c": None, "d": "é"}}
    assert event.payload.json == '{"a":[1,2.0,1000.0],"b":{"c":null,"d":"é"}}'


def test_changing_a_kept_payload_drops_its_text_and_copies_are_plain() -> None:
    payload = JsonObject({"a": 1}, '{"a":1}')
    assert type(copy.copy(payload)) is dict
    assert type(copy.deepcopy(payload)) is dict
    assert type(pickle.loads(pickle.dumps(payload))) is dict
    assert payload.json == '{"a":1}'
    for change in (
        lambda p: p.__setitem__("b", 2),
        lambda p: p.__delitem__("a"),
        lambda p: p.update(b=2),
        lambda p: p.setdefault("b", 2),
        lambda p: p.pop("a"),
        lambda p: p.popitem(),
        lambda p: p.clear(),
        lambda p: p.__ior__({"b": 2}),
    ):
        changed = JsonObject({"a": 1}, '{"a":1}')
        change(changed)
        assert changed.json is None
