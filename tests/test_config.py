import json

import pytest

from bpviz.config import ConfigError, RunConfig


def test_json_round_trip_keeps_every_field():
    cfg = RunConfig(
        name="deep tanh",
        dataset="digits",
        arch="cnn",
        depth=12,
        width=16,
        activation="relu",
        init="orthogonal",
        batch_norm=True,
        skip=True,
        optimizer="adam",
        optimizer_options={"beta2": 0.99},
        lr=3e-3,
        batch_size=32,
        steps=50,
        seed=7,
        device="cpu",
        dtype="float64",
        hessian_every=5,
    )
    again = RunConfig.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(again.to_json()) == cfg.to_dict()


def test_integers_are_accepted_for_floats_and_stored_as_float():
    cfg = RunConfig(lr=1)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("activation", "gelu", ["activation", "'tanh'", "'relu'", "'sigmoid'", "'linear'"]),
        ("init", "he", ["init", "'orthogonal'", "'kaiming'"]),
        ("dataset", "imagenet", ["dataset", "'spirals'", "'cifar10'"]),
        ("depth", 0, ["depth", ">= 1", "<= 100"]),
        ("depth", 101, ["depth", "<= 100"]),
        ("depth", 2.5, ["depth", "int"]),
        ("lr", 0.0, ["lr", "> 0"]),
        ("lr", float("nan"), ["lr", "finite"]),
        ("batch_norm", "yes", ["batch_norm", "bool"]),
        ("dtype", "float16", ["dtype", "'float32'", "'float64'"]),
        ("hessian_every", 0, ["hessian_every", "'auto'"]),
        ("hessian_every", "sometimes", ["hessian_every", "'auto'"]),
        ("device", "tpu", ["device", "'cuda:N'"]),
    ],
)
def test_invalid_values_name_the_field_and_the_allowed_values(field, value, expected):
    with pytest.raises(ConfigError) as err:
        RunConfig(**{field: value})
    for text in expected:
        assert text in str(err.value)


def test_unknown_fields_are_refused_with_the_list_of_fields():
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['widht'\].*width"):
        RunConfig.from_dict({"widht": 3})


def test_cnn_needs_an_image_dataset():
    with pytest.raises(ConfigError, match="arch: 'cnn' needs an image dataset"):
        RunConfig(arch="cnn", dataset="spirals")


def test_bad_json_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid JSON"):
        RunConfig.from_json("{depth: 3")
    with pytest.raises(ConfigError, match="JSON object"):
        RunConfig.from_json("[1, 2]")


def test_replace_validates():
    cfg = RunConfig()
    assert cfg.replace(depth=9).depth == 9
    with pytest.raises(ConfigError, match="depth"):
        cfg.replace(depth=-1)


def test_task_follows_dataset():
    assert RunConfig(dataset="teacher").task == "regression"
    assert RunConfig(dataset="xor").task == "classification"


def test_url_query_round_trip():
    cfg = RunConfig(
        depth=3,
        batch_norm=True,
        lr=0.3,
        hessian_every=5,
        optimizer="sa_sgd",
        optimizer_options={"granularity": "channel"},
        data_dir="/data",
    )
    again, ignored = RunConfig.from_query("?" + cfg.to_query())
    assert again == cfg and ignored == []
    assert RunConfig().to_query() == ""  # only what differs from the defaults


def test_url_query_nonsense_is_ignored_and_named():
    cfg, ignored = RunConfig.from_query("depth=abc&nonsense=1&activation=gelu&width=7&lr=-1&hessian_every=auto")
    assert cfg == RunConfig(width=7)
    assert any(s.startswith("depth=abc") for s in ignored)
    assert any(s.startswith("nonsense") for s in ignored)
    assert any(s.startswith("activation=gelu") and "'tanh'" in s for s in ignored)
    assert any(s.startswith("lr=-1") for s in ignored)
