"""URL converters: what a path segment may be before any code sees it."""

from __future__ import annotations

from werkzeug.routing import IntegerConverter, ValidationError

# Row ids are 32-bit integers on PostgreSQL (and SQLite refuses ints past 64 bits): a larger
# number in a URL matches no row, so it is a 404 here, not a database error later.
ROW_ID_MAX = 2**31 - 1


class RowIdConverter(IntegerConverter):
    """``<id:call_id>``: a positive row id, else no such page (404)."""

    regex = r"[0-9]{1,10}"  # \d would take other scripts' digits too ("１")

    def to_python(self, value: str) -> int:
        n = int(value)
        if not 1 <= n <= ROW_ID_MAX:
            raise ValidationError()
        return n
