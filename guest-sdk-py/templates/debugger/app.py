"""A Reagent debugger: reads a failed trial and decides what to do."""

from reagent_sdk import Debugger, Diagnosis, Escalate, FailureClass, Retry, export_debugger


class Strategy(Debugger):
    def diagnose(self, ctx, failure):
        tail = failure.log_tail.lower()
        if "connection reset" in tail and failure.attempt < failure.max_attempts:
            return Diagnosis(FailureClass.INFRASTRUCTURE, Retry(), "network flake; retrying")
        return Diagnosis(
            FailureClass.UNKNOWN, Escalate(), f"trial {failure.trial} failed; asking a human"
        )


WitWorld = export_debugger(Strategy())
