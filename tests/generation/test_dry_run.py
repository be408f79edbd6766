"""Dry runs reach no service: HTTP, SQL, shell and Python are answered by stand-ins, while
templating, loops, arcs, approvals and sub-playbooks run for real."""

from __future__ import annotations

from pathlib import Path

from engine.adapters.memory.stores import MemoryCatalogStore
from engine.runtime.embedded import Engine
from noetl_agent.generation import dry_run
from tests.generation.conftest import Service


def _side_effects(service: Service, marker: Path) -> str:
    return f"""\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {{name: effects, path: test/effects}}
workload: {{ids: [1, 2, 3]}}
workflow:
  - step: start
    tool: {{kind: http, method: GET, url: "{service.url}/items"}}
    next: {{arcs: [{{step: each}}]}}
  - step: each
    loop: {{in: "{{{{ start.json }}}}", iterator: item}}
    tool:
      kind: http
      method: POST
      url: "{service.url}/items/{{{{ item.name }}}}"
      json: "{{{{ item }}}}"
    next: {{arcs: [{{step: store}}]}}
  - step: store
    tool: {{kind: postgres, auth: nowhere, command: "INSERT INTO t VALUES (1)"}}
    next: {{arcs: [{{step: script}}]}}
  - step: script
    tool: {{kind: shell, cmds: ["touch {marker}"]}}
    next: {{arcs: [{{step: code}}]}}
  - step: code
    tool:
      kind: python
      code: |
        def main(**input):
            open({str(marker)!r} + ".py", "w").write("x")
            return {{"ok": True}}
    next: {{arcs: [{{step: check, when: "{{{{ code.ok }}}}"}}]}}
  - step: check
    tool: {{kind: approval, prompt: "Go on?"}}
    next: {{arcs: [{{step: done, when: "{{{{ check.approved }}}}"}}]}}
  - step: done
    tool: {{kind: noop, input: {{count: "{{{{ each | length }}}}"}}}}
"""


async def test_no_side_effect_reaches_a_real_service(service: Service, tmp_path: Path) -> None:
    marker = tmp_path / "touched"
    report = await dry_run(_side_effects(service, marker))
    assert report.passed, report.to_dict()
    assert service.requests == []
    assert not marker.exists() and not Path(f"{marker}.py").exists()
    kinds = [(call.step, call.kind) for call in report.stood_in]
    assert kinds == [
        ("start", "http"),
        ("each", "http"),
        ("each", "http"),
        ("store", "postgres"),
        ("script", "shell"),
        ("code", "python"),
    ]
    # the loop went over the synthesised list and rendered each element into the URL
    assert report.stood_in[1].request["url"].startswith(f"{service.url}/items/sample")
    assert len(report.approvals) == 1
    assert report.result == {"count": 2}


async def test_the_same_http_call_reaches_the_service_when_run_live(
    service: Service, engine: Engine
) -> None:
    content = f"""\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {{name: live, path: test/live}}
workflow:
  - step: start
    tool: {{kind: http, method: GET, url: "{service.url}/items"}}
"""
    report = await dry_run(content)
    assert report.passed and service.requests == []
    entry = await engine.register(content)
    outcome = await engine.run(entry.path)
    assert outcome.status == "completed"
    assert service.requests == ["GET /items"]


async def test_a_template_error_fails_the_dry_run() -> None:
    content = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: broken, path: test/broken}
workflow:
  - step: start
    tool: {kind: http, url: "https://example.test/{{ missing_value }}"}
"""
    report = await dry_run(content)
    assert not report.passed and report.status == "failed"
    assert "missing_value" in str(report.steps)


async def test_recorded_outputs_replace_synthesised_ones() -> None:
    content = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: rec, path: test/rec}
workflow:
  - step: start
    tool: {kind: http, url: "https://example.test/n"}
    next: {arcs: [{step: big, when: "{{ start.json.n > 10 }}"}, {step: small}]}
  - step: big
    tool: {kind: noop, input: {size: big}}
  - step: small
    tool: {kind: noop, input: {size: small}}
"""
    synthesised = await dry_run(content)
    recorded = await dry_run(content, recorded={"start": {"status_code": 200, "json": {"n": 42}}})
    assert synthesised.result == {"size": "small"}
    assert recorded.result == {"size": "big"}
    assert [call.source for call in recorded.stood_in] == ["recorded"]


async def test_sub_playbooks_come_from_the_catalog_without_running_their_tools(
    service: Service,
) -> None:
    child = f"""\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {{name: child, path: lib/child}}
workflow:
  - step: start
    tool: {{kind: http, url: "{service.url}/items"}}
"""
    catalog = MemoryCatalogStore()
    await catalog.register("lib/child", "child", child, description=None, source=None)
    parent = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: parent, path: test/parent}
workflow:
  - step: start
    tool: {kind: playbook, path: lib/child}
  - step: other
    tool: {kind: playbook, path: lib/missing}
"""
    parent = parent.replace("  - step: other", "    next: {arcs: [{step: other}]}\n  - step: other")
    report = await dry_run(parent, catalog=catalog)
    assert report.passed, report.to_dict()
    assert [call.step for call in report.stood_in] == ["start"]  # the child's http step
    assert service.requests == []
    assert any("lib/missing" in warning for warning in report.warnings)
