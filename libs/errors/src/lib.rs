//! One error vocabulary for the whole suite.
//!
//! Every failure that crosses a service edge becomes an [`Error`] with one stable
//! [`ErrorCode`]. The code maps to a `tonic::Code` and to an HTTP status; the client
//! sees the code and a short, safe message. The cause (the `source`) is logged where
//! the error is converted and never crosses the wire. `docs/errors.md` explains every
//! code; a test keeps the two in step.
#![forbid(unsafe_code)]

use std::{borrow::Cow, fmt, str::FromStr, time::Duration};

use tonic::metadata::MetadataValue;

/// gRPC metadata key carrying the stable error code.
pub const CODE_METADATA_KEY: &str = "x-bizops-error-code";
/// gRPC metadata key carrying the retry-after hint in whole seconds.
pub const RETRY_AFTER_METADATA_KEY: &str = "retry-after";
/// gRPC metadata key carrying the path of the field an error is about
/// (`title`, `steps[2].slack.text`, `schedules[0].cron`).
pub const FIELD_METADATA_KEY: &str = "x-bizops-error-field";
/// gRPC binary metadata key carrying what is wrong with that field (UTF-8), the
/// message without the words that say where.
pub const PROBLEM_METADATA_KEY: &str = "x-bizops-error-problem-bin";

macro_rules! error_codes {
    ($( $variant:ident => $name:literal, $grpc:ident, $http:literal, $doc:literal; )+) => {
        /// A stable, documented error code. The string form never changes once released.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( #[doc = $doc] $variant, )+
        }

        impl ErrorCode {
            /// Every code, in documentation order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The stable name, e.g. `"NOT_FOUND"`.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)+ }
            }

            /// The gRPC status code this maps to.
            pub const fn grpc_code(self) -> tonic::Code {
                match self { $(ErrorCode::$variant => tonic::Code::$grpc,)+ }
            }

            /// The HTTP status this maps to.
            pub fn http_status(self) -> http::StatusCode {
                let code: u16 = match self { $(ErrorCode::$variant => $http,)+ };
                http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
            }

            /// One line on what it means and what the user can do.
            pub const fn description(self) -> &'static str {
                match self { $(ErrorCode::$variant => $doc,)+ }
            }
        }

        impl FromStr for ErrorCode {
            type Err = UnknownErrorCode;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($name => Ok(ErrorCode::$variant),)+ _ => Err(UnknownErrorCode) }
            }
        }
    };
}

error_codes! {
    InvalidArgument => "INVALID_ARGUMENT", InvalidArgument, 400,
        "A field is missing or malformed; the message names the field. Correct it and send again.";
    WeakPassword => "WEAK_PASSWORD", InvalidArgument, 400,
        "The password is too short, too long or too easy to guess; the message says why. Choose a longer, less predictable one.";
    PayloadTooLarge => "PAYLOAD_TOO_LARGE", InvalidArgument, 413,
        "The request or document is larger than the limit named in the message. Send less.";
    Unauthenticated => "UNAUTHENTICATED", Unauthenticated, 401,
        "No valid session: not signed in, signed out, expired or revoked. Sign in again.";
    InvalidCredentials => "INVALID_CREDENTIALS", Unauthenticated, 401,
        "The email or password is wrong (the answer does not say which). Check both and try again.";
    WebhookRejected => "WEBHOOK_REJECTED", Unauthenticated, 401,
        "The webhook was not accepted: unknown Pilot, bad or missing signature, or disabled Pilot. Check the URL, the secret and that the Pilot is enabled.";
    PermissionDenied => "PERMISSION_DENIED", PermissionDenied, 403,
        "The caller is authenticated but may not do this (for example an internal-only call). Nothing a user can change; report it if unexpected.";
    CsrfRejected => "CSRF_REJECTED", PermissionDenied, 403,
        "A state-changing browser request came without a valid CSRF token or from another origin. Reload the page and try again.";
    NotFound => "NOT_FOUND", NotFound, 404,
        "The thing does not exist, or it belongs to someone else. Check the id.";
    MethodNotAllowed => "METHOD_NOT_ALLOWED", Unimplemented, 405,
        "The HTTP method is not supported at this address; the Allow header lists those that are. Use one of them.";
    AlreadyExists => "ALREADY_EXISTS", AlreadyExists, 409,
        "Something with this unique name or email exists already. Use another, or sign in.";
    StaleVersion => "STALE_VERSION", Aborted, 409,
        "Someone saved a newer version since you loaded it. Reload, reapply your change and save again.";
    FailedPrecondition => "FAILED_PRECONDITION", FailedPrecondition, 409,
        "The request is valid but the current state does not allow it (for example a finished run cannot be cancelled). The message says which state.";
    PilotDisabled => "PILOT_DISABLED", FailedPrecondition, 409,
        "The Pilot is disabled and accepts no triggers. Enable it first.";
    LimitExceeded => "LIMIT_EXCEEDED", FailedPrecondition, 409,
        "An account limit is reached (for example the number of Pilots or credentials); the message names it. Delete something first.";
    RateLimited => "RATE_LIMITED", ResourceExhausted, 429,
        "Too many requests or failed attempts. Wait for the time given in Retry-After, then try again.";
    Unavailable => "UNAVAILABLE", Unavailable, 503,
        "A service the request needs is unavailable. Nothing was half-done; retry after the time given in Retry-After, or in a moment.";
    DeadlineExceeded => "DEADLINE_EXCEEDED", DeadlineExceeded, 504,
        "The request took too long and was stopped. Retry; if it keeps happening, report it.";
    Internal => "INTERNAL", Internal, 500,
        "An unexpected error. The message carries a reference that matches the server log; report it with that reference.";
}

