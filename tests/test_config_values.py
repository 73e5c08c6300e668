"""Every number of the config is checked before any job (issue 21): the test walks the schema, so a
new key is covered without a new line here. NaN and infinities (which pass every JSON Schema
bound), a float where the schema says integer, and values outside the schema's bounds each stop
with a one-line message naming the key."""

import math

import pytest
import yaml

from minimaxdd import plan
from minimaxdd.checks import ConfigError

from conftest import snakemake

MINIMAL = {"experiment": "mine", "dataset": {"kind": "digits"}}


def types(schema: dict) -> set[str]:
    kind = schema.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def numeric_keys(schema: dict, path: tuple = ()):
    """(path, schema) of every number the config can hold: object keys, the items of arrays of
    numbers (path ends in 0) and the values of maps of numbers (path ends in "10", an IPC)."""
    for name, part in schema.get("properties", {}).items():
        here = (*path, name)
        if types(part) & {"integer", "number"}:
            yield here, part
        items, values = part.get("items"), part.get("additionalProperties")
        if isinstance(items, dict) and types(items) & {"integer", "number"}:
            yield (*here, 0), items
        if isinstance(values, dict) and types(values) & {"integer", "number"}:
            yield (*here, "10"), values
        if "properties" in part:
            yield from numeric_keys(part, here)


def bad_values(schema: dict) -> list:
    values = [math.nan, math.inf, -math.inf]
    integer = "integer" in types(schema) and "number" not in types(schema)
    if integer:
        values.append(float(schema.get("minimum", 1)) if schema.get("minimum", 1) >= 1 else 1.0)
    step = 1 if integer else 1e-9
    if "minimum" in schema:
        values.append(schema["minimum"] - step)
    if "exclusiveMinimum" in schema:
        values.append(schema["exclusiveMinimum"])
    if "maximum" in schema:
        values.append(schema["maximum"] + step)
    if "exclusiveMaximum" in schema:
        values.append(schema["exclusiveMaximum"])
    if "multipleOf" in schema:  # the smallest allowed value plus one
        values.append(schema.get("minimum", schema["multipleOf"]) + 1)
    return values


def with_value(path: tuple, value) -> tuple[dict, str]:
    """MINIMAL with `value` at `path`, and the key the message must name."""
    config = {**MINIMAL, "dataset": dict(MINIMAL["dataset"])}
    node = config
    for name in path[:-1]:
        node = node.setdefault(name, {}) if not isinstance(node.get(name), list) else node[name]
    last = path[-1]
    if last == 0:  # an array of numbers: a one-item list
        parent = path[-2]
        node_parent = config
        for name in path[:-2]:
            node_parent = node_parent.setdefault(name, {})
        node_parent[parent] = [value]
        return config, ".".join(map(str, path[:-1])) + "[0]"
    node[last] = value
    return config, ".".join(map(str, path))


CASES = [(path, value) for path, part in numeric_keys(plan.schema()) for value in bad_values(part)]


def test_the_walk_covers_the_schema():
    keys = {".".join(map(str, path)) for path, _ in numeric_keys(plan.schema())}
    assert {"finetune.ema_decay", "generate.guidance_scale", "finetune.lr", "validate.width_factor",
            "finetune.epochs", "generate.steps", "ipcs.0", "validate.seeds.0", "validate.epochs.10",
            "dataset.resolution", "base_models.tiny_vae.steps"} <= keys
    assert len(CASES) > 150


@pytest.mark.parametrize("path,value", CASES, ids=[f"{'.'.join(map(str, p))}={v!r}" for p, v in CASES])
def test_every_bad_number_stops_with_its_key_named(path, value):
    config, key = with_value(path, value)
    with pytest.raises(ConfigError) as error:
        plan.load_config(config)
    message = str(error.value)
    assert message.startswith(f"{key}:") and "\n" not in message, (key, message)


def test_a_nan_stops_the_workflow_before_any_job(tmp_path):
    (tmp_path / "config.yaml").write_text("experiment: mine\ndataset: {kind: digits}\nfinetune: {ema_decay: .nan}\n")
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0
    assert "finetune.ema_decay: nan is not a finite number" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_whole_number_floats_for_integers_name_the_key():
    for text, key in (("ipcs: [1.0]", r"ipcs\[0\]: 1\.0"), ("finetune: {epochs: 1.0}", r"finetune\.epochs: 1\.0"),
                      ("generate: {steps: 3.0}", r"generate\.steps: 3\.0")):
        with pytest.raises(ConfigError, match=rf"^{key} is not an integer; write it without a decimal point"):
            plan.load_config({**MINIMAL, **yaml.safe_load(text)})
