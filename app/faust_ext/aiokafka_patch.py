"""aiokafka: leave the group from generation 0 too (Tansu numbers generations from 0).

Seen on a *restart* of a worker with the same app id: aiokafka only sends LeaveGroup when
``generation > 0`` (``aiokafka/consumer/group_coordinator.py``, ``_maybe_leave_group``:
``if self.generation > 0 and self._group_instance_id is None``). Tansu numbers the first
generation **0** (Kafka starts at 1). So a worker that stops in generation 0 never leaves,
and its ghost stays the group leader until its session expires. The next worker joins as a
follower, its SyncGroup waits for an assignment that never arrives, then it rejoins. That is
one or more extra rounds of Tansu's session/2 join hold (docs/operations.md): 7.1 s instead
of 2.0 s for a 3 s session, and minutes with Faust's 60 s default.
:func:`patch_aiokafka_leave_group` makes aiokafka also leave from generation 0. It changes
nothing on Kafka, where generations start at 1. Checked against aiokafka 0.14.0.
"""

from __future__ import annotations

from typing import Any

__all__ = ["patch_aiokafka_leave_group", "leave_group_patched"]

_LEAVE_PATCH_FLAG = "_fraudstream_leave_gen0"


def patch_aiokafka_leave_group() -> bool:
    """Make aiokafka send LeaveGroup when it stops in generation 0.

    aiokafka 0.14 ``GroupCoordinator._maybe_leave_group`` only leaves when
    ``self.generation > 0``. That is right for Kafka (generations start at
    1) and wrong for Tansu (they start at 0). The wrapper moves generation 0
    to 1 just before delegating. ``LeaveGroupRequest`` carries only the group
    id and member id, and the original resets the generation afterwards
    anyway. Static members (``group_instance_id``) are left alone, as in
    aiokafka. The patch is process-wide and idempotent, and it also helps
    plain aiokafka consumers in the same process. Returns ``True`` the first
    time it patches.
    """
    from aiokafka.consumer import group_coordinator as _gc

    cls = _gc.GroupCoordinator
    original = cls._maybe_leave_group
    if getattr(original, _LEAVE_PATCH_FLAG, False):
        return False

    async def _maybe_leave_group(self: Any) -> None:
        if (
            self.generation == 0
            and self._group_instance_id is None
            and self.member_id  # "" == JoinGroupRequest.UNKNOWN_MEMBER_ID
        ):
            self.generation = 1  # let the original send LeaveGroup
        await original(self)

    setattr(_maybe_leave_group, _LEAVE_PATCH_FLAG, True)
    _maybe_leave_group.__wrapped__ = original  # type: ignore[attr-defined]
    _maybe_leave_group.__doc__ = original.__doc__
    cls._maybe_leave_group = _maybe_leave_group  # type: ignore[method-assign]
    return True



def leave_group_patched() -> bool:
    """Whether :func:`patch_aiokafka_leave_group` is in force in this process."""
    from aiokafka.consumer import group_coordinator as _gc

    return bool(getattr(_gc.GroupCoordinator._maybe_leave_group, _LEAVE_PATCH_FLAG, False))