/// A string that is not a known [`ErrorCode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code")]
pub struct UnknownErrorCode;

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorCode {
    /// The closest code for a bare gRPC status without our metadata.
    pub fn from_grpc(code: tonic::Code) -> Self {
        use tonic::Code as C;
        match code {
            C::InvalidArgument | C::OutOfRange => ErrorCode::InvalidArgument,
            C::Unauthenticated => ErrorCode::Unauthenticated,
            C::PermissionDenied => ErrorCode::PermissionDenied,
            C::NotFound => ErrorCode::NotFound,
            C::AlreadyExists => ErrorCode::AlreadyExists,
            C::Aborted => ErrorCode::StaleVersion,
            C::FailedPrecondition => ErrorCode::FailedPrecondition,
            C::ResourceExhausted => ErrorCode::RateLimited,
            C::Unavailable | C::Cancelled => ErrorCode::Unavailable,
            C::DeadlineExceeded => ErrorCode::DeadlineExceeded,
            _ => ErrorCode::Internal,
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error at a service edge: a stable code, a safe message for the client, an
/// optional field it is about, an optional retry hint, and an optional cause that
/// is logged but never sent.
///
/// ```
/// use bizops_errors::{Error, ErrorCode};
/// let status: tonic::Status = Error::invalid("title", "must be 1-200 characters").into();
/// assert_eq!(status.code(), tonic::Code::InvalidArgument);
/// assert_eq!(status.message(), "title: must be 1-200 characters");
/// let back = Error::from_status(&status);
/// assert_eq!(back.code(), ErrorCode::InvalidArgument);
/// assert_eq!((back.field(), back.problem()), (Some("title"), Some("must be 1-200 characters")));
/// ```
pub struct Error {
    code: ErrorCode,
    message: Cow<'static, str>,
    field: Option<FieldProblem>,
    retry_after: Option<Duration>,
    source: Option<Source>,
}

/// The field an error is about and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldProblem {
    path: String,
    problem: String,
}

impl Error {
    /// An error with a client-safe message.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self { code, message: message.into(), field: None, retry_after: None, source: None }
    }

    /// An unexpected failure. The client sees only "internal error" and a reference;
    /// the cause is logged with the same reference when the error is converted.
    pub fn internal(source: impl Into<Source>) -> Self {
        Self {
            code: ErrorCode::Internal,
            message: Cow::Borrowed("internal error"),
            field: None,
            retry_after: None,
            source: Some(source.into()),
        }
    }

    /// A dependency is unavailable; the cause is logged, the client may retry.
    pub fn unavailable(source: impl Into<Source>) -> Self {
        Self {
            code: ErrorCode::Unavailable,
            message: Cow::Borrowed("a service this request needs is unavailable, try again shortly"),
            field: None,
            retry_after: Some(Duration::from_secs(1)),
            source: Some(source.into()),
        }
    }

    /// `INVALID_ARGUMENT` about a field: the message is `"<field>: <problem>"`, and
    /// [`Error::field`] and [`Error::problem`] carry the two parts.
    pub fn invalid(field: &str, problem: impl fmt::Display) -> Self {
        let problem = problem.to_string();
        Self::new(ErrorCode::InvalidArgument, format!("{field}: {problem}")).with_field(field, problem)
    }

    /// `NOT_FOUND` for a kind of thing, e.g. `Error::not_found("pilot")`.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// Attaches a retry hint (sent as `retry-after` seconds, rounded up).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Says which field the error is about (a path like `steps[2].slack.text`) and
    /// what is wrong with it; the message stays as it is.
    pub fn with_field(mut self, path: impl Into<String>, problem: impl Into<String>) -> Self {
        self.field = Some(FieldProblem { path: path.into(), problem: problem.into() });
        self
    }

    /// The path of the field the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        self.field.as_ref().map(|f| f.path.as_str())
    }

    /// What is wrong with [`Error::field`] (the message without where).
    pub fn problem(&self) -> Option<&str> {
        self.field.as_ref().map(|f| f.problem.as_str())
    }

    /// Attaches a cause that is logged, never sent.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The client-safe message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The retry hint, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Reads an error back from a gRPC status produced by [`From<Error> for Status`]
    /// (or any other status, mapped by its code). The message is kept as sent; an
    /// `INTERNAL` from another service keeps only its reference.
    pub fn from_status(status: &tonic::Status) -> Self {
        let code = status
            .metadata()
            .get(CODE_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| ErrorCode::from_grpc(status.code()));
        let retry_after = status
            .metadata()
            .get(RETRY_AFTER_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs);
        let message = if code == ErrorCode::Internal && !status.message().starts_with("internal error") {
            // A status we did not produce (e.g. a transport failure): its text may hold detail.
            Cow::Borrowed("internal error")
        } else {
            Cow::Owned(status.message().to_owned())
        };
        let path = status.metadata().get(FIELD_METADATA_KEY).and_then(|v| v.to_str().ok());
        let problem = status
            .metadata()
            .get_bin(PROBLEM_METADATA_KEY)
            .and_then(|v| v.to_bytes().ok())
            .and_then(|b| String::from_utf8(b.to_vec()).ok());
        let field = match (path, problem) {
            (Some(path), Some(problem)) if code != ErrorCode::Internal => {
                Some(FieldProblem { path: path.to_owned(), problem })
            }
            _ => None,
        };
        Self { code, message, field, retry_after, source: None }
    }

    /// Logs the cause (if any) and returns the reference used in the client message.
    fn log(&self) -> Option<String> {
        let source = self.source.as_deref()?;
        let chain = ErrorChain(source);
        match self.code {
            ErrorCode::Internal => {
                let reference = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
                tracing::error!(error.code = %self.code, error.reference = %reference, error.cause = %chain, "request failed");
                Some(reference)
            }
            ErrorCode::Unavailable | ErrorCode::DeadlineExceeded => {
                tracing::warn!(error.code = %self.code, error.cause = %chain, "dependency unavailable");
                None
            }
            _ => {
                tracing::debug!(error.code = %self.code, error.cause = %chain, "request rejected");
                None
            }
        }
    }
}

