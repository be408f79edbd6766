"""The policy learners of the closed loop: what past runs say a playbook should change.

``history`` turns the event log into tool runs and loop runs; ``retry`` and ``hardware``
learn from them and return ``ProposalDraft``s (a patch against one catalog version, its
evidence and a rationale); ``effect`` measures a change after it was applied; ``patch``
applies and shows patches. Nothing here stores or decides anything: proposals, approvals
and application live in ``noetl_agent.proposals``.
"""
