"""``strict_loads`` (shared/domain/json_text.py) reads every JSON text ``json.loads`` reads
the same way, and refuses exactly the three kinds it must: a name twice in one object (at
any depth), a non-JSON constant, a lone surrogate."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.json_text import NotJson, strict_loads

names = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_categories=("Cs",)),
                max_size=6)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), names,
                    st.floats(allow_nan=False, allow_infinity=False))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(names, inner, max_size=4)), max_leaves=15)


@settings(max_examples=200, deadline=None)
@given(value=values, as_bytes=st.booleans())
def test_json_without_a_repeated_name_reads_as_json_loads_reads_it(value, as_bytes: bool) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert strict_loads(text.encode() if as_bytes else text) == json.loads(text)


def _objects(value, path=()):  # type: ignore[no-untyped-def]
    """The paths of every object inside ``value``."""
    if isinstance(value, dict):
        yield path
        for key, inner in value.items():
            yield from _objects(inner, path + (key,))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _objects(inner, path + (index,))


@settings(max_examples=200, deadline=None)
@given(value=st.dictionaries(names, values, min_size=1, max_size=4), data=st.data())
def test_a_name_repeated_in_any_object_is_refused_and_named(value: dict, data) -> None:  # type: ignore[no-untyped-def]
    path = data.draw(st.sampled_from(list(_objects(value))))
    target = value
    for step in path:
        target = target[step]
    name = data.draw(st.sampled_from(sorted(target)) if target else names)
    marker = "\x00repeat\x00"
    target[marker] = None
    # The object written with ``name`` once more, as its last member.
    text = json.dumps(value, ensure_ascii=False).replace(json.dumps(marker) + ": null",
                                                         json.dumps(name) + ': "again"', 1)
    if not target.keys() - {marker}:  # the object held only the marker: give it the name twice
        text = text.replace(json.dumps(name) + ': "again"', json.dumps(name) + ': 1, ' + json.dumps(name) + ': 2', 1)
    with pytest.raises(NotJson, match="appears twice in one object"):
        strict_loads(text)


@pytest.mark.parametrize("text, reason", [
    ('{"a": NaN}', "NaN"), ('[Infinity]', "Infinity"), ('{"a": {"b": -Infinity}}', "Infinity"),
    ('{"a": "x\\ud800"}', "surrogate"), ('{"\\udfff": 1}', "surrogate"), ('["\\uDC00"]', "surrogate"),
    ('{"a": 1, "b": {"c": 1, "c": 1}}', "'c' appears twice"), ('{"a": 1, "a": 1}', "'a' appears twice"),
])
def test_what_is_refused_and_why(text: str, reason: str) -> None:
    with pytest.raises(NotJson, match=reason):
        strict_loads(text)
    with pytest.raises(NotJson, match=reason):
        strict_loads(text.encode())


def test_a_surrogate_s_raw_bytes_are_refused_and_a_pair_is_a_character() -> None:
    with pytest.raises(NotJson, match="surrogate"):
        strict_loads(b'{"k": "v\xed\xa0\x80"}')
    assert strict_loads('{"k": "\\ud83d\\ude00", "n": "NaN"}') == {"k": "\U0001F600", "n": "NaN"}


def test_one_name_in_two_objects_is_no_repeat() -> None:
    assert strict_loads('{"a": {"id": 1}, "b": {"id": 2}, "id": 3}') == {"a": {"id": 1}, "b": {"id": 2}, "id": 3}


def test_a_syntax_error_is_still_json_s_own() -> None:
    with pytest.raises(json.JSONDecodeError):
        strict_loads('{"a": 1,}')
