"""The state store: the one owner of the SQLite schema and of every SQL statement."""
