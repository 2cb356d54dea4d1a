//! Runs: run now, a Pilot's runs, one run with its steps, cancel, replay and the
//! live view (`live`, Server-Sent Events) — as JSON (`api`) and as dashboard
//! pages (`pages`), over the executor calls both make (`ops`) and the JSON
//! shapes (`model`).

pub mod api;
pub mod live;
pub mod model;
pub mod ops;
pub mod pages;
