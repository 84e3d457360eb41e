from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tidings.errors import ConfigurationError
from tidings.event import Event
from tidings.filters import (
    Filter,
    all_of,
    any_of,
    compile_filter,
    exact,
    not_,
    prefix,
    suffix,
)


def make(**changes: Any) -> Event:
    values: dict[str, Any] = {"type": "com.example.order.placed", "source": "/shop/orders"}
    values.update(changes)
    return Event(**values)


ORDER = make(subject="ORD-1")
REFUND = make(type="com.example.order.refunded", source="/billing", subject="ORD-1")
TEST = make(source="/test/orders")


# -- attribute dialects ------------------------------------------------------------


def test_exact_matches_equal_values_only() -> None:
    f = compile_filter({"exact": {"type": "com.example.order.placed"}})
    assert f.matches(ORDER)
    assert not f.matches(REFUND)
    assert not f.matches(make(type="com.example.order.placed.v2"))
    assert not f.matches(make(type="Com.Example.Order.Placed"))  # case sensitive


def test_exact_with_several_attributes_needs_all() -> None:
    f = exact(type="com.example.order.placed", subject="ORD-1")
    assert f.matches(ORDER)
    assert not f.matches(make(subject="ORD-2"))
    assert not f.matches(REFUND)


def test_prefix_and_suffix() -> None:
    starts = compile_filter({"prefix": {"type": "com.example.order."}})
    assert starts.matches(ORDER)
    assert starts.matches(REFUND)
    assert not starts.matches(make(type="com.example.orders"))
    ends = compile_filter({"suffix": {"type": ".refunded"}})
    assert ends.matches(REFUND)
    assert not ends.matches(ORDER)
    assert not compile_filter({"prefix": {"source": "/shop/orders/"}}).matches(ORDER)
    assert compile_filter({"suffix": {"source": "/shop/orders"}}).matches(ORDER)


@pytest.mark.parametrize(
    "spec",
    [
        {"exact": {"subject": "ORD-1"}},
        {"exact": {"subject": ""}},
        {"prefix": {"subject": "O"}},
        {"suffix": {"subject": "1"}},
        {"exact": {"tenant": "acme"}},
    ],
)
def test_absent_attribute_matches_nothing(spec: dict[str, Any]) -> None:
    assert not compile_filter(spec).matches(make())


@pytest.mark.parametrize(
    "spec",
    [{"exact": {"subject": "ORD-1"}}, {"prefix": {"tenant": "a"}}, {"suffix": {"dataschema": "1"}}],
)
def test_not_of_an_absent_attribute_matches(spec: dict[str, Any]) -> None:
    assert compile_filter({"not": spec}).matches(make())


def test_extension_attributes_are_filterable() -> None:
    event = make(extensions={"tenant": "acme", "region": "eu-west"})
    assert exact(tenant="acme").matches(event)
    assert prefix(region="eu-").matches(event)
    assert not exact(tenant="other").matches(event)


@pytest.mark.parametrize(
    ("extensions", "spec", "expected"),
    [
        ({"urgent": True}, {"urgent": "true"}, True),
        ({"urgent": True}, {"urgent": "True"}, False),
        ({"urgent": False}, {"urgent": "false"}, True),
        ({"retries": 3}, {"retries": "3"}, True),
        ({"retries": -3}, {"retries": "-3"}, True),
        ({"retries": 3}, {"retries": "3.0"}, False),
        ({"code": "3"}, {"code": "3"}, True),
    ],
)
def test_values_compare_as_their_cloudevents_string_form(
    extensions: dict[str, Any], spec: dict[str, str], expected: bool
) -> None:
    assert compile_filter({"exact": spec}).matches(make(extensions=extensions)) is expected


def test_integer_attribute_string_form() -> None:
    event = make(schemaversion=2)
    assert exact(schemaversion="2").matches(event)
    assert not exact(schemaversion="02").matches(event)


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2024, 5, 1, 12, 0, tzinfo=UTC), "2024-05-01T12:00:00Z"),
        (datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC), "2024-05-01T12:00:00.250000Z"),
        (
            datetime(2024, 5, 1, 17, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            "2024-05-01T17:30:00+05:30",
        ),
    ],
)
def test_time_compares_as_rfc3339(moment: datetime, text: str) -> None:
    event = make(time=moment)
    assert exact(time=text).matches(event)
    assert prefix(time="2024-05-01T").matches(event)
    assert not exact(time=moment.isoformat().replace("Z", "+00:00") + "x").matches(event)


def test_data_is_not_an_attribute() -> None:
    event = make(data="ORD-1")
    assert not exact(data="ORD-1").matches(event)


def test_values_are_never_evaluated() -> None:
    event = make(subject="2")
    assert not exact(subject="1+1").matches(event)
    assert not exact(subject="__import__('os').getpid()").matches(event)


# -- combinators -------------------------------------------------------------------


def test_all_any_not() -> None:
    is_order = {"prefix": {"type": "com.example.order."}}
    is_test = {"prefix": {"source": "/test"}}
    both = compile_filter({"all": [is_order, {"not": is_test}]})
    assert both.matches(ORDER)
    assert not both.matches(TEST)
    either = compile_filter({"any": [{"exact": {"source": "/billing"}}, is_test]})
    assert either.matches(REFUND)
    assert either.matches(TEST)
    assert not either.matches(ORDER)
    negated = compile_filter({"not": is_order})
    assert not negated.matches(ORDER)
    assert negated.matches(make(type="other"))


