//! Approvals: the pending requests for a human decision and the decision — as
//! JSON (`api`) and as dashboard pages (`pages`), over the executor calls both
//! make (`ops`) and the JSON shapes (`model`).

pub mod api;
pub mod model;
pub mod ops;
pub mod pages;
