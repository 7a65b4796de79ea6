//! The records the workspace keeps, as plain data: campaign rows and the
//! events that change them, approval requests and insight records. They sit below the store (which persists them) and
//! the services that make them (governance, insights), so every import
//! between those points down (ARCHITECTURE.md, "Layers").

pub mod approval;
pub mod campaign;
pub mod insight;