def test_nesting() -> None:
    spec = {
        "any": [
            {"all": [{"exact": {"source": "/billing"}}, {"suffix": {"type": ".refunded"}}]},
            {"not": {"any": [{"prefix": {"source": "/shop"}}, {"prefix": {"source": "/billing"}}]}},
        ]
    }
    f = compile_filter(spec)
    assert f.matches(REFUND)
    assert f.matches(TEST)
    assert not f.matches(ORDER)
    assert not f.matches(make(source="/billing", type="com.example.invoice.sent"))


def test_a_list_means_all() -> None:
    f = compile_filter([{"prefix": {"type": "com.example."}}, {"exact": {"subject": "ORD-1"}}])
    assert f.dialect == "all"
    assert f.matches(ORDER)
    assert not f.matches(make())
    assert compile_filter(({"exact": {"subject": "ORD-1"}},)).matches(ORDER)


def test_constructors_match_the_dict_form() -> None:
    built = all_of(exact(type="com.example.order.placed"), not_(prefix(source="/test")))
    parsed = compile_filter(
        {
            "all": [
                {"exact": {"type": "com.example.order.placed"}},
                {"not": {"prefix": {"source": "/test"}}},
            ]
        }
    )
    for event in (ORDER, REFUND, TEST, make(source="/test", type="com.example.order.placed")):
        assert built.matches(event) == parsed.matches(event)
    assert built.to_dict() == parsed.to_dict()


def test_constructors_accept_specs_and_lists() -> None:
    f = any_of({"exact": {"source": "/billing"}}, [{"prefix": {"source": "/test"}}])
    assert f.matches(REFUND)
    assert f.matches(TEST)
    assert not f.matches(ORDER)
    assert suffix(subject="-1").matches(ORDER)


def test_filter_is_callable_and_compile_passes_a_filter_through() -> None:
    f = exact(subject="ORD-1")
    assert f(ORDER) is True
    assert f(make()) is False
    assert compile_filter(f) is f


# -- invalid specs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"sql": "type = 'x'"}, "unknown filter dialect 'sql'"),
        ({"EXACT": {"type": "x"}}, "unknown filter dialect"),
        ({}, "exactly one dialect"),
        ({"exact": {"type": "x"}, "prefix": {"type": "y"}}, "exactly one dialect"),
        ("exact", "exactly one dialect"),
        (b"exact", "exactly one dialect"),
        (5, "exactly one dialect"),
        (None, "exactly one dialect"),
        ({"exact": {}}, "non-empty mapping"),
        ({"prefix": {}}, "non-empty mapping"),
        ({"exact": "type"}, "mapping"),
        ({"exact": [["type", "x"]]}, "mapping"),
        ({"exact": {"type": 5}}, "must be a string"),
        ({"exact": {"type": None}}, "must be a string"),
        ({"exact": {"type": True}}, "must be a string"),
        ({"suffix": {"type": ["x"]}}, "must be a string"),
        ({"exact": {5: "x"}}, "names must be strings"),
        ({"exact": {"": "x"}}, "names must be strings"),
        ({"prefix": {"type": ""}}, "must not be empty"),
        ({"suffix": {"type": ""}}, "must not be empty"),
        ({"all": []}, "at least one"),
        ({"any": []}, "at least one"),
        ([], "at least one"),
        ({"all": "exact"}, "list of filters"),
        ({"any": {"exact": {"type": "x"}}}, "list of filters"),
        ({"not": {}}, "exactly one dialect"),
        ({"not": {"nope": {}}}, "unknown filter dialect"),
        ({"all": [{"exact": {"type": "x"}}, {"bogus": {}}]}, "unknown filter dialect 'bogus'"),
        ({"any": [{"not": {"exact": {"type": 1}}}]}, "must be a string"),
    ],
)
def test_invalid_specs_are_refused(spec: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        compile_filter(spec)


def test_invalid_constructor_arguments_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        exact()
    with pytest.raises(ConfigurationError):
        exact(type=5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        prefix(type="")
    with pytest.raises(ConfigurationError):
        all_of()
    with pytest.raises(ConfigurationError):
        any_of()
    with pytest.raises(ConfigurationError):
        not_({})


# -- to_dict -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"exact": {"type": "a", "subject": "b"}},
        {"prefix": {"source": "/shop"}},
        {"suffix": {"type": ".placed"}},
        {"not": {"exact": {"subject": "x"}}},
        {"all": [{"exact": {"type": "a"}}, {"any": [{"prefix": {"source": "/a"}}]}]},
        {"any": [{"not": {"all": [{"suffix": {"id": "1"}}]}}, {"exact": {"tenant": "acme"}}]},
    ],
)
def test_to_dict_round_trip(spec: dict[str, Any]) -> None:
    f = compile_filter(spec)
    assert f.to_dict() == spec
    again = compile_filter(f.to_dict())
    assert again.to_dict() == spec
    for event in (ORDER, REFUND, TEST, make(extensions={"tenant": "acme"}), make(subject="x")):
        assert again.matches(event) == f.matches(event)


def test_to_dict_of_a_list_is_all() -> None:
    assert compile_filter([{"exact": {"type": "a"}}]).to_dict() == {
        "all": [{"exact": {"type": "a"}}]
    }


def test_to_dict_is_a_copy() -> None:
    f = exact(type="a")
    f.to_dict()["exact"]["type"] = "changed"
    assert f.matches(make(type="a"))
    assert f.to_dict() == {"exact": {"type": "a"}}


def test_filters_are_immutable() -> None:
    f = exact(type="a")
    with pytest.raises(AttributeError):
        f.dialect = "prefix"  # type: ignore[misc]
    assert isinstance(f, Filter)
