import pytest

from lowcomm.runtime.membership import parse_membership


def test_join_and_leave_change_the_live_set_only_at_boundaries():
    m = parse_membership({4: "join", 8: ["leave 0", "join"]}, initial_workers=2,
                         inner_steps=4, steps=12)
    assert m.live_at(0) == m.live_at(3) == (0, 1)
    assert m.live_at(4) == m.live_at(7) == (0, 1, 2)
    assert m.live_at(8) == m.live_at(11) == (1, 2, 3)
    assert m.total_ids == 4
    assert m.changes_at(8) == (("leave", 0), ("join", 3))
    assert m.changes_at(5) == ()


def test_no_schedule_is_static():
    m = parse_membership(None, initial_workers=3, inner_steps=2, steps=6)
    assert m.live_at(5) == (0, 1, 2) and m.total_ids == 3


@pytest.mark.parametrize("schedule, words", [
    ({3: "join"}, "not an outer-step boundary"),
    ({0: "join"}, "not an outer-step boundary"),
    ({12: "join"}, "not an outer-step boundary"),
    ({4: "leave 5"}, "not live"),
    ({4: "quit"}, "must be 'join' or 'leave W'"),
    ({4: ["leave 0", "leave 1"]}, "no live worker"),
])
def test_bad_schedules_fail_with_one_line(schedule, words):
    with pytest.raises(ValueError, match=words):
        parse_membership(schedule, initial_workers=2, inner_steps=4, steps=12)
