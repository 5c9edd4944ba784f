"""decide_continuation is pure: the whole heartbeat rule in one table."""

from __future__ import annotations

import pytest

from support_agent.agent import decide_continuation
from support_agent.tools import ToolOutcome


def outcome(*, ok: bool = True, heartbeat: bool = False, flagged: bool = False) -> ToolOutcome:
    return ToolOutcome("c1", "some_tool", ok, "{}", heartbeat, {}, flagged)


@pytest.mark.parametrize(
    ("outcomes", "steps_taken", "expected"),
    [
        ([], 1, (False, "end_turn")),
        ([outcome()], 1, (False, "end_turn")),
        ([outcome(heartbeat=True)], 1, (True, None)),
        ([outcome(), outcome(ok=False)], 1, (True, None)),
        ([outcome(flagged=True)], 1, (True, None)),
        ([outcome(heartbeat=True)], 10, (False, "step_limit")),
        ([outcome(ok=False)], 10, (False, "step_limit")),
        ([outcome()], 10, (False, "end_turn")),
    ],
)
def test_decide_continuation(outcomes, steps_taken, expected):
    decision = decide_continuation(outcomes=outcomes, steps_taken=steps_taken, step_limit=10)
    assert (decision.proceed, decision.stop_reason) == expected
