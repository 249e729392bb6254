"""The host state machine catches a wrong placement: each mutant of the host's placement, put in
for one run, must make :class:`~fuzz.test_host_state_machine.HostMachine` fail.

A mutant that still passes would mean the model accepts a host that sends a shared type's calls or
events to the wrong member, moves placed keys, or forgets them, i.e. that the fuzz proves nothing
about placement.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from sansio_runtime import ClientId
from sansio_runtime._pools import SharedTypes

from .test_host_state_machine import HostMachine

Place = Callable[[SharedTypes, str, str], "ClientId | None"]
_real_place = SharedTypes.place


def first_member(self: SharedTypes, agent_type: str, key: str) -> ClientId | None:
    """Every key on the pool's first member, and nothing recorded as placed."""
    members = self.members(agent_type)
    return members[0] if members else None


def not_sticky(self: SharedTypes, agent_type: str, key: str) -> ClientId | None:
    """Rendezvous every time: a joining member steals keys already placed."""
    pool = self._pools.get(agent_type)
    return None if pool is None else pool.choose(key)


def last_member(self: SharedTypes, agent_type: str, key: str) -> ClientId | None:
    """Placed as it should be, then the answer taken from the newest member."""
    holder = _real_place(self, agent_type, key)
    members = self.members(agent_type)
    return members[-1] if holder is not None else None


@pytest.mark.parametrize("mutant", [first_member, not_sticky, last_member], ids=lambda m: m.__name__)
def test_the_host_state_machine_kills_each_placement_mutant(mutant: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SharedTypes, "place", mutant)
    budget = settings(
        max_examples=400,
        stateful_step_count=40,
        phases=[Phase.generate],  # no shrinking: a failure is all this test needs
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    with pytest.raises(AssertionError):
        run_state_machine_as_test(HostMachine, settings=budget)
