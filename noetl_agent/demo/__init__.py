"""`noetl-agent demo`: the closed loop on a local flaky service, from the first runs to the
measured effect of an approved change (see :mod:`noetl_agent.demo.flow`)."""

from noetl_agent.demo.flow import DemoError, DemoOptions, run_demo

__all__ = ["DemoError", "DemoOptions", "run_demo"]
