"""The offline generator: a deterministic planner from a description to a playbook.

No model is needed. The planner

1. splits the description into clauses, one action each, with their loops, conditions,
   ``otherwise`` branches and parallel markers (:mod:`~noetl_agent.generation.clauses`);
2. maps each clause to a documented step pattern by meaning
   (:class:`~noetl_agent.generation.patterns.PatternMatcher`);
3. reads the clause's slots: URLs, methods, SQL, tables, files, lists, thresholds,
   retries, paths, commands (:mod:`~noetl_agent.generation.slots`);
4. composes steps wired by arcs: a ``start`` step, one step per action, a ``fan_out`` and
   ``join`` around parallel calls, exclusive arcs for conditions and approvals, a loop on
   a step that runs per item, a retry policy on network steps.

What it cannot map (a clause like no pattern, an action missing the value it needs, a
condition it cannot translate, a schedule) is listed in ``unmapped`` and left out of the
playbook: nothing is invented.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from noetl_agent.generation.clauses import Clause, split
from noetl_agent.generation.conditions import DataRef, condition_expression
from noetl_agent.generation.naming import (
    file_noun,
    iterator_name,
    plural,
    sentence,
    snake,
    title,
    url_noun,
)
from noetl_agent.generation.patterns import BY_NAME, Match, PatternMatcher, StepPattern
from noetl_agent.generation.slots import Slots, extract
from noetl_agent.generation.transforms import transform_code
from noetl_agent.generation.wiring import Node, dump_yaml, link

_COLLECTION_WORDS = re.compile(
    r"\b(?:result|results|row|rows|record|records|item|items|entry|entries|response|them|"
    r"element|elements|line|lines)\b",
    re.I,
)
_WRITE_WORDS = re.compile(
    r"\b(?:insert|load|store|save|write|upsert|append|persist|put)\w*\b", re.I
)
_CREDENTIAL = re.compile(
    r"\b(?:credential|connection|keychain|auth)\s+[`'\"]?([A-Za-z_][\w-]*)", re.I
)
_RETRY_WORD = re.compile(r"\bretr(?:y|ies|ying)\b", re.I)
_MERGE = re.compile(r"\b(?:merge|combine|join|collect|gather|wait for)\b", re.I)
_STOP = re.compile(r"\b(?:stop|abort|halt|skip|cancel|end|do nothing)\b", re.I)
_RETRY_ALL = re.compile(
    r"\b(?:all|every|each|any)\s+(?:of\s+the\s+)?(?:calls?|requests?|steps?)\b", re.I
)


@dataclass(frozen=True, slots=True)
class Unmapped:
    """A part of the description that is not in the playbook, and why."""

    text: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"text": self.text, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """How one clause was read: its pattern, how close the match was, the step it became."""

    text: str
    pattern: str | None
    score: float
    step: str | None
    slots: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "pattern": self.pattern,
            "score": round(self.score, 3),
            "step": self.step,
            "slots": self.slots,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """The planner's playbook (YAML), what each clause became, and what it left out."""

    yaml: str
    actions: list[PlannedAction]
    unmapped: list[Unmapped]
    notes: list[str]
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "actions": [action.to_dict() for action in self.actions],
            "unmapped": [item.to_dict() for item in self.unmapped],
            "notes": self.notes,
        }


class OfflinePlanner:
    """Plans playbooks from descriptions (see the module docstring); thread-safe."""

    def __init__(self, matcher: PatternMatcher | None = None) -> None:
        self.matcher = matcher or PatternMatcher()

    def plan(
        self,
        description: str,
        *,
        name: str | None = None,
        path: str | None = None,
        workload: dict[str, Any] | None = None,
    ) -> Plan:
        """A playbook for ``description`` (blocking: the model may load; call it off the
        event loop)."""
        clauses = split(description)
        matches = self.matcher.match([clause.text for clause in clauses])
        builder = _Builder(description, dict(workload or {}))
        for clause, match in zip(clauses, matches, strict=True):
            builder.add(clause, match)
        notes = list(builder.notes)
        if self.matcher.unavailable_reason:
            notes.insert(
                0,
                "matched by keywords: the embedding model could not be loaded "
                f"({self.matcher.unavailable_reason})",
            )
        document = builder.document(name, path)
        return Plan(
            dump_yaml(document), builder.actions, builder.unmapped, notes, self.matcher.method
        )


