//! What every feature's backend calls share: checked ids and page sizes. The
//! calls themselves go through `backend::rpc!`, and each feature's `ops` module
//! holds the ones its JSON handlers and its dashboard pages both make.

use bizops_errors::Error;
use uuid::Uuid;

/// A UUID path parameter, or `INVALID_ARGUMENT` naming it.
pub fn parse_id(field: &str, text: &str) -> Result<Uuid, Error> {
    text.trim().parse::<Uuid>().map_err(|_| Error::invalid(field, "must be a UUID"))
}

/// The page size to ask a backend for: at most the backends' maximum; 0 (unset) lets it choose.
pub fn page(size: Option<u32>) -> u32 {
    size.unwrap_or(0).min(bizops_runtime::paging::MAX_PAGE_SIZE)
}
