"""Reading a teacher answer store from outside the job that writes it (kill-and-resume tests)."""

import sqlite3


def answered_keys(path):
    """Answered keys in the store; none while the file or its table does not exist yet (the teacher is starting)."""
    if not path.exists():
        return set()
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            return {row[0] for row in connection.execute("SELECT key FROM answers WHERE answer IS NOT NULL")}
    except sqlite3.OperationalError:  # created but its table not yet, or locked mid-write: not there yet
        return set()
