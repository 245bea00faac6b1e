"""Pool-wide politeness: the cap on POs in flight, halving on throttling, gradual recovery."""

from coupad.throttle import FIRST_PAUSE, MAX_PAUSE, Throttle


def test_full_cap_when_nothing_went_wrong():
    throttle = Throttle(limit=8)
    assert throttle.allowed(in_flight=0, now=0) == 8
    assert throttle.allowed(in_flight=6, now=0) == 2
    assert throttle.allowed(in_flight=9, now=0) == 0


def test_throttled_halves_the_cap_and_pauses_every_start():
    throttle = Throttle(limit=8)
    throttle.throttled(now=100, retry_after=None)
    assert throttle.cap == 4
    assert throttle.allowed(0, now=100 + FIRST_PAUSE - 0.1) == 0
    assert throttle.allowed(0, now=100 + FIRST_PAUSE) == 4


def test_retry_after_longer_than_the_backoff_is_honoured():
    throttle = Throttle(limit=8)
    throttle.throttled(now=0, retry_after=30)
    assert throttle.allowed(0, now=29.9) == 0
    assert throttle.allowed(0, now=30) == 4


def test_throttles_in_a_row_double_the_pause_up_to_the_cap_and_never_below_one_po():
    throttle = Throttle(limit=8)
    pauses = []
    for n in range(12):
        now = n * 1000.0
        throttle.throttled(now=now, retry_after=None)
        pauses.append(throttle.paused_until - now)
    assert pauses[:4] == [FIRST_PAUSE, 2 * FIRST_PAUSE, 4 * FIRST_PAUSE, 8 * FIRST_PAUSE]
    assert max(pauses) == MAX_PAUSE
    assert throttle.cap == 1.0


def test_successes_bring_the_cap_back_gradually():
    throttle = Throttle(limit=8)
    for wave in range(3):  # three waves, each after the previous pause ended
        throttle.throttled(now=wave * 1000.0, retry_after=None)
    assert throttle.cap == 1.0
    caps = []
    for _ in range(40):
        throttle.succeeded()
        caps.append(throttle.cap)
    assert caps == sorted(caps)  # never drops without a throttle
    assert caps[0] < 3  # not all at once
    assert caps[-1] == 8.0 and not throttle.slowed
    assert throttle.streak == 0


def test_min_interval_spaces_starts_one_at_a_time():
    throttle = Throttle(limit=8, min_interval=2.0)
    assert throttle.allowed(0, now=10) == 1
    throttle.started(1, now=10)
    assert throttle.allowed(1, now=11) == 0
    assert throttle.allowed(1, now=12) == 1


def test_pos_throttled_in_the_same_wave_count_once():
    throttle = Throttle(limit=8)
    for _ in range(6):  # six tabs in flight meet the same storm
        throttle.throttled(now=100, retry_after=None)
    assert throttle.cap == 4 and throttle.streak == 1
    assert throttle.paused_until == 100 + FIRST_PAUSE
    throttle.throttled(now=101, retry_after=10)
    assert throttle.paused_until == 111 and throttle.cap == 4


def test_a_worker_takes_more_pos_only_while_some_watch_and_never_past_watching_tabs():
    from coupad.pool import Slot
    from coupad.states import WorkerState

    slot = Slot(index=1, tabs=3, state=WorkerState.BUSY, watching_tabs=2)
    slot.in_flight = {"a": 1, "b": 2, "c": 3}
    assert (slot.working, slot.room) == (3, 0)
    slot.watching = frozenset({"a"})
    assert (slot.working, slot.room) == (2, 1)
    slot.in_flight["d"] = 4
    slot.watching = frozenset({"a", "b", "c", "gone"})  # a key no longer held never counts
    assert (slot.working, slot.room) == (1, 1)  # 3 watch, but only 2 beyond tabs: 5 at most
    slot.in_flight["e"] = 5
    assert slot.room == 0
    slot.draining = True
    slot.watching = frozenset(slot.in_flight)
    assert slot.room == 0
    slot.draining, slot.watching_tabs = False, 0
    assert slot.room == 0 and slot.working == 0


def test_free_tabs_is_tabs_working_plus_watching_up_to_watching_tabs():
    from coupad.throttle import free_tabs

    assert free_tabs(3, 1, held=3, watching=0) == 0
    assert free_tabs(3, 1, held=3, watching=2) == 1  # one more, not two
    assert free_tabs(3, 0, held=3, watching=3) == 0
    assert free_tabs(3, 2, held=1, watching=1) == 3
