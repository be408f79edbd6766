"""The playbook language: models, loading with line numbers, validation, JSON Schema."""

from engine.dsl.loader import load_playbook, parse_playbook
from engine.dsl.models import Playbook, Step

__all__ = ["Playbook", "Step", "load_playbook", "parse_playbook"]
