"""The public API is exactly what ``__all__`` says, and each member says where it lives."""

from __future__ import annotations

import types

import seedance_otel


def test_all_lists_every_public_member_and_nothing_else():
    public = {
        name
        for name, value in vars(seedance_otel).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(seedance_otel.__all__) == public | {"__version__"}


def test_exported_members_are_documented_as_the_package_s_own():
    for name in seedance_otel.__all__:
        member = getattr(seedance_otel, name)
        if name == "__version__":
            assert isinstance(member, str) and member
            continue
        assert member.__module__.startswith("seedance_otel"), name
        assert (member.__doc__ or "").strip(), f"{name} has no docstring"
