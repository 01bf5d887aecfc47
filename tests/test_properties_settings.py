"""Property tests: any value of any ``VOICEOBS_*`` variable loads as the field's type or stops
start-up with a :class:`SettingsError` that names the variable and says what it allows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from voiceobs import SettingsError, VoiceobsSettings
from voiceobs.settings import ENV_PREFIX

FIELDS = sorted(VoiceobsSettings.model_fields)
"""Every setting, so a new one is covered without touching this file."""
VARIABLES = {f"{ENV_PREFIX}{name.upper()}": name for name in FIELDS}
RATE_CARD = Path(__file__).parent.parent / "voiceobs" / "data" / "rate_card.example.yaml"

_env_char = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
"""What an environment value can hold: any character but NUL and lone surrogates."""
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(_env_char, max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(_env_char, max_size=5), inner)
    ),
    max_leaves=6,
).map(json.dumps)
_words = st.sampled_from(
    [
        "",
        " ",
        "true",
        "false",
        "TRUE",
        "1",
        "0",
        "yes",
        "off",
        "none",
        "null",
        "DEBUG",
        "info",
        "0.5",
        "200",
        "60000",
        "60001",
        "-1",
        "1e400",
        "nan",
        "inf",
        "-inf",
        "0x10",
        "1_000",
        "a,b, c",
        ",,",
        '["ACCT-\\\\d{6,10}"]',
        "[1]",
        '["("]',
        "{}",
        "/",
        "/tmp",
        "/dev/null",
        str(RATE_CARD),
        "~",
        "\u212b",
        "\ufeff1",
        "١٢٣",
    ]
)
_huge = st.tuples(st.sampled_from(["9", "x", "[", "(", "é", "a,"]), st.integers(1000, 200_000)).map(
    lambda part: part[0] * part[1]
)
_nested = st.integers(600, 5000).flatmap(
    lambda depth: st.sampled_from(
        ["[" * depth, "[" * depth + "]" * depth, json.dumps(["(" * depth + ")" * depth])]
    )
)
VALUES = st.one_of(
    _words,
    st.text(_env_char, max_size=40),
    st.integers().map(str),
    st.floats().map(repr),
    _json,
    _huge,
    _nested,
    st.lists(st.text(_env_char, max_size=6), max_size=4).map(json.dumps),  # JSON list of str
)

_checked: dict[str, TypeAdapter[object]] = {
    name: TypeAdapter(Annotated[field.annotation, field])
    for name, field in VoiceobsSettings.model_fields.items()
}
"""The field's type with its constraints, to check a loaded value strictly."""
_ALLOWED_WORDS = ("should", "give", "valid", "no file", "unable", "json list")


def _load(env: dict[str, str]) -> VoiceobsSettings | SettingsError:
    with pytest.MonkeyPatch.context() as mp:
        for variable, value in env.items():
            mp.setenv(variable, value)
        try:
            return VoiceobsSettings.load()
        except SettingsError as error:  # any other exception fails the test
            return error


def _named(error: SettingsError) -> set[str]:
    """The variables an error names at the start of a line, each with what it allows."""
    lines = str(error).splitlines()
    assert lines[0] == "invalid voiceobs settings:", lines[0]
    named = set()
    for line in lines[1:]:
        variable, _, explanation = line.strip().partition(": ")
        assert variable in VARIABLES, line[:200]
        assert any(word in explanation.lower() for word in _ALLOWED_WORDS), line[:200]
        named.add(variable)
    return named


_SETTINGS = settings(
    derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


@pytest.mark.parametrize("variable", sorted(VARIABLES))
@settings(_SETTINGS, max_examples=60)
@given(value=VALUES)
def test_any_value_of_each_variable_loads_typed_or_is_named(variable: str, value: str) -> None:
    """Each variable alone: a typed, in-range value, or an error naming just it."""
    loaded = _load({variable: value})
    if isinstance(loaded, SettingsError):
        assert _named(loaded) == {variable}
    else:
        name = VARIABLES[variable]
        _checked[name].validate_python(getattr(loaded, name), strict=True)


@settings(_SETTINGS, max_examples=300)
@given(st.dictionaries(st.sampled_from(sorted(VARIABLES)), VALUES, min_size=2, max_size=8))
def test_several_bad_variables_are_all_named_at_once(env: dict[str, str]) -> None:
    """Several variables together: the error names exactly those that fail on their own."""
    bad = {
        variable
        for variable, value in env.items()
        if isinstance(_load({variable: value}), SettingsError)
    }
    loaded = _load(env)
    if isinstance(loaded, SettingsError):
        assert _named(loaded) == bad
    else:
        assert not bad


@settings(_SETTINGS, max_examples=100)
@given(
    st.text(
        st.characters(whitelist_categories=("Lu", "Nd"), whitelist_characters="_"),
        min_size=1,
        max_size=30,
    )
)
def test_an_unknown_variable_is_named(suffix: str) -> None:
    """A ``VOICEOBS_*`` name that is no setting (a typo) stops start-up naming it, except the
    ``VOICEOBS_STACK_*`` names the monitoring stack reserves."""
    variable = f"{ENV_PREFIX}{suffix}"
    loaded = _load({variable: "1"})
    if variable in VARIABLES or suffix.startswith("STACK_"):
        assert isinstance(loaded, VoiceobsSettings)
    else:
        assert isinstance(loaded, SettingsError)
        assert f"unknown voiceobs setting(s) {variable};" in str(loaded)
