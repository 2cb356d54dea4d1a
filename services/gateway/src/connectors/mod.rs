//! Connectors: credentials stored in the vault (write-only values) — as JSON
//! (`api`) and as dashboard pages (`pages`), over the vault calls both make
//! (`ops`) and the JSON shapes (`model`).

pub mod api;
pub mod model;
pub mod ops;
pub mod pages;
