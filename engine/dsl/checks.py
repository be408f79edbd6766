"""Static checks of a validated playbook: the graph must be runnable.

- every arc, ``jump`` target and ``entry_step`` names an existing step (closest name hinted);
- step names are unique; workbook references resolve; approvals stand alone in their step;
- every step is reachable from the entry step (a join that no token can reach never fires);
- every reachable step can still reach an end (a cycle with no exit would never finish);
  the issue names the steps of the cycle, and says so of a step that only leads into one.
"""

from __future__ import annotations

import difflib
from collections import Counter

from engine.dsl.models import ApprovalTool, Playbook, WorkbookTool
from engine.errors import Issue


def _closest(name: str, options: list[str]) -> str | None:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f"did you mean `{close[0]}`?" if close else None


def successors(playbook: Playbook) -> dict[str, list[str]]:
    """Every step's possible next steps: arc targets and policy ``jump`` targets."""
    graph: dict[str, list[str]] = {}
    for step in playbook.workflow:
        targets = [arc.step for arc in playbook.arcs_of(step)]
        for tool in step.tools:
            if tool.spec and tool.spec.policy:
                targets += [r.action.to for r in tool.spec.policy.rules if r.action.to]
        graph[step.step] = targets
    return graph


def static_issues(playbook: Playbook) -> list[Issue]:
    """Return every static problem of ``playbook`` (empty when it can run)."""
    issues: list[Issue] = []
    names = [step.step for step in playbook.workflow]
    for name, count in Counter(names).items():
        if count > 1:
            index = len(names) - 1 - names[::-1].index(name)
            issues.append(
                Issue(
                    f"workflow[{index}].step",
                    f"step name `{name}` is used {count} times",
                    hint="give every step a unique name",
                )
            )
    known = set(names)
    entry = playbook.entry_step
    if entry not in known:
        issues.append(
            Issue(
                "executor.spec.entry_step",
                f"entry step `{entry}` does not exist",
                hint=_closest(entry, names),
            )
        )
    workbook_names = [entry.name for entry in playbook.workbook]
    for index, step in enumerate(playbook.workflow):
        for arc_index, arc in enumerate(step.arcs):
            if arc.step not in known:
                issues.append(
                    Issue(
                        f"workflow[{index}].next.arcs[{arc_index}].step",
                        f"arc to unknown step `{arc.step}`",
                        hint=_closest(arc.step, names) or f"steps are: {', '.join(names)}",
                    )
                )
        for tool_index, tool in enumerate(step.tools):
            where = (
                f"workflow[{index}].tool[{tool_index}]"
                if isinstance(step.tool, list)
                else f"workflow[{index}].tool"
            )
            if isinstance(tool, ApprovalTool) and (step.loop is not None or len(step.tools) > 1):
                issues.append(
                    Issue(
                        f"{where}.kind",
                        "an approval waits for one decision: it cannot run in a loop or a pipeline",
                        hint="give the approval a step of its own",
                    )
                )
            if isinstance(tool, WorkbookTool) and tool.name not in workbook_names:
                issues.append(
                    Issue(
                        f"{where}.name",
                        f"workbook tool `{tool.name}` is not defined in `workbook`",
                        hint=_closest(tool.name, workbook_names)
                        or "add it under the playbook's `workbook:` list",
                    )
                )
            if tool.spec and tool.spec.policy:
                for rule_index, rule in enumerate(tool.spec.policy.rules):
                    target = rule.action.to
                    if target and target not in known:
                        issues.append(
                            Issue(
                                f"{where}.spec.policy.rules[{rule_index}]",
                                f"`jump` to unknown step `{target}`",
                                hint=_closest(target, names),
                            )
                        )
    if issues or entry not in known:
        return issues
    graph = successors(playbook)
    reachable = _reach(graph, [entry])
    for index, step in enumerate(playbook.workflow):
        if step.step not in reachable:
            issues.append(
                Issue(
                    f"workflow[{index}]",
                    f"step `{step.step}` is unreachable from the entry step `{entry}`",
                    hint="add an arc to it or remove it",
                )
            )
    ends = {name for name, targets in graph.items() if not targets}
    reverse: dict[str, list[str]] = {name: [] for name in graph}
    for name, targets in graph.items():
        for target in targets:
            reverse[target].append(name)
    can_finish = _reach(reverse, list(ends))
    trapped = [name for name in names if name in reachable and name not in can_finish]
    cycles = _cycles(graph, trapped)
    for index, step in enumerate(playbook.workflow):
        if step.step not in trapped:
            continue
        if step.step in cycles:
            where = f"is in a cycle with no exit ({_steps(cycles[step.step], names)})"
        else:
            ahead = _reach(graph, [step.step])
            caught = {member for name in ahead if name in cycles for member in cycles[name]}
            where = f"leads only into a cycle with no exit ({_steps(caught, names)})"
        issues.append(
            Issue(
                f"workflow[{index}]",
                f"step `{step.step}` {where}: no path from it ends",
                hint="add an arc out of the cycle to a step that ends the workflow",
            )
        )
    return issues


def _cycles(graph: dict[str, list[str]], trapped: list[str]) -> dict[str, set[str]]:
    """Each trapped step that lies on a cycle → the steps of its cycle (its strongly
    connected component among the trapped steps)."""
    inside = set(trapped)
    forward = {name: [t for t in graph[name] if t in inside] for name in trapped}
    backward: dict[str, list[str]] = {name: [] for name in trapped}
    for name, targets in forward.items():
        for target in targets:
            backward[target].append(name)
    cycles: dict[str, set[str]] = {}
    for name in trapped:
        if name in cycles:
            continue
        component = _reach(forward, [name]) & _reach(backward, [name])
        if len(component) > 1 or name in forward[name]:
            cycles.update(dict.fromkeys(component, component))
    return cycles


def _steps(members: set[str], order: list[str]) -> str:
    """``steps `a`, `b``` in workflow order."""
    return "steps " + ", ".join(f"`{name}`" for name in order if name in members)


def _reach(graph: dict[str, list[str]], start: list[str]) -> set[str]:
    seen = set(start)
    stack = list(start)
    while stack:
        for target in graph.get(stack.pop(), []):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen
