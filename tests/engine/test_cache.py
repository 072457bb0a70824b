"""The engine's one LRU cache, and incremental detokenizing through tokenizers' DecodeStream."""

import threading
import time

import pytest
from tiny_models import tiny_tokenizer

from engine.cache import LRUCache, content_digest


def test_least_recently_used_entries_go_first():
    cache = LRUCache(maxsize=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the oldest
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3 and len(cache) == 2


def test_a_weighed_cache_keeps_its_total_under_the_limit():
    cache = LRUCache(maxsize=10, weigh=len)
    cache.put("a", "xxxx")
    cache.put("b", "yyyy")
    cache.put("c", "zzzz")
    assert "a" not in cache and "b" in cache and "c" in cache
    cache.put("huge", "w" * 11)  # larger than the whole cache: not kept, nothing evicted for it
    assert "huge" not in cache and len(cache) == 2


def test_concurrent_requests_for_one_key_compute_it_once():
    cache, calls = LRUCache(), []

    def slow():
        calls.append(1)
        time.sleep(0.1)
        return "done"

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_compute("k", slow))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["done"] * 4 and calls == [1]


def test_a_failed_computation_is_not_cached():
    cache = LRUCache()
    with pytest.raises(ValueError):
        cache.get_or_compute("k", lambda: (_ for _ in ()).throw(ValueError("no")))
    assert cache.get_or_compute("k", lambda: 7) == 7


def test_content_digest_is_the_same_for_a_file_and_its_bytes(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"hello")
    assert content_digest(path) == content_digest(b"hello") == content_digest(str(path))
    assert content_digest(tmp_path / "missing") is None


def test_streamed_pieces_are_valid_text_and_add_up_to_the_decoded_reply():
    tokenizer = tiny_tokenizer()
    ids = tokenizer.encode("naïve café — 日本 🎉 ok")
    decoder = tokenizer.incremental_decoder()
    pieces = [decoder.push(i) for i in ids]
    assert "".join(pieces) + decoder.flush() == tokenizer.decode(ids)
    assert all("\ufffd" not in piece for piece in pieces)
    cut = tokenizer.incremental_decoder()  # a character cut off at the end comes out at flush
    held = "".join(cut.push(i) for i in tokenizer.encode("🎉")[:-1])
    assert held == "" and cut.flush().startswith("\ufffd")