class _Builder:
    def __init__(self, description: str, workload: dict[str, Any]) -> None:
        self.description = description
        self.workload = workload
        self.steps: dict[str, dict[str, Any]] = {}
        self.nodes: list[Node] = []
        self.keychain: dict[str, str] = {}
        self.actions: list[PlannedAction] = []
        self.unmapped: list[Unmapped] = []
        self.notes: list[str] = []
        self.data: DataRef | None = None
        self.network: list[str] = []  # steps a retry policy may apply to
        self.duckdb_steps: list[str] = []
        self.pending_retry: Slots | None = None
        self.branch_data: DataRef | None = None  # what the last condition read
        for schedule in extract(description).schedules:
            self.unmapped.append(
                Unmapped(
                    schedule,
                    "a playbook has no schedule; start it from cron or your scheduler "
                    "(e.g. `noetl-agent run` or POST /api/execute)",
                )
            )

    # ------------------------------------------------------------------ clauses

    def add(self, clause: Clause, match: Match) -> None:
        slots = extract(clause.text)
        rest = clause.text
        for schedule in slots.schedules:
            rest = rest.replace(schedule, " ")
        if slots.schedules and not re.search(r"[A-Za-z]{3,}", rest):
            # only a schedule ("Every day at 6am."): reported with the description's
            self.actions.append(PlannedAction(clause.text, "schedule", 1.0, None, {}))
            return
        pattern = match.pattern
        if pattern is not None and pattern.name == "send_http" and not slots.urls:
            pattern = None if not slots.tables else BY_NAME["query_postgres"]
        pattern = self._refine(pattern, clause, slots)
        if (pattern is None or (pattern.kind == "http" and not slots.urls)) and transform_code(
            clause.text
        ).recognised:
            pattern = BY_NAME["transform_python"]  # "keeping the top 10": an operation on records
        step: str | None = None
        if (
            _STOP.search(clause.text)
            and len(clause.text.split()) <= 5
            and (clause.otherwise or clause.condition)
        ):
            # "otherwise stop": the path that does not go on simply ends
            self.actions.append(PlannedAction(clause.text, "stop", 1.0, None, {}))
            return
        if pattern is None:
            self.unmapped.append(
                Unmapped(
                    clause.text,
                    "no step pattern is close to this sentence; say it as "
                    "an action (fetch, transform, query, load, post, ask, run ...)",
                )
            )
        elif self.data is not None and self.data.kind == "join" and _MERGE.search(clause.text):
            step = self.data.step  # "merge the results" of parallel calls: the join does it
            pattern = BY_NAME["fan_out"]
        elif pattern.name == "retry":
            self._retry(clause, slots)
        elif pattern.name in ("loop", "fan_out") and not slots.urls:
            self.unmapped.append(
                Unmapped(clause.text, f"`{pattern.summary}` needs an action to apply to")
            )
        else:
            step = self._action(pattern, clause, slots)
        self.actions.append(
            PlannedAction(
                clause.text,
                pattern.name if pattern else None,
                match.score,
                step,
                slots.to_dict(),
            )
        )

    def _refine(
        self, pattern: StepPattern | None, clause: Clause, slots: Slots
    ) -> StepPattern | None:
        """Slots overrule a close call between patterns: SQL, files and tables name their
        engine, URLs make an HTTP call, a path of a playbook makes a sub-playbook call."""
        text = clause.text.lower()
        if pattern is None and not (slots.urls or slots.sql or slots.files):
            return None
        if slots.playbook and re.search(r"\b(?:sub-?)?playbook\b", text):
            return BY_NAME["call_playbook"]
        if "duckdb" in text or (slots.files and not slots.urls):
            return BY_NAME["query_duckdb"]
        if (
            "postgres" in text
            or (slots.sql and not slots.urls)
            or (
                slots.tables
                and pattern is not None
                and pattern.kind in ("http", "python")
                and not slots.urls
                and _WRITE_WORDS.search(text)
            )
        ):
            return BY_NAME["query_postgres"]
        if (
            slots.urls
            and (pattern is None or pattern.kind != "http")
            and (pattern is None or pattern.name != "fan_out" or len(slots.urls) < 2)
        ):
            return BY_NAME[
                "send_http"
                if slots.sends or slots.method in ("POST", "PUT", "PATCH")
                else "fetch_http"
            ]
        if pattern is not None and pattern.name == "fetch_http" and slots.sends and slots.urls:
            return BY_NAME["send_http"]
        return pattern

    def _action(self, pattern: StepPattern, clause: Clause, slots: Slots) -> str | None:
        if pattern.name in ("fetch_http", "send_http", "fan_out", "loop") and len(slots.urls) > 1:
            return self._fan_out(pattern, clause, slots)
        loop = self._loop(clause, slots) if clause.loop else None
        if clause.loop and loop is None:
            return None
        build = {
            "fetch_http": self._http,
            "send_http": self._http,
            "fan_out": self._http,
            "loop": self._http,
            "transform_python": self._python,
            "query_duckdb": self._duckdb,
            "query_postgres": self._postgres,
            "ask_human": self._approval,
            "call_playbook": self._playbook,
            "run_shell": self._shell,
        }[pattern.name]
        iterator = str(loop["iterator"]) if loop else None
        if pattern.name == "transform_python":
            previous = self._previous_transform(clause, iterator)
            if previous is not None:
                self._extend_transform(previous, clause)
                return previous
        if clause.otherwise and self.branch_data is not None:
            self.data = self.branch_data  # the other branch reads what the condition read
        condition = self._condition(clause)
        if condition is not None:
            self.branch_data = self.data
        made = build(clause, slots, iterator)
        if made is None:
            return None
        name, tool, kind = made
        step: dict[str, Any] = {"step": name, "desc": sentence(clause.text), "tool": tool}
        if loop is not None:
            step["loop"] = loop
        if slots.timeout:
            step["spec"] = {"timeout": f"{slots.timeout:g}s"}
        self.steps[name] = step
        self.nodes.append(
            Node(
                name,
                [name],
                condition=condition,
                otherwise=clause.otherwise,
                approval=kind == "approval",
            )
        )
        if kind in ("http", "sql", "playbook"):
            self.network.append(name)
            if slots.attempts or _RETRY_WORD.search(clause.text):
                self._policy(name, slots)
            elif self.pending_retry is not None:
                self._policy(name, self.pending_retry)
        if kind != "approval":
            data_kind = "loop" if loop is not None else kind
            transform = tool.pop("_transform", None) if isinstance(tool, dict) else None
            self.data = DataRef(name, data_kind, transform)
        return name

    # ------------------------------------------------------------------ tools

    def _http(
        self, clause: Clause, slots: Slots, iterator: str | None
    ) -> tuple[str, dict[str, Any], str] | None:
        if not slots.urls:
            self._missing(
                clause, "no URL is given for this HTTP call; write the full https://... address"
            )
            return None
        url = slots.urls[0]
        sends = slots.sends or slots.method in ("POST", "PUT", "PATCH")
        method = slots.method or ("POST" if sends else "GET")
        tool: dict[str, Any] = {"kind": "http", "method": method}
        if iterator:
            templated = _template_url(url, iterator)
            tool["url"] = templated
            if templated == url and method == "GET":
                tool["params"] = {iterator: "{{ " + iterator + " }}"}
        else:
            tool["url"] = url
        if method in ("POST", "PUT", "PATCH"):
            body = self._data_ref(iterator)
            if body is not None:
                tool["json"] = body
        base = "send" if method in ("POST", "PUT", "PATCH") else "fetch"
        return self._name(base, url_noun(url)), tool, "http"

    def _python(
        self, clause: Clause, slots: Slots, iterator: str | None
    ) -> tuple[str, dict[str, Any], str] | None:
        transform = transform_code(clause.text)
        if not transform.recognised:
            self.unmapped.append(
                Unmapped(
                    clause.text,
                    "this transformation is not translated into code: the step passes the "
                    "records on unchanged; write its code or describe it as a filter, sort, "
                    "top-N, de-duplication, grouping, count, sum, average, minimum or maximum",
                )
            )
        tool: dict[str, Any] = {"kind": "python", "code": transform.code}
        data = self._data_ref(iterator)
        if data is not None:
            tool["input"] = {"data": data}
        tool["_transform"] = transform
        verb = transform.operations[0].split()[0] if transform.operations else "transform"
        return self._name(verb, None), tool, "python"

    def _previous_transform(self, clause: Clause, iterator: str | None) -> str | None:
        """The python step just before, when this clause only adds operations to it."""
        data, last = self.data, self.nodes[-1] if self.nodes else None
        if iterator or clause.condition or clause.otherwise or data is None or last is None:
            return None
        step = self.steps.get(last.entry, {})
        if data.kind != "python" or last.entry != data.step or "loop" in step:
            return None
        return data.step

    def _extend_transform(self, name: str, clause: Clause) -> None:
        """Fold the clause's operations into the python step ``name``: one step, not two."""
        step = self.steps[name]
        if not transform_code(clause.text).recognised:
            self.unmapped.append(
                Unmapped(clause.text, "this transformation is not translated into code")
            )
        text = f"{step['desc']}, {clause.text}"
        transform = transform_code(text)
        step["desc"] = sentence(text)
        step["tool"]["code"] = transform.code
        assert self.data is not None
        self.data.transform = transform

    def _duckdb(
        self, clause: Clause, slots: Slots, iterator: str | None
    ) -> tuple[str, dict[str, Any], str] | None:
        table = slots.tables[0] if slots.tables else None
        if slots.sql:
            sql = slots.sql
        elif slots.files and table and _WRITE_WORDS.search(clause.text):
            reader = "read_parquet" if slots.files[0].endswith(".parquet") else "read_csv_auto"
            sql = f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {reader}('{slots.files[0]}')"
        elif slots.files:
            sql = f"SELECT * FROM '{slots.files[0]}'"
        elif table:
            sql = f"SELECT * FROM {table}"
        else:
            self._missing(clause, "no SQL, file or table is given for this DuckDB step")
            return None
        field_name = "query" if _is_query(sql) else "command"
        tool: dict[str, Any] = {"kind": "duckdb", field_name: sql}
        name = self._name("query" if field_name == "query" else "load", table or file_noun(slots))
        self.duckdb_steps.append(name)
        return name, tool, "sql"

    def _postgres(
        self, clause: Clause, slots: Slots, iterator: str | None
    ) -> tuple[str, dict[str, Any], str] | None:
        credential_match = _CREDENTIAL.search(clause.text)
        credential = credential_match.group(1) if credential_match else "postgres"
        table = slots.tables[0] if slots.tables else None
        tool: dict[str, Any] = {"kind": "postgres", "auth": credential}
        data = self._data_ref(iterator)
        if slots.sql:
            tool["query" if _is_query(slots.sql) else "command"] = slots.sql
        elif table and _WRITE_WORDS.search(clause.text):
            if data is None:
                self._missing(
                    clause, f"nothing to write into `{table}`: no earlier step produces records"
                )
                return None
            records = (
                "{{ [" + iterator + "] | tojson }}"
                if iterator is not None
                else "{{ " + self.data.collection() + " | tojson }}"  # type: ignore[union-attr]
            )
            tool["command"] = (
                f"INSERT INTO {table} SELECT * FROM "
                f"json_populate_recordset(NULL::{table}, $1::json)"
            )
            tool["params"] = [records]
        elif table:
            tool["query"] = f"SELECT * FROM {table}"
        else:
            self._missing(clause, "no SQL or table is given for this database step")
            return None
        if credential not in self.keychain:
            self.keychain[credential] = "postgres"
            self.notes.append(
                f"store the database credential before a live run: "
                f"`noetl-agent credentials set {credential} --kind postgres -f host=... "
                "-f user=... -f password=... -f database=...`"
            )
        base = "query" if "query" in tool else "write"
        return self._name(base, table), tool, "sql"

    def _approval(
        self, clause: Clause, slots: Slots, iterator: str | None
    ) -> tuple[str, dict[str, Any], str] | None:
        prompt = sentence(clause.text)
        if self.data is not None:
            prompt += f" ({self.data.step}: {{{{ {self.data.step} | tojson | truncate(500) }}}})"
        tool: dict[str, Any] = {"kind": "approval", "prompt": prompt}
        if slots.timeout:
            tool["timeout"] = f"{slots.timeout:g}s"
        return self._name("review", None), tool, "approval"

    def _playbook(
        self, clause: Clause, slots: Slots, iterator: str | None
    ) -> tuple[str, dict[str, Any], str] | None:
        if not slots.playbook:
            self._missing(clause, "no catalog path is given for the sub-playbook (e.g. `etl/load`)")
            return None
        tool: dict[str, Any] = {"kind": "playbook", "path": slots.playbook}
        data = self._data_ref(iterator)
        if data is not None:
            tool["input"] = {"data": data}
        return self._name("run", slots.playbook.rsplit("/", 1)[-1]), tool, "playbook"

    def _shell(
        self, clause: Clause, slots: Slots, iterator: str | None
    ) -> tuple[str, dict[str, Any], str] | None:
        if not slots.command:
            self._missing(clause, "no command is given; quote it in backticks (`./backup.sh`)")
            return None
        return self._name("run", None), {"kind": "shell", "cmds": [slots.command]}, "shell"

    # ------------------------------------------------------------------ modifiers

    def _loop(self, clause: Clause, slots: Slots) -> dict[str, Any] | None:
        phrase = clause.loop or ""
        iterator = iterator_name(phrase)
        spec: dict[str, Any] = {"mode": "parallel" if clause.parallel else "sequential"}
        if slots.max_in_flight or extract(phrase).max_in_flight:
            spec["mode"] = "parallel"
            spec["max_in_flight"] = slots.max_in_flight or extract(phrase).max_in_flight
        items = extract(phrase).items or ([] if _COLLECTION_WORDS.search(phrase) else slots.items)
        key = plural(iterator)
        if items:
            self.workload[key] = items
            source = "{{ " + key + " }}"
        elif key in self.workload:
            source = "{{ " + key + " }}"
        elif self.data is not None and (
            _COLLECTION_WORDS.search(phrase) or self.data.kind in ("http", "sql", "python", "loop")
        ):
            source = "{{ " + self.data.collection() + " }}"
        else:
            self.unmapped.append(
                Unmapped(
                    clause.text,
                    f"the loop over `{phrase}` has no list: give the items ([a, b, c]) or "
                    f"pass `{key}` in the workload",
                )
            )
            return None
        return {"in": source, "iterator": iterator, "spec": spec}

    def _retry(self, clause: Clause, slots: Slots) -> None:
        if _RETRY_ALL.search(clause.text) or not self.network:
            targets = list(self.network)
            self.pending_retry = slots  # network steps planned later get it too
        else:
            last = self.nodes[-1] if self.nodes else None
            exits = [n for n in (last.exits if last else []) if n in self.network]
            targets = exits or self.network[-1:]
        for name in targets:
            self._policy(name, slots)

    def _policy(self, name: str, slots: Slots) -> None:
        then: dict[str, Any] = {
            "do": "retry",
            "attempts": slots.attempts or 3,
            "backoff": slots.backoff or "exponential",
            "delay": slots.delay if slots.delay is not None else 1.0,
            "max_delay": 30.0,
        }
        tool = self.steps[name]["tool"]
        tool.setdefault("spec", {})["policy"] = {
            "rules": [
                {"when": "{{ output.status == 'error' and output.error.retryable }}", "then": then}
            ]
        }

    def _fan_out(self, pattern: StepPattern, clause: Clause, slots: Slots) -> str:
        entry = self._name("fan_out", None)
        self.steps[entry] = {}  # keeps the workflow in reading order
        branches: list[str] = []
        for url in slots.urls:
            branch_slots = extract(url)
            branch_slots.method = slots.method
            branch_slots.sends = slots.sends
            made = self._http(Clause(f"{clause.text} ({url})"), branch_slots, None)
            assert made is not None
            name, tool, _ = made
            self.steps[name] = {
                "step": name,
                "desc": f"{sentence(clause.text)}: {url}",
                "tool": tool,
            }
            branches.append(name)
            self.network.append(name)
            if slots.attempts or _RETRY_WORD.search(clause.text):
                self._policy(name, slots)
            elif self.pending_retry is not None:
                self._policy(name, self.pending_retry)
        join = self._name("join", None)
        self.steps[entry] = {
            "step": entry,
            "desc": "Start the calls in parallel",
            "tool": {"kind": "noop"},
            "next": {"spec": {"mode": "inclusive"}, "arcs": [{"step": b} for b in branches]},
        }
        for name in branches:
            self.steps[name]["next"] = {"arcs": [{"step": join}]}
        self.steps[join] = {
            "step": join,
            "desc": "Wait for every parallel call and collect their results",
            "tool": {"kind": "noop", "input": {b: "{{ " + b + " }}" for b in branches}},
        }
        self.nodes.append(
            Node(entry, [join], condition=self._condition(clause), otherwise=clause.otherwise)
        )
        self.data = DataRef(join, "join")
        return entry

    def _condition(self, clause: Clause) -> str | None:
        if clause.condition is None:
            return None
        expression = condition_expression(clause.condition, self.data)
        if expression is None:
            self.unmapped.append(
                Unmapped(
                    clause.condition,
                    "this condition is not translated: the step runs without it; write it "
                    "as a comparison (`the count is above 100`) or a failure (`if it fails`)",
                )
            )
            return None
        if clause.negated:
            expression = "{{ not (" + expression[3:-3] + ") }}"
        return expression

    # ------------------------------------------------------------------ helpers

    def _data_ref(self, iterator: str | None) -> str | None:
        if iterator:
            return "{{ " + iterator + " }}"
        if self.data is None:
            return None
        return "{{ " + self.data.step + " }}"

    def _missing(self, clause: Clause, reason: str) -> None:
        self.unmapped.append(Unmapped(clause.text, reason))

    def _name(self, verb: str, noun: str | None) -> str:
        base = snake(f"{verb}_{noun}" if noun else verb)[:40].strip("_") or "step"
        name, index = base, 2
        while name in self.steps or name in ("start", "approved", "rejected"):
            name, index = f"{base}_{index}", index + 1
        return name

    # ------------------------------------------------------------------ document

    def document(self, name: str | None, path: str | None) -> dict[str, Any]:
        """The playbook as a mapping: steps linked by arcs (see :func:`link`)."""
        named = snake(name) if name else title(self.description)
        if len(self.duckdb_steps) > 1:
            for step in self.duckdb_steps:
                self.steps[step]["tool"]["database"] = f"{named}.duckdb"
        start: dict[str, Any] = {"step": "start", "desc": "Begin", "tool": {"kind": "noop"}}
        extra = link(start, self.steps, self.nodes)
        workflow = [start, *self.steps.values(), *extra]
        document: dict[str, Any] = {
            "apiVersion": "noetl.io/v2",
            "kind": "Playbook",
            "metadata": {
                "name": named,
                "path": path or f"generated/{named}",
                "description": sentence(self.description)[:500],
                "tags": ["generated"],
            },
        }
        if self.workload:
            document["workload"] = self.workload
        if self.keychain:
            document["keychain"] = [{"name": n, "kind": k} for n, k in self.keychain.items()]
        document["workflow"] = workflow
        return document


def _template_url(url: str, iterator: str) -> str:
    expression = "{{ " + iterator + " }}"
    out = url
    for spelling in (  # the ways a description writes the loop variable into a URL
        "{{" + iterator + "}}",
        "{{ " + iterator + " }}",
        "{" + iterator + "}",
        "<" + iterator + ">",
        "${" + iterator + "}",
        ":" + iterator,
    ):
        out = out.replace(spelling, expression)
    return out


def _is_query(sql: str) -> bool:
    return bool(re.match(r"\s*(SELECT|WITH|SHOW|DESCRIBE|EXPLAIN)\b", sql, re.I))
