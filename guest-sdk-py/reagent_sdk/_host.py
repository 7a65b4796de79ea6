"""Where import calls go: the real host inside a component, the installed
`testing.MockHost` natively.

Inside a component built by `reagent strategy build`, componentize-py
provides the generated module `wit_world`; natively it does not exist.
"""

from __future__ import annotations

from . import testing

try:  # pragma: no cover - only inside a component
    import wit_world as _wit_world  # noqa: F401

    IN_COMPONENT = True
except ImportError:
    IN_COMPONENT = False


def backend():
    """The object answering imports: the component adapter or the mock host."""
    if IN_COMPONENT:  # pragma: no cover - only inside a component
        from . import _component

        return _component.HOST
    return testing.current()