/// Displays an error and its `source()` chain, `outer: inner: innermost`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("code", &self.code)
            .field("message", &self.message)
            .field("field", &self.field)
            .field("retry_after", &self.retry_after)
            .field("has_source", &self.source.is_some())
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        let message = match err.log() {
            Some(reference) => format!("internal error (reference {reference})"),
            None => err.message.clone().into_owned(),
        };
        let mut status = tonic::Status::new(err.code.grpc_code(), message);
        status.metadata_mut().insert(CODE_METADATA_KEY, MetadataValue::from_static(err.code.as_str()));
        if let Some(f) = &err.field
            && let Ok(path) = MetadataValue::try_from(f.path.as_str())
        {
            status.metadata_mut().insert(FIELD_METADATA_KEY, path);
            status
                .metadata_mut()
                .insert_bin(PROBLEM_METADATA_KEY, MetadataValue::from_bytes(f.problem.as_bytes()));
        }
        if let Some(after) = err.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            if let Ok(v) = MetadataValue::try_from(secs.max(1).to_string()) {
                status.metadata_mut().insert(RETRY_AFTER_METADATA_KEY, v);
            }
        }
        status
    }
}

/// The JSON body of an HTTP error: `{"error": {"code": "...", "message": "...",
/// "field": "..."}}` (`field` only when the error is about one).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HttpErrorBody {
    /// The error.
    pub error: HttpErrorDetail,
}

