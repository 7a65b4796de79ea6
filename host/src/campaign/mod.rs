//! Campaigns: the phase machine (the engine), the statistics, and the
//! report. The campaign file is `crate::spec`; the rows and events the
//! engine writes are `crate::records::campaign`.

pub mod engine;
pub mod html;
pub mod learned;
mod plots;
pub mod report;
pub mod smoke;
pub mod stats;
pub mod stopping;
pub mod view;
