//! `three-phase`: Reagent's default hypothesis generator, as a component.
//!
//! The logic (validate single changes, combine what helped, exploit around
//! the best) and its tests live in the `tactics` library, which
//! `builtin:researcher` shares; this crate only exports it.

reagent_sdk::export_generator!(tactics::ThreePhase);
