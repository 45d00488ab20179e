"""kaiju.keys: the hash tags that keep related Redis keys on one Cluster slot."""

from __future__ import annotations

from kaiju import keys


def test_hash_tag_follows_redis_rules():
    assert keys.hash_tag("a.{b}.c") == "b"
    assert keys.hash_tag("a.{b}.{c}") == "b"  # the first tag counts
    assert keys.hash_tag("a.{}.{c}") is None  # an empty first tag: the whole key is hashed
    assert keys.hash_tag("a.{b") is None
    assert keys.hash_tag("plain") is None


def test_tagged_keeps_a_keys_own_tag_else_tags_it_whole():
    assert keys.tagged("p.", "user.1") == "p.{user.1}"
    assert keys.tagged("p.", "order.{7}.lines") == "p.order.{7}.lines"
    assert keys.tagged("p.", "odd{") == "p.{odd{}"


def test_companion_keys_share_their_tag():
    for key in ["user.1", "order.{7}.lines", "a}b", "x{y", "{}z"]:
        value, fill = keys.tagged("ns._cache.", key), keys.tagged("ns._cache_fill.", key)
        assert keys.hash_tag(value) == keys.hash_tag(fill) is not None
