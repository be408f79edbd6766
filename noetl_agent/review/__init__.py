"""The review queue web page: pending policy proposals and workflow approvals with their
evidence, decided by logged-in human approvers (see ``noetl_agent.review.routes``)."""

from noetl_agent.review.app import create_review_app, mount

__all__ = ["create_review_app", "mount"]
