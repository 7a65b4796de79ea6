//! The records the workspace keeps, as plain data: approval requests and
//! insight records. They sit below the store (which persists them) and
//! the services that make them (governance, insights), so every import
//! between those points down (ARCHITECTURE.md, "Layers").

pub mod approval;
pub mod insight;
