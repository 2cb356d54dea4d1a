//! Pilots: create, edit (the dashboard's `editor`), versions, schedules,
//! enable/disable, export and import, the webhook secret, deletion — as JSON
//! (`api`) and as dashboard pages (`pages`), over the catalog calls both make
//! (`ops`) and the JSON shapes (`model`).

pub mod api;
pub mod editor;
pub mod model;
pub mod ops;
pub mod pages;
