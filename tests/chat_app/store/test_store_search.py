"""Full-text search: bm25 ranking, snippets, transcripts, index upkeep, and whatever people type."""

from __future__ import annotations

import pytest

from chat_app.store.search import fts_query


@pytest.fixture
def chat(store):
    """alice's conversations about volcanoes, giraffes and coffee."""
    c1 = store.create_conversation("alice", title="Geology").id
    c2 = store.create_conversation("alice", title="Zoo").id
    store.append_message("alice", c1, "user", "Volcano volcano volcano!")
    store.append_message(
        "alice",
        c1,
        "assistant",
        "A volcano is an opening in the crust of a "
        "planet through which lava, ash and gases escape; many of them sit "
        "along the edges of tectonic plates and some erupt every year.",
    )
    store.append_message("alice", c2, "user", "", transcript="how tall is a giraffe")
    store.append_message("alice", c2, "assistant", "A red cat sleeps. The café is open.")
    store.append_message("alice", c2, "user", "Is the cat red?")
    return store, c1, c2


def test_results_are_ranked_by_bm25(chat):
    store, c1, _ = chat
    hits = store.search("alice", "volcano")
    assert len(hits) == 2 and all(h.conversation_id == c1 for h in hits)
    assert hits[0].snippet == "**Volcano** **volcano** **volcano**!"  # dense short one first
    assert hits[0].score > hits[1].score > 0
    assert hits[0].conversation_title == "Geology" and hits[0].role == "user"


def test_snippets_are_short_and_use_the_given_markers(chat):
    store, *_ = chat
    hit = store.search("alice", "tectonic", highlight=("<b>", "</b>"))[0]
    assert "<b>tectonic</b>" in hit.snippet and hit.snippet.startswith("…")
    assert len(hit.snippet.split()) <= 14


def test_transcripts_are_searched(chat):
    store, _, c2 = chat
    [hit] = store.search("alice", "giraffe")
    assert hit.conversation_id == c2 and "**giraffe**" in hit.snippet


def test_all_terms_must_match_and_phrases_keep_their_order(chat):
    store, *_ = chat
    assert len(store.search("alice", "red cat")) == 2
    assert [h.snippet for h in store.search("alice", '"red cat"')] == ["A **red cat** sleeps. The café is open."]
    assert store.search("alice", "volcano giraffe") == []


def test_prefixes_diacritics_and_limits(chat):
    store, *_ = chat
    assert len(store.search("alice", "volc*")) == 2
    assert store.search("alice", "volc") == []
    assert len(store.search("alice", "cafe")) == 1  # "café"
    assert len(store.search("alice", "volcano", limit=1)) == 1
    assert store.search("alice", "volcano", limit=0) == []


@pytest.mark.parametrize(
    "query",
    [
        '"unbalanced',
        'cat"',
        '"',
        '""',
        "(",
        ")",
        "*",
        "AND",
        "a OR",
        "NOT cat",
        "NEAR(cat red)",
        "text:cat",
        "transcript : giraffe",
        "^cat",
        "-cat",
        "cat + red",
        "{text transcript}: cat",
        "'; DROP TABLE messages; --",
        "🎉 party",
        "x" * 5000,
        "\x00",
        "cat " * 100,
        "\\",
        "'",
    ],
)
def test_odd_queries_never_crash(chat, query):
    store, *_ = chat
    hits = store.search("alice", query)
    assert isinstance(hits, list)
    assert len(store.search("alice", "volcano")) == 2  # and nothing was harmed


def test_empty_queries_find_nothing(chat):
    store, *_ = chat
    for query in ("", "   ", "?!.", '""'):
        assert store.search("alice", query) == []


def test_operators_are_plain_words(store):
    conversation = store.create_conversation("u").id
    store.append_message("u", conversation, "user", "cats AND dogs")
    store.append_message("u", conversation, "user", "cats or dogs")
    assert [h.snippet for h in store.search("u", "cats AND dogs")] == ["**cats** **AND** **dogs**"]


def test_the_index_follows_edits_and_deletes(chat):
    store, c1, c2 = chat
    reply = store.begin_reply("alice", c2)
    store.update_reply("alice", reply, "thinking about penguins")
    assert len(store.search("alice", "penguins")) == 1
    store.finish_reply("alice", reply, "Walruses, actually.")
    assert store.search("alice", "penguins") == []
    assert len(store.search("alice", "walruses")) == 1
    store.delete_from("alice", reply)
    assert store.search("alice", "walruses") == []
    store.delete_conversation("alice", c1)
    assert store.search("alice", "volcano") == []
    check = store.db  # the FTS index agrees with the messages table
    with check.write() as conn:
        conn.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")


def test_fts_query_quotes_every_term():
    assert fts_query("red cat") == '"red" "cat"'
    assert fts_query('"red cat" pho*') == '"red cat" "pho"*'
    assert fts_query('"unbalanced quote') == '"unbalanced" "quote"'
    assert fts_query("NEAR(a b) col:x") == '"NEAR" "a" "b" "col" "x"'
    assert fts_query("?!") == ""
