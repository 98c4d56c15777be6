"""The taxonomy file: the shipped default, prompt expansion, fingerprints and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.taxonomy import TaxonomyError, load_taxonomy, parse_taxonomy


def test_default_taxonomy_has_the_driving_groups() -> None:
    taxonomy = load_taxonomy()
    groups = {g.name: g.labels for g in taxonomy.groups}
    assert groups == {
        "weather": ("weather_clear", "weather_rain", "weather_snow", "weather_fog"),
        "time_of_day": ("time_of_day_day", "time_of_day_night"),
        "scene": ("scene_highway", "scene_urban", "scene_rural"),
    }
    assert [t.label for t in taxonomy.independent_tags] == ["glare"]
    assert taxonomy.neutral_prompts
    assert taxonomy.image_labels[:4] == groups["weather"]
    assert taxonomy.group_of("weather_rain") is taxonomy.groups[0]
    assert taxonomy.group_of("glare") is None


def test_default_object_classes_map_coco_and_synthetic_labels() -> None:
    classes = load_taxonomy().object_classes
    assert classes["person"] == "pedestrian"
    assert classes["stop sign"] == "traffic_sign_stop"
    assert classes["truck"] == "car_truck"
    assert classes["synthetic_car"] == "car"
    assert "traffic_sign_stop" in load_taxonomy().object_labels


def test_prompts_are_templates_times_phrases() -> None:
    taxonomy = parse_taxonomy(
        {
            "templates": ["a {}.", "the {}!"],
            "groups": [
                {"name": "g", "tags": [{"label": "g_a", "phrases": ["x", "y"]}, {"label": "g_b"}]}
            ],
        }
    )
    a, b = taxonomy.groups[0].tags
    assert a.prompts == ("a x.", "a y.", "the x!", "the y!")
    assert b.prompts == ("a g b.", "the g b!")  # the label's words stand in for phrases


def test_fingerprint_is_stable_and_tracks_prompts() -> None:
    raw = {"groups": [{"name": "g", "tags": [{"label": "a"}, {"label": "b"}]}]}
    changed = {
        "groups": [{"name": "g", "tags": [{"label": "a", "phrases": ["z"]}, {"label": "b"}]}]
    }
    assert parse_taxonomy(raw).fingerprint() == parse_taxonomy(raw).fingerprint()
    assert parse_taxonomy(raw).fingerprint() != parse_taxonomy(changed).fingerprint()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"groups": [{"name": "g", "tags": [{"label": "a"}]}]}, "at least two tags"),
        ({"groups": [{"name": "g", "tags": [{"label": "a"}, {"label": "a"}]}]}, "more than once"),
        ({"independent_tags": [{"label": "Bad-Label"}], "neutral_prompts": ["x"]}, "lower-case"),
        ({"independent_tags": [{"label": "a"}]}, "neutral_prompts"),
        ({"templates": ["no placeholder"]}, "placeholder"),
        ({"object_classes": {"person": 3}}, "object_classes"),
    ],
)
def test_invalid_taxonomies_are_rejected(raw: dict[str, object], message: str) -> None:
    with pytest.raises(TaxonomyError, match=message):
        parse_taxonomy(raw)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "t.toml"
    broken.write_text("groups = [")
    with pytest.raises(TaxonomyError, match=str(broken)):
        load_taxonomy(broken)
    with pytest.raises(TaxonomyError, match="cannot read"):
        load_taxonomy(tmp_path / "missing.toml")
