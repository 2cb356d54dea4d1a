//! Keyset pagination for the List RPCs (ListPilots, ListVersions, ListRuns,
//! ListApprovals): the page size a request asks for (0: [`DEFAULT_PAGE_SIZE`], at
//! most [`MAX_PAGE_SIZE`]), the row the page starts after (from the request's
//! opaque page token), one row more than the page fetched to learn whether another
//! page follows, and the token of the page's last row.
//!
//! ```text
//! let page = Page::<Uuid>::parse("p:", req.page_size, &req.page_token)?;
//! let rows = store.list(owner, page.after(), page.limit()).await?;
//! let (rows, next_page_token) = page.finish(rows, |r| r.id);
//! ```
//!
//! A page token is base64url without padding of the RPC's prefix (e.g. `p:`, so a
//! token of one list is refused by another) followed by the cursor's text
//! ([`Cursor`]). The format is part of the API: tokens handed out earlier must keep
//! working, and a test pins it byte for byte.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use bizops_errors::Error;
use time::OffsetDateTime;
use uuid::Uuid;

/// Rows in a page when the request does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Most rows in a page, whatever the request asks for.
pub const MAX_PAGE_SIZE: u32 = 100;

/// The key of a row a page can start after, written into page tokens as text.
pub trait Cursor: Sized {
    /// The text written into a token.
    fn to_text(&self) -> String;
    /// The cursor a token's text names; `None` when it names none.
    fn from_text(text: &str) -> Option<Self>;
}

/// An id (lists ordered by id): its hyphenated text.
impl Cursor for Uuid {
    fn to_text(&self) -> String {
        self.to_string()
    }

