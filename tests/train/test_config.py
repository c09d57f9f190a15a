"""Typed TOML configs: every shipped config loads; bad values fail with the value quoted."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr_core.config import apply_budget, apply_overrides, config_from_dict, load_config, parse_override
from cxr_core.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "train" / "configs").rglob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_is_valid(path):
    config = load_config(path)
    assert config.name and config.fingerprint()
    for budget in config.budgets:
        apply_budget(config, budget)


@pytest.mark.parametrize("raw, quoted", [
    ({"model": {"backbone": "vgg99"}}, "'vgg99'"),
    ({"data": {"image_size": 8}}, "8"),
    ({"train": {"learning_rate": -1.0}}, "-1.0"),
    ({"train": {"epochs": "ten"}}, "'ten'"),
    ({"data": {"balancing": "smote"}}, "'smote'"),
    ({"model": {"colour": 3}}, "colour"),
    ({"name": "bad name!"}, "'bad name!'"),
    ({"guards": {"appearance_epochs": 0}}, "guards.appearance_epochs = 0"),
    ({"guards": {"appearance_min_steps": 100_001}}, "100001"),
    ({"guards": {"appearance_epoch": 3}}, "appearance_epoch"),
    ({"train": {"seeds": [1]}}, "train.seeds = [1]"),
    ({"train": {"seeds": [1, 1]}}, "[1, 1]"),
    ({"train": {"seeds": [1, 2]}, "data": {"folds": 2}}, "not both"),
])
def test_bad_values_are_rejected_with_the_value_quoted(raw, quoted):
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert quoted in str(err.value)


def test_overrides_and_budgets_change_the_fingerprint():
    base = config_from_dict({"budget": {"small": {"data": {"image_size": 64}, "train": {"epochs": 1}}}})
    small = apply_budget(base, "small")
    assert (small.data.image_size, small.train.epochs) == (64, 1)
    assert small.fingerprint() != base.fingerprint()
    assert apply_overrides(base, {"train.epochs": 3}).train.epochs == 3
    assert parse_override("model.filters=[8, 16]") == ("model.filters", [8, 16])
    with pytest.raises(ConfigError, match="not defined"):
        apply_budget(base, "huge")
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("nonsense")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_a_seeded_ensembles_members_are_the_recipes_single_runs(tiny_data):
    """Member i is the recipe with train.seed = seeds[i]: the member with the recipe's own seed has the single
    run's name and fingerprint (an already trained single run is reused), the others differ by seed alone."""
    from train.ensemble import member_config

    single = config_from_dict({"name": "r", "train": {"seed": 1}})
    ensemble = apply_overrides(single, {"train.seeds": [1, 7]})
    assert ensemble.member_count() == 2 and single.member_count() == 0
    assert ensemble.fingerprint() != single.fingerprint()
    first, second = member_config(ensemble, 0), member_config(ensemble, 1)
    assert (first.name, first.fingerprint()) == ("r", single.fingerprint())
    assert (second.name, second.fingerprint()) == ("r-seed7", apply_overrides(single, {"train.seed": 7}).fingerprint())
    with pytest.raises(ConfigError, match="--member 2"):
        member_config(ensemble, 2)
    with pytest.raises(ConfigError, match="an ensemble config"):
        member_config(single, 0)
