"""Native tests: plain pytest."""

from app import Strategy
from reagent_sdk import Escalate, FailureReport, Retry


def failure(tail, attempt=1):
    return FailureReport(7, 3, [], 1, None, False, False, tail, attempt, 2, [])


def test_a_network_flake_is_retried_then_escalated():
    assert Strategy().diagnose(None, failure("Connection reset by peer")).action == Retry()
    assert Strategy().diagnose(None, failure("Connection reset", 2)).action == Escalate()
    assert Strategy().diagnose(None, failure("segfault")).action == Escalate()
