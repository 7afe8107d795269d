import json

import pytest

from fjord.core.data import schema as schemas


def test_presets_load_and_match_the_published_glacial_colours():
    glacial = schemas.preset_schema("glacial")
    assert [c["value"] for c in glacial["classes"]] == list(range(1, 8))
    assert glacial["classes"][0] == {"value": 1, "name": "open water", "color": "#03719c"}
    assert glacial["classes"][4]["color"] == "#f5fffa"  # mintcream
    assert len(schemas.preset_schema("corine")["classes"]) == 13
    assert [c["name"] for c in schemas.preset_schema("glacier_debris")["classes"]] == [
        "clean ice", "debris-covered ice", "background"]


def test_csv_schema(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("value,name,color\n3,rock,#775B5A\n1,water,blue\n".replace("blue", "#0000ff"))
    s = schemas.load_schema(str(path))
    assert [(c["value"], c["name"], c["color"]) for c in s["classes"]] == [
        (1, "water", "#0000ff"), (3, "rock", "#775b5a")]


@pytest.mark.parametrize("classes, words", [
    ([{"value": 1, "name": "a"}, {"value": 1, "name": "b"}], "appears twice"),
    ([{"value": 0, "name": "a"}], "0 means unlabelled"),
    ([{"value": 1, "name": "a", "colour": "#ffffff"}], "unknown keys"),
    ([{"value": 1, "name": "a", "color": "bluish"}], "not a hex colour"),
    ([], "no classes"),
])
def test_bad_schemas_are_refused_with_a_reason(tmp_path, classes, words):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"name": "x", "classes": classes}))
    with pytest.raises(schemas.SchemaError, match=words):
        schemas.load_schema(str(path))


def test_unknown_top_level_key_is_refused():
    with pytest.raises(schemas.SchemaError, match="unknown keys"):
        schemas.validate_schema({"classes": [{"value": 1, "name": "a"}], "colours": {}})


def test_made_up_schemas():
    s = schemas.schema_from_names(["water", "farm", "water", "forest"])
    assert [(c["value"], c["name"]) for c in s["classes"]] == [(1, "farm"), (2, "forest"), (3, "water")]
    assert len({c["color"] for c in s["classes"]}) == 3
    v = schemas.schema_from_values([7, 2, 7])
    assert [(c["value"], c["name"]) for c in v["classes"]] == [(2, "class 2"), (7, "class 7")]


def test_qml_lists_every_class_and_leaves_unlabelled_transparent():
    qml = schemas.paletted_qml(schemas.preset_schema("glacial"))
    assert qml.count("<paletteEntry") == 7
    assert 'value="0"' not in qml
    assert 'label="mélange"' in qml and 'color="#6fe1e5"' in qml
    assert schemas.category_names(schemas.preset_schema("glacial"))[:2] == ["unlabelled", "open water"]
