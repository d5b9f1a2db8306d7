"""Configuration: validation errors name the parameter; YAML round trip."""

import math

import pytest
import yaml

from finsim_mesa import ConfigError, FinancialModel, ModelConfig, load_config, make_config


@pytest.mark.parametrize(("params", "needle"), [
    ({"n_banks": 1}, "n_banks = 1"),
    ({"capital_ratio": -0.1}, "capital_ratio = -0.1"),
    ({"base_rate": -0.01}, "base_rate"),
    ({"core_fraction": 1.5}, "core_fraction"),
    ({"price_floor": 0}, "price_floor"),
    ({"deposit_rate": math.nan}, "deposit_rate"),
    ({"n_banks": math.nan}, "n_banks"),
    ({"mean_degree": math.inf}, "mean_degree"),
    ({"topology": "ring"}, "topology"),
    ({"capital_requirement": 0.2, "capital_ratio": 0.1}, "capital_requirement (0.2)"),
    ({"interbank_share": 0.6, "liquidity_share": 0.5}, "interbank_share + liquidity_share"),
    ({"n_banks": 3, "edges_per_node": 3}, "edges_per_node"),
    ({"capital_ratoi": 0.1}, "did you mean 'capital_ratio'"),
])
def test_bad_parameters_name_the_parameter(params, needle):
    with pytest.raises(ConfigError) as err:
        make_config(None, **params)
    assert needle in str(err.value)


def test_model_rejects_bad_input_before_building():
    with pytest.raises(ConfigError, match="n_banks"):
        FinancialModel(n_banks=0)
    with pytest.raises(ConfigError, match="unknown scenario"):
        FinancialModel(n_banks=5, scenario="meltdown")
    with pytest.raises(ConfigError, match="unknown brain"):
        FinancialModel(n_banks=5, brain="genius")
    with pytest.raises(ConfigError, match="unknown parameter 'foo'"):
        FinancialModel(n_banks=5, foo=1)


def test_yaml_round_trip_documents_every_field(tmp_path):
    cfg = make_config(None, n_banks=77, scenario="asset_crash", capital_ratio=0.15)
    text = cfg.to_yaml()
    for name, field in ModelConfig.model_fields.items():
        assert f"\n{name}:" in text
        assert field.description in text
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert load_config(path) == cfg
    assert load_config(path, n_banks=12).n_banks == 12


@pytest.mark.parametrize(("content", "needle"), [
    ("n_banks: [1, 2\n", "not valid YAML"),
    ("- 1\n- 2\n", "must hold a mapping"),
    ("n_banks: -3\n", "n_banks = -3"),
    ("nbanks: 3\n", "did you mean 'n_banks'"),
])
def test_malformed_yaml_is_a_clear_error(tmp_path, content, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == ModelConfig()


def test_model_accepts_config_object_mapping_and_path(tmp_path):
    cfg = make_config(None, n_banks=8, steps=3)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"n_banks": 9, "steps": 2}))
    assert FinancialModel(config=cfg, rng=1).n_banks == 8
    assert FinancialModel(config={"n_banks": 7}, rng=1).n_banks == 7
    m = FinancialModel(config=str(path), n_banks=6, rng=1)
    assert (m.n_banks, m.config.steps) == (6, 2)  # keyword wins over the file