/// The inner object of [`HttpErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HttpErrorDetail {
    /// Stable code, e.g. `"NOT_FOUND"`.
    pub code: String,
    /// Short, safe explanation.
    pub message: String,
    /// The path of the field the error is about: within a Pilot's spec for its
    /// content (`title`, `steps[2].slack.text`), else the request's field (`email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Error {
    /// The HTTP status and JSON body for this error (the cause is logged here).
    pub fn to_http(&self) -> (http::StatusCode, HttpErrorBody) {
        let message = match self.log() {
            Some(reference) => format!("internal error (reference {reference})"),
            None => self.message.clone().into_owned(),
        };
        (
            self.code.http_status(),
            HttpErrorBody {
                error: HttpErrorDetail {
                    code: self.code.as_str().to_owned(),
                    message,
                    field: self.field().filter(|_| self.code != ErrorCode::Internal).map(str::to_owned),
                },
            },
        )
    }
}

/// Shorthand for results at a service edge.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_code_round_trips_through_grpc_status() {
        for &code in ErrorCode::ALL {
            let status: tonic::Status = Error::new(code, "something specific").into();
            assert_eq!(status.code(), code.grpc_code(), "{code}");
            let back = Error::from_status(&status);
            assert_eq!(back.code(), code);
            if code != ErrorCode::Internal {
                assert_eq!(back.message(), "something specific");
            }
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
        }
    }

    #[test]
    fn mapping_table_is_as_documented() {
        use http::StatusCode as H;
        use tonic::Code as G;
        let expected = [
            (ErrorCode::InvalidArgument, G::InvalidArgument, H::BAD_REQUEST),
            (ErrorCode::WeakPassword, G::InvalidArgument, H::BAD_REQUEST),
            (ErrorCode::PayloadTooLarge, G::InvalidArgument, H::PAYLOAD_TOO_LARGE),
            (ErrorCode::Unauthenticated, G::Unauthenticated, H::UNAUTHORIZED),
            (ErrorCode::InvalidCredentials, G::Unauthenticated, H::UNAUTHORIZED),
            (ErrorCode::WebhookRejected, G::Unauthenticated, H::UNAUTHORIZED),
            (ErrorCode::PermissionDenied, G::PermissionDenied, H::FORBIDDEN),
            (ErrorCode::CsrfRejected, G::PermissionDenied, H::FORBIDDEN),
            (ErrorCode::NotFound, G::NotFound, H::NOT_FOUND),
            (ErrorCode::MethodNotAllowed, G::Unimplemented, H::METHOD_NOT_ALLOWED),
            (ErrorCode::AlreadyExists, G::AlreadyExists, H::CONFLICT),
            (ErrorCode::StaleVersion, G::Aborted, H::CONFLICT),
            (ErrorCode::FailedPrecondition, G::FailedPrecondition, H::CONFLICT),
            (ErrorCode::PilotDisabled, G::FailedPrecondition, H::CONFLICT),
            (ErrorCode::LimitExceeded, G::FailedPrecondition, H::CONFLICT),
            (ErrorCode::RateLimited, G::ResourceExhausted, H::TOO_MANY_REQUESTS),
            (ErrorCode::Unavailable, G::Unavailable, H::SERVICE_UNAVAILABLE),
            (ErrorCode::DeadlineExceeded, G::DeadlineExceeded, H::GATEWAY_TIMEOUT),
            (ErrorCode::Internal, G::Internal, H::INTERNAL_SERVER_ERROR),
        ];
        assert_eq!(expected.len(), ErrorCode::ALL.len(), "a new code needs a row here and in docs/errors.md");
        for (code, grpc, http) in expected {
            assert_eq!(code.grpc_code(), grpc, "{code}");
            assert_eq!(code.http_status(), http, "{code}");
        }
    }

    #[test]
    fn internal_detail_never_crosses_the_wire() {
        let cause = std::io::Error::other("connection to 10.0.0.7:5432 refused, password=hunter2");
        let status: tonic::Status = Error::internal(cause).into();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().starts_with("internal error (reference "), "{}", status.message());
        assert!(!status.message().contains("10.0.0.7") && !status.message().contains("hunter2"));

        let (http, body) = Error::internal(std::io::Error::other("secret detail")).to_http();
        assert_eq!(http, http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body.error.code, "INTERNAL");
        assert!(!body.error.message.contains("secret detail"));

        // A foreign status whose text may carry detail is reduced to a generic message.
        let foreign = tonic::Status::internal("panicked at src/db.rs:12: password=hunter2");
        assert_eq!(Error::from_status(&foreign).message(), "internal error");
    }

    #[test]
    fn retry_after_is_sent_in_whole_seconds_rounded_up() {
        let status: tonic::Status = Error::new(ErrorCode::RateLimited, "slow down")
            .with_retry_after(Duration::from_millis(1500))
            .into();
        assert_eq!(status.metadata().get(RETRY_AFTER_METADATA_KEY).and_then(|v| v.to_str().ok()), Some("2"));
        assert_eq!(Error::from_status(&status).retry_after(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn the_field_of_an_error_crosses_grpc_and_reaches_http() {
        let e = Error::new(ErrorCode::InvalidArgument, "steps[2] \"notify\": slack.text: is required — “x”")
            .with_field("steps[2].slack.text", "is required — “x”");
        let status: tonic::Status = e.into();
        let back = Error::from_status(&status);
        assert_eq!(back.field(), Some("steps[2].slack.text"));
        assert_eq!(back.problem(), Some("is required — “x”"), "the problem is UTF-8");
        assert_eq!(back.message(), "steps[2] \"notify\": slack.text: is required — “x”");
        let (_, body) = back.to_http();
        assert_eq!(body.error.field.as_deref(), Some("steps[2].slack.text"));
        let json = serde_json::to_string(&body).unwrap();
        assert!(json.contains("\"field\""), "{json}");

        let (_, body) = Error::new(ErrorCode::NotFound, "pilot not found").to_http();
        assert_eq!(body.error.field, None);
        assert!(!serde_json::to_string(&body).unwrap().contains("field"), "no field, no key");
        let plain: tonic::Status = Error::not_found("pilot").into();
        assert_eq!(Error::from_status(&plain).field(), None);
    }

    #[test]
    fn statuses_without_our_metadata_map_by_grpc_code() {
        assert_eq!(Error::from_status(&tonic::Status::not_found("x")).code(), ErrorCode::NotFound);
        assert_eq!(Error::from_status(&tonic::Status::unavailable("x")).code(), ErrorCode::Unavailable);
        assert_eq!(Error::from_status(&tonic::Status::aborted("x")).code(), ErrorCode::StaleVersion);
    }

    #[test]
    fn docs_list_every_code_with_its_mapping() {
        let docs = include_str!("../../../docs/errors.md");
        for &code in ErrorCode::ALL {
            let row = docs
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", code.as_str())))
                .unwrap_or_else(|| panic!("docs/errors.md has no row for {code}"));
            assert!(row.contains(&format!("`{:?}`", code.grpc_code())), "{code}: gRPC code missing in {row}");
            assert!(
                row.contains(&format!("| {} |", code.http_status().as_u16())),
                "{code}: HTTP status in {row}"
            );
        }
    }
}
