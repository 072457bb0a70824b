"""Full-text search over one user's messages (text and transcripts) with SQLite FTS5.

    fts_query("red 'cat") -> '"red" "cat"'      every term quoted: FTS syntax never leaks
    search(conn, user_key, query, limit, highlight) -> list[SearchHit]

What people type is never handed to FTS5 as syntax: words become quoted terms that must all
appear (in any order); a "quoted phrase" (balanced quotes) must appear as written; a word
ending in * matches as a prefix (`pho*` finds "photo"). Everything else (unbalanced quotes,
parentheses, AND/OR/NEAR, column filters, stray punctuation) is treated as plain text.
Results are ranked by bm25 (text weighs more than transcripts) with a snippet around the
best match.
"""

from __future__ import annotations

import re
import sqlite3

from chat_app.store.records import SearchHit

MAX_TERMS = 16
_TOKEN_RE = re.compile(r'"([^"]*)"|(\w+)(\*?)', re.UNICODE)
_WORD_RE = re.compile(r"\w+", re.UNICODE)

_SEARCH_SQL = """
SELECT c.public_id AS conversation_id, c.title AS conversation_title,
       m.public_id AS message_id, m.role, m.created,
       snippet(messages_fts, -1, ?, ?, '…', 12) AS snippet,
       bm25(messages_fts, 1.0, 0.6) AS rank
FROM messages_fts
JOIN messages m ON m.id = messages_fts.rowid
JOIN conversations c ON c.id = m.conversation_id
JOIN users u ON u.id = c.user_id
WHERE messages_fts MATCH ? AND u.user_key = ?
ORDER BY rank, m.created DESC
LIMIT ?
"""


def _quote(words: list[str]) -> str:
    return '"' + " ".join(words) + '"'


def fts_query(text: str) -> str:
    """An FTS5 MATCH expression for what a person typed ("" when there is nothing to find)."""
    if text.count('"') % 2:  # unbalanced: quotes mean nothing
        text = text.replace('"', " ")
    terms = []
    for match in _TOKEN_RE.finditer(text):
        phrase, word, star = match.groups()
        if phrase is not None:
            words = _WORD_RE.findall(phrase)
            if words:
                terms.append(_quote(words))
        elif word:
            terms.append(_quote([word]) + star)
    return " ".join(terms[:MAX_TERMS])


def search(
    conn: sqlite3.Connection, user_key: str, query: str, limit: int = 20, highlight: tuple[str, str] = ("**", "**")
) -> list[SearchHit]:
    """The user's messages matching `query`, best first."""
    expression = fts_query(query)
    if not expression or limit < 1:
        return []
    rows = conn.execute(_SEARCH_SQL, (highlight[0], highlight[1], expression, user_key, limit)).fetchall()
    return [
        SearchHit(
            conversation_id=row["conversation_id"],
            conversation_title=row["conversation_title"],
            message_id=row["message_id"],
            role=row["role"],
            snippet=row["snippet"],
            score=-row["rank"],
            created=row["created"],
        )
        for row in rows
    ]
