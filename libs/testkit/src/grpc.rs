//! Calling a service in a test: a request with a bearer token (and, for a fake
//! service, the token a request carries), the stable error code of a failed call,
//! and an assertion on both codes of a failure.

use std::fmt::Debug;

use bizops_errors::CODE_METADATA_KEY;
use tonic::{Code, Request, Status, metadata::MetadataValue};

/// A request carrying `authorization: Bearer <token>` (a session or a service token).
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let value = MetadataValue::try_from(format!("Bearer {token}"))
        .unwrap_or_else(|e| panic!("a token that is not a header value: {e}"));
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", value);
    request
}

/// The token of a request's `authorization: Bearer <token>`, as a fake service
/// reads it ([`authed`] the other way round).
pub fn bearer_of<T>(request: &Request<T>) -> Option<&str> {
    request.metadata().get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")
}

/// The stable error code of a failed call (e.g. `NOT_FOUND`); empty when it has none.
pub fn code_of(status: &Status) -> String {
    status.metadata().get(CODE_METADATA_KEY).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

/// Asserts that a call failed with the gRPC `code` and the stable `error_code`;
/// returns the status for further checks of its message.
#[track_caller]
pub fn assert_status<T: Debug>(result: Result<T, Status>, code: Code, error_code: &str) -> Status {
    let status = match result {
        Ok(value) => panic!("expected {code:?} {error_code}, the call succeeded: {value:?}"),
        Err(status) => status,
    };
    assert_eq!((status.code(), code_of(&status).as_str()), (code, error_code), "{status:?}");
    status
}

#[cfg(test)]
mod tests {
    use bizops_errors::{Error, ErrorCode};

    use super::*;

    #[test]
    fn a_bearer_token_goes_into_the_authorization_header() {
        let request = authed("t0k3n", ());
        assert_eq!(
            request.metadata().get("authorization").map(|v| v.to_str().ok()),
            Some(Some("Bearer t0k3n"))
        );
    }

    #[test]
    fn the_stable_code_of_a_status() {
        let status = Status::from(Error::not_found("pilot"));
        assert_eq!(code_of(&status), ErrorCode::NotFound.as_str());
        assert_eq!(code_of(&Status::internal("no code")), "");
        let returned = assert_status::<()>(Err(status), Code::NotFound, "NOT_FOUND");
        assert_eq!(returned.message(), "pilot not found");
    }

    #[test]
    #[should_panic(expected = "the call succeeded")]
    fn a_success_is_not_the_expected_failure() {
        assert_status(Ok(1), Code::NotFound, "NOT_FOUND");
    }
}
