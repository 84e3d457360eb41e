from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from tidings import ConfigurationError, DecodeError, Reject, Retry, RetryPolicy, SchemaError


def test_default_policy_is_five_attempts_starting_near_a_fifth_of_a_second() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 5
    bounds = [RetryPolicy(jitter="none").backoff(n) for n in range(1, 12)]
    assert bounds[:4] == pytest.approx([0.2, 0.4, 0.8, 1.6])
    assert max(bounds) == 30.0


def test_full_jitter_draws_between_zero_and_the_bound() -> None:
    policy = RetryPolicy()
    draws = [policy.backoff(3) for _ in range(2000)]
    assert all(0.0 <= d <= 0.8 for d in draws)
    assert min(draws) < 0.1 and max(draws) > 0.7, "draws should spread over the range"


def test_decide_retries_until_the_last_attempt() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.decide(RuntimeError(), 1).action == "retry"
    assert policy.decide(RuntimeError(), 2).action == "retry"
    assert policy.decide(RuntimeError(), 3).action == "dead_letter"


@pytest.mark.parametrize(
    "error", [DecodeError("x"), SchemaError("x"), Reject("x")], ids=lambda e: type(e).__name__
)
def test_unrecoverable_errors_dead_letter_at_once(error: Exception) -> None:
    assert RetryPolicy().decide(error, 1).action == "dead_letter"


def test_pydantic_validation_error_dead_letters_at_once() -> None:
    class Model(BaseModel):
        n: int

    with pytest.raises(ValidationError) as info:
        Model.model_validate({"n": "x"})
    assert RetryPolicy().decide(info.value, 1).action == "dead_letter"


def test_retry_signal_sets_the_delay_but_respects_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=2)
    decision = policy.decide(Retry(delay=7.5), 1)
    assert (decision.action, decision.delay) == ("retry", 7.5)
    assert policy.decide(Retry(delay=7.5), 2).action == "dead_letter"


def test_retry_on_limits_what_is_retried() -> None:
    policy = RetryPolicy(retry_on=(TimeoutError,))
    assert policy.decide(TimeoutError(), 1).action == "retry"
    assert policy.decide(KeyError(), 1).action == "dead_letter"


def test_never() -> None:
    assert RetryPolicy.never().decide(RuntimeError(), 1).action == "dead_letter"


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"initial_delay": -1}, {"multiplier": 0.5}, {"jitter": "some"}],
)
def test_invalid_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_negative_retry_delay_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Retry(delay=-1)
