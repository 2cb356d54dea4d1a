//! The account: sign-up, sign-in and -out, the session, password change,
//! deletion and export — as JSON (`api`) and as dashboard pages (`pages`), over
//! the backend calls both make (`ops`) and the JSON shapes (`model`).

pub mod api;
pub mod model;
pub mod ops;
pub mod pages;