    fn from_text(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// A number (e.g. a version): its decimal text.
impl Cursor for i64 {
    fn to_text(&self) -> String {
        self.to_string()
    }

    fn from_text(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// A creation time and id (lists ordered by both): `<unix nanoseconds>:<id>`.
impl Cursor for (OffsetDateTime, Uuid) {
    fn to_text(&self) -> String {
        format!("{}:{}", self.0.unix_timestamp_nanos(), self.1)
    }

    fn from_text(text: &str) -> Option<Self> {
        let (nanos, id) = text.split_once(':')?;
        let at = OffsetDateTime::from_unix_timestamp_nanos(nanos.parse().ok()?).ok()?;
        Some((at, id.parse().ok()?))
    }
}

/// One page of a List request: how many rows, and after which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<C> {
    prefix: &'static str,
    size: usize,
    after: Option<C>,
}

impl<C: Cursor + Clone> Page<C> {
    /// Reads a List request's `page_size` and `page_token`; the tokens of this list
    /// start with `prefix`. A token that is not one this list handed out is
    /// `INVALID_ARGUMENT` naming `page_token`.
    pub fn parse(prefix: &'static str, page_size: u32, page_token: &str) -> Result<Self, Error> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        Ok(Self { prefix, size: size as usize, after: decode(prefix, page_token)? })
    }

    /// The row the page starts after (`None`: the first page).
    pub fn after(&self) -> Option<C> {
        self.after.clone()
    }

    /// The rows to fetch: one more than the page, to learn whether another follows.
    pub fn limit(&self) -> i64 {
        self.size as i64 + 1
    }

    /// Cuts rows fetched with [`Page::limit`] to the page; returns them with the
    /// token of the next page (empty when this is the last), which names the
    /// page's last row by `cursor`.
    pub fn finish<T>(&self, mut rows: Vec<T>, cursor: impl FnOnce(&T) -> C) -> (Vec<T>, String) {
        if rows.len() <= self.size {
            return (rows, String::new());
        }
        rows.truncate(self.size);
        let next = rows.last().map(|last| encode(self.prefix, &cursor(last))).unwrap_or_default();
        (rows, next)
    }
}

fn encode(prefix: &str, cursor: &impl Cursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{prefix}{}", cursor.to_text()))
}

fn decode<C: Cursor>(prefix: &str, token: &str) -> Result<Option<C>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Error::invalid("page_token", "is not a token from a previous response");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let cursor = text.strip_prefix(prefix).and_then(C::from_text).ok_or_else(bad)?;
    Ok(Some(cursor))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bizops_errors::ErrorCode;

    use super::*;

    const ID: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

    fn id() -> Uuid {
        ID.parse().unwrap()
    }

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap()
    }

    #[test]
    fn page_sizes_default_to_20_and_stop_at_100() {
        for (asked, size) in [(0, 20), (1, 1), (20, 20), (100, 100), (101, 100), (u32::MAX, 100)] {
            let page = Page::<Uuid>::parse("p:", asked, "").unwrap();
            assert_eq!(page.limit(), size + 1, "page_size {asked}");
            assert_eq!(page.after(), None);
        }
    }

    #[test]
    fn tokens_keep_their_format() {
        // Tokens handed out before this helper existed must keep working.
        let rows = vec![id(), Uuid::now_v7()];
        let (_, next) = Page::<Uuid>::parse("p:", 1, "").unwrap().finish(rows, |r| *r);
        assert_eq!(next, "cDowMTkwYTFiMi1jM2Q0LTdlNWYtOGE5Yi0wYzFkMmUzZjRhNWI");
        assert_eq!(Page::<Uuid>::parse("p:", 1, &next).unwrap().after(), Some(id()));

        let (_, next) = Page::<i64>::parse("v:", 1, "").unwrap().finish(vec![42, 41], |r| *r);
        assert_eq!(next, "djo0Mg");
        assert_eq!(Page::<i64>::parse("v:", 1, &next).unwrap().after(), Some(42));

        let rows = vec![(at(), id()), (at(), Uuid::now_v7())];
        let (_, next) = Page::<(OffsetDateTime, Uuid)>::parse("", 1, "").unwrap().finish(rows, |r| *r);
        assert_eq!(next, "MTcwMDAwMDAwMDEyMzQ1Njc4OTowMTkwYTFiMi1jM2Q0LTdlNWYtOGE5Yi0wYzFkMmUzZjRhNWI");
        assert_eq!(Page::<(OffsetDateTime, Uuid)>::parse("", 1, &next).unwrap().after(), Some((at(), id())));
    }

    #[test]
    fn a_page_is_cut_to_size_and_names_its_last_row() {
        let page = Page::<i64>::parse("v:", 3, "").unwrap();
        assert_eq!(page.limit(), 4);
        // Fewer rows than the page, or exactly a page: the last page.
        assert_eq!(page.finish(vec![9, 8], |r| *r), (vec![9, 8], String::new()));
        assert_eq!(page.finish(vec![9, 8, 7], |r| *r), (vec![9, 8, 7], String::new()));
        assert_eq!(page.finish(Vec::<i64>::new(), |r| *r), (vec![], String::new()));
        // One more: cut, and the token starts after the page's last row.
        let (rows, next) = page.finish(vec![9, 8, 7, 6], |r| *r);
        assert_eq!(rows, [9, 8, 7]);
        assert_eq!(Page::<i64>::parse("v:", 3, &next).unwrap().after(), Some(7));
    }

    #[test]
    fn anything_but_a_token_of_this_list_is_refused() {
        let pilots = URL_SAFE_NO_PAD.encode(format!("p:{ID}"));
        let not_utf8 = URL_SAFE_NO_PAD.encode([0xff, 0xfe]);
        let cases = [
            ("p:", "not base64 !".to_owned()),
            ("p:", not_utf8.clone()),
            ("p:", URL_SAFE_NO_PAD.encode("p:not-a-uuid")),
            ("p:", URL_SAFE_NO_PAD.encode(ID)),
            ("v:", pilots.clone()),
            ("v:", URL_SAFE_NO_PAD.encode("v:1.5")),
            ("", not_utf8),
            ("", pilots),
            ("", URL_SAFE_NO_PAD.encode(format!("no-colon-{ID}"))),
            ("", URL_SAFE_NO_PAD.encode(format!("{}:{ID}", i128::MAX))),
            ("", URL_SAFE_NO_PAD.encode("1700000000:not-a-uuid")),
        ];
        for (prefix, token) in cases {
            let e = match prefix {
                "v:" => Page::<i64>::parse(prefix, 0, &token).unwrap_err(),
                "" => Page::<(OffsetDateTime, Uuid)>::parse(prefix, 0, &token).unwrap_err(),
                _ => Page::<Uuid>::parse(prefix, 0, &token).unwrap_err(),
            };
            assert_eq!(e.code(), ErrorCode::InvalidArgument, "{prefix} {token}");
            assert_eq!(
                e.message(),
                "page_token: is not a token from a previous response",
                "{prefix} {token}"
            );
        }
    }
}
