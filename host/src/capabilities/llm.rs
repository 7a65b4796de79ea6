//! `reagent:strategy/llm`: host-mediated language-model completions.
//!
//! Declared in the WIT package so strategies can be written against it, but
//! not linked in this release: no world imports it, and a component that
//! imports it is refused at load ("not granted"). The insights/researcher
//! work adds the implementation (operator-configured endpoint, key the
//! guest never sees, token budget, every prompt and response recorded).
