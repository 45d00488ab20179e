import pytest

from kaiju.runtime.graph import CycleError, dependents, layers


def test_layers_order_dependencies_first():
    graph = {"api": {"db", "cache"}, "cache": {"db"}, "db": set(), "worker": set()}
    assert layers(graph) == [["db", "worker"], ["cache"], ["api"]]


def test_layers_of_empty_graph():
    assert layers({}) == []


def test_cycle_is_named():
    with pytest.raises(CycleError) as info:
        layers({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()})
    assert info.value.cycle == ["a", "b", "c", "a"]
    assert "a -> b -> c -> a" in str(info.value)


def test_self_cycle():
    with pytest.raises(CycleError) as info:
        layers({"a": {"a"}})
    assert info.value.cycle == ["a", "a"]


def test_unknown_node():
    with pytest.raises(KeyError, match="needs unknown"):
        layers({"a": {"ghost"}})


def test_dependents_are_transitive():
    graph = {"api": {"cache"}, "cache": {"db"}, "db": set(), "other": set()}
    assert dependents(graph, ["db"]) == {"cache", "api"}
    assert dependents(graph, ["other"]) == set()
