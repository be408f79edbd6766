"""Playbooks for the explanation tests: failures with a known cause, their fixes, and a
failure no rule knows."""

from __future__ import annotations

SECRET = "hunter2-prod-pass"  # the value of the ``warehouse`` credential in these tests
API_KEY = "sk-live-5f1e2d3c4b"  # a workload value under a key that names a secret


def python_step(path: str, step: str, code: str, *, workload: str = "", desc: str = "") -> str:
    """A playbook whose step ``step`` runs ``code`` (the body of ``main``, its workload
    passed as keyword arguments)."""
    body = "\n".join("            " + line for line in code.strip().splitlines())
    return f"""\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: {path.rsplit("/", 1)[-1]}
  path: {path}
  description: "{desc or "a playbook"}"
{workload}workflow:
  - step: start
    tool: {{kind: noop}}
    next: {{arcs: [{{step: {step}}}]}}
  - step: {step}
    tool:
      kind: python
      input: {{record: "{{{{ record }}}}"}}
      code: |
        def main(record):
{body}
"""


ENRICH_BROKEN = python_step(
    "api/enrich_users",
    "enrich",
    "return {'segment': record['customer_id'] % 3}",
    workload="workload:\n  record: {id: 1, name: Ann}\n",
    desc="Enrich user records with CRM attributes",
)
ENRICH_FIXED = python_step(
    "api/enrich_users",
    "enrich",
    "return {'segment': record.get('customer_id', 0) % 3}",
    workload="workload:\n  record: {id: 1, name: Ann}\n",
    desc="Enrich user records with CRM attributes",
)
# The failure explained in the tests: a missing key, secrets in its workload and error.
MERGE_CONTACTS = python_step(
    "crm/merge_contacts",
    "merge",
    f"""
if 'email' not in record:
    raise KeyError("email (row signed with {SECRET})")
return record['email']
""",
    workload=(f"workload:\n  record: {{id: 7, name: Bo, note: {SECRET}}}\n  api_key: {API_KEY}\n"),
    desc="Merge duplicate contacts in the CRM",
)
WORKS = python_step("reports/ok", "total", "return {'n': 1}", workload="workload:\n  record: {}\n")


def stalled(path: str) -> str:
    """A playbook failing with an error that no rule knows."""
    return python_step(
        path,
        "frobnicate",
        "raise RuntimeError('widget frobnication stalled in stage 3 of the pipeline')",
        workload="workload:\n  record: {}\n",
        desc="Frobnicate widgets",
    )
