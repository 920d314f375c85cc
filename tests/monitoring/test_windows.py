"""Windows from durations: the one grammar of app.config, parsed text or an already parsed Duration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.config import DRIFT_METHODS, NUMERIC_ONLY_DRIFT_METHODS, Duration
from app.errors import InvalidInput
from app.monitoring import drift_tests
from app.monitoring.windows import TimeWindow

NOW = datetime(2026, 1, 2, 12, tzinfo=UTC)


def test_a_window_spans_its_duration_whatever_form_it_comes_in():
    expected = TimeWindow(NOW - timedelta(minutes=90), NOW)
    assert TimeWindow.last("90m", NOW) == expected
    assert TimeWindow.last(Duration("1.5h"), NOW) == expected
    assert TimeWindow.last(timedelta(minutes=90), NOW) == expected
    # Only an end: the default window before it; naive times are UTC.
    window = TimeWindow.resolve(None, datetime(2026, 1, 2, 12), None, Duration("1d"), NOW)
    assert window == TimeWindow(NOW - timedelta(days=1), NOW)


@pytest.mark.parametrize("text", ["soon", "0h", "45", "99999w", "28009342507.8h"])
def test_text_that_is_no_duration_is_invalid_input_naming_the_field(text):
    with pytest.raises(InvalidInput) as caught:
        TimeWindow.resolve(None, None, text, Duration("24h"), NOW)
    assert caught.value.details[0]["field"] == "last"
    assert text not in caught.value.message  # the client's text is not echoed


def test_settings_name_exactly_the_drift_tests_the_engine_has():
    """app.config lists the test names so it need not import monitoring; the lists must agree."""
    assert set(DRIFT_METHODS) == set(drift_tests.METHODS)
    assert NUMERIC_ONLY_DRIFT_METHODS == drift_tests.NUMERIC_ONLY
