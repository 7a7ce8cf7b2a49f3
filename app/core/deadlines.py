"""Art. 12(3) GDPR: answer within one month of receipt, extendable by two further months."""

from __future__ import annotations

import calendar
import math
from datetime import datetime


def add_months(moment: datetime, months: int) -> datetime:
    """Same day-of-month `months` later, clamped to the month's end (31 Jan + 1 → 28 Feb)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def days_left(due_at: datetime, now: datetime) -> int:
    """Whole days until the deadline, rounded up; negative once overdue."""
    return math.ceil((due_at - now).total_seconds() / 86400)
