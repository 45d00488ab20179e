import pytest

from kaiju.config.errors import PathError
from kaiju.config.merge import merge_layers, normalize_services


def test_mappings_are_deep_merged_and_later_wins():
    merged, _ = merge_layers(
        [
            ("a.yml", {"main": {"name": "a", "env": "dev"}, "etc": {"x": {"y": 1, "z": 2}}}),
            ("b.yml", {"main": {"env": "prod"}, "etc": {"x": {"z": 3}}}),
        ]
    )
    assert merged == {"main": {"name": "a", "env": "prod"}, "etc": {"x": {"y": 1, "z": 3}}}


def test_lists_are_replaced():
    merged, _ = merge_layers(
        [("a", {"packages": ["p1", "p2"], "etc": {"l": [1, 2]}}), ("b", {"packages": ["p3"], "etc": {"l": []}})]
    )
    assert merged == {"packages": ["p3"], "etc": {"l": []}}


def test_a_mapping_replaces_a_scalar_and_back():
    merged, _ = merge_layers([("a", {"etc": {"x": 1, "y": {"k": 1}}}), ("b", {"etc": {"x": {"k": 2}, "y": 3}})])
    assert merged == {"etc": {"x": {"k": 2}, "y": 3}}


def test_services_are_concatenated_and_bare_names_expanded():
    merged, _ = merge_layers(
        [
            ("a", {"services": ["Echo", {"cls": "HTTPServer", "name": "http"}]}),
            ("b", {"services": [{"cls": "Other"}]}),
        ]
    )
    assert merged["services"] == [{"cls": "Echo"}, {"cls": "HTTPServer", "name": "http"}, {"cls": "Other"}]


def test_service_with_an_earlier_name_updates_that_entry():
    merged, _ = merge_layers(
        [
            ("a", {"services": [{"cls": "HTTPServer", "name": "http", "settings": {"port": 80, "host": "h"}}, "Echo"]}),
            ("b", {"services": [{"name": "http", "enabled": False, "settings": {"port": 81}}]}),
        ]
    )
    assert merged["services"] == [
        {"cls": "HTTPServer", "name": "http", "enabled": False, "settings": {"port": 81, "host": "h"}},
        {"cls": "Echo"},
    ]


def test_unnamed_service_with_an_earlier_class_updates_that_entry():
    merged, _ = merge_layers(
        [("a", {"services": ["Echo"]}), ("b", {"services": [{"cls": "Echo", "settings": {"x": 1}}]})]
    )
    assert merged["services"] == [{"cls": "Echo", "settings": {"x": 1}}]


def test_same_name_twice_in_one_layer_is_an_error():
    with pytest.raises(PathError) as info:
        merge_layers([("a.yml", {"services": [{"cls": "A", "name": "x"}, {"cls": "B", "name": "x"}]})])
    assert info.value.source == "a.yml"
    assert info.value.path == ("services", 1)
    assert 'duplicate service name "x"' in info.value.message


def test_services_not_a_list_is_an_error():
    with pytest.raises(PathError) as info:
        normalize_services({"cls": "A"}, "a.yml")
    assert (info.value.path, info.value.message) == (("services",), "expected a list, got a mapping")


def test_inputs_are_not_modified():
    first = {"main": {"name": "a"}, "services": [{"cls": "A", "settings": {"x": 1}}]}
    second = {"main": {"name": "b"}, "services": [{"cls": "A", "settings": {"x": 2}}]}
    merge_layers([("a", first), ("b", second)])
    assert first == {"main": {"name": "a"}, "services": [{"cls": "A", "settings": {"x": 1}}]}


def test_origins_record_the_source_of_each_set_key():
    _, origins = merge_layers(
        [
            ("a", {"main": {"name": "a"}, "services": [{"cls": "A", "settings": {"x": 1}}], "etc": {"l": [1]}}),
            ("b", {"main": {"env": "p"}, "services": [{"cls": "A", "settings": {"y": 1}}, "B"], "etc": {"l": [2]}}),
        ]
    )
    assert origins[()] == "a"
    assert origins[("main",)] == "a"
    assert origins[("main", "env")] == "b"
    assert origins[("services", 0)] == "a"
    assert origins[("services", 0, "settings", "y")] == "b"
    assert origins[("services", 1)] == "b"
    assert origins[("etc", "l")] == "b"


def test_empty_top_level_sections_add_nothing():
    first = {"main": {"name": "a"}, "services": ["A"], "etc": {"x": 1}}
    merged, _ = merge_layers([("a", first), ("b", {"services": None, "etc": None})])
    assert merged == {"main": {"name": "a"}, "services": [{"cls": "A"}], "etc": {"x": 1}}
