//! An HTTP client that behaves like a browser towards the gateway: one cookie
//! jar (the session cookie), `Origin` on state-changing requests, the CSRF token
//! remembered from the last session answer, and a record of every request it
//! made (so a test can show which routes it exercised). The gateway's own tests
//! (against fakes) and the end-to-end tests (against the real suite) share it.
//! A test's client: an answer it cannot read fails the test on the spot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;

use crate::wait::Polling;

/// The production cookie name.
pub const COOKIE: &str = "__Host-bizops_session";
/// The public origin tests give the gateway, sent as `Origin` by browsers.
pub const ORIGIN: &str = "https://gateway.test";
pub use crate::PASSWORD;

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    /// The body as JSON (panics with the body when it is not).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// `error.code` of an error answer (empty when there is none).
    pub fn error_code(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Asserts the one error shape, `{"error": {"code", "message"}}` and nothing
    /// else, with `status` and `code`.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(
            self.header("content-type").is_some_and(|c| c.starts_with("application/json")),
            "not JSON: {:?} {}",
            self.header("content-type"),
            self.body
        );
        let v = self.json();
        let outer = v.as_object().expect("an object");
        assert_eq!(outer.keys().collect::<Vec<_>>(), ["error"], "{}", self.body);
        let inner = v["error"].as_object().expect("error is an object");
        let keys: Vec<&str> = inner.keys().map(String::as_str).filter(|k| *k != "field").collect();
        assert_eq!(keys.len(), 2, "code and message, and a field only when it is about one: {}", self.body);
        if let Some(field) = inner.get("field") {
            assert!(field.as_str().is_some_and(|f| !f.is_empty()), "{}", self.body);
        }
        assert_eq!(v["error"]["code"], code, "{}", self.body);
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.body);
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    }

    #[track_caller]
    pub fn assert(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        self
    }
}

/// One request a [`Browser`] made.
#[derive(Debug, Clone)]
pub struct Visit {
    pub method: Method,
    /// The path as sent, without the query.
    pub path: String,
    pub status: StatusCode,
}

/// A browser of one person.
pub struct Browser {
    http: reqwest::Client,
    pub base: String,
    /// Sent as `Origin` on every request but GET (`None`: no `Origin`).
    pub origin: Option<String>,
    /// Sent as `X-Forwarded-For` on every request (a gateway configured with
    /// `BIZOPS_CLIENT_IP_HEADER` takes it as the client's address).
    pub forwarded_for: Option<String>,
    /// The session cookie (name, value) as the last `Set-Cookie` left it.
    pub cookie: Option<(String, String)>,
    /// Sent as `X-CSRF-Token` with JSON requests and as `csrf_token` in forms.
    pub csrf: Option<String>,
    /// Every cookie name any response ever set.
    pub cookie_names: BTreeSet<String>,
    pub email: String,
    /// Every request made, in order.
    pub history: Vec<Visit>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self {
            http,
            base: base.to_owned(),
            origin: Some(ORIGIN.into()),
            forwarded_for: None,
            cookie: None,
            csrf: None,
            cookie_names: BTreeSet::new(),
            email: String::new(),
            history: Vec::new(),
        }
    }

    /// Waits (at most 30 s) until a run of `pilot` listed by the API has `status`;
    /// that run (as the API lists it).
    pub async fn wait_for_run(&mut self, pilot: &str, status: &str) -> Value {
        let mut wait = Polling::new(std::time::Duration::from_secs(30));
        loop {
            let list = self.get(&format!("/api/v1/pilots/{pilot}/runs")).await;
            list.assert(StatusCode::OK);
            if let Some(run) = list.json()["runs"].as_array().unwrap().iter().find(|r| r["status"] == status)
            {
                return run.clone();
            }
            wait.next(format!("a run of {pilot} that is {status}: {}", list.body)).await;
        }
    }

    /// The session token (the cookie's value).
    pub fn token(&self) -> Option<String> {
        self.cookie.as_ref().map(|c| c.1.clone())
    }

    fn request(&self, method: &Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some((name, value)) = &self.cookie {
            req = req.header("cookie", format!("{name}={value}"));
        }
        if let Some(address) = &self.forwarded_for {
            req = req.header("x-forwarded-for", address);
        }
        if *method != Method::GET
            && let Some(origin) = &self.origin
        {
            req = req.header("origin", origin);
        }
        req
    }

    fn visited(&mut self, method: Method, path: &str, status: StatusCode) {
        let path = path.split('?').next().unwrap_or_default().to_owned();
        self.history.push(Visit { method, path, status });
    }

    fn take_cookies(&mut self, headers: &HeaderMap) {
        for cookie in headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
            let (pair, attrs) = cookie.split_once(';').unwrap_or((cookie, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookie_names.insert(name.to_owned());
            if value.is_empty() || attrs.contains("Max-Age=0") {
                self.cookie = None;
            } else {
                self.cookie = Some((name.to_owned(), value.to_owned()));
            }
        }
    }

    /// Sends a request (`build` adds what it needs) and reads the answer whole.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Resp {
        let response = build(self.request(&method, path)).send().await.expect("the gateway answers");
        let status = response.status();
        let headers = response.headers().clone();
        self.take_cookies(&headers);
        self.visited(method, path, status);
        let body = response.text().await.unwrap_or_default();
        Resp { status, headers, body }
    }

    /// A GET whose body is left to the caller (Server-Sent Events).
    pub async fn stream(&mut self, path: &str) -> reqwest::Response {
        let response = self.request(&Method::GET, path).send().await.expect("the gateway answers");
        self.visited(Method::GET, path, response.status());
        response
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        self.send(Method::GET, path, |r| r).await
    }

    /// A JSON request with the CSRF token (when there is one).
    pub async fn json(&mut self, method: Method, path: &str, body: &Value) -> Resp {
        let token = self.csrf.clone();
        let body = body.clone();
        self.send(method, path, move |r| {
            let r = r.json(&body);
            match token {
                Some(t) => r.header("x-csrf-token", t),
                None => r,
            }
        })
        .await
    }

    pub async fn post_json(&mut self, path: &str, body: &Value) -> Resp {
        self.json(Method::POST, path, body).await
    }

    pub async fn put_json(&mut self, path: &str, body: &Value) -> Resp {
        self.json(Method::PUT, path, body).await
    }

    pub async fn delete(&mut self, path: &str) -> Resp {
        self.json(Method::DELETE, path, &serde_json::json!({})).await
    }

    pub async fn post_empty(&mut self, path: &str) -> Resp {
        self.json(Method::POST, path, &serde_json::json!({})).await
    }

    /// A form post with the session's CSRF token in the `csrf_token` field.
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let mut pairs: Vec<(String, String)> =
            fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        if let Some(t) = &self.csrf {
            pairs.push(("csrf_token".into(), t.clone()));
        }
        self.send(Method::POST, path, move |r| r.form(&pairs)).await
    }

    /// Registers through the API (201) and signs in; remembers the CSRF token.
    pub async fn sign_up_and_in(&mut self, email: &str) {
        self.email = email.to_owned();
        let r = self
            .post_json("/api/v1/auth/register", &serde_json::json!({"email": email, "password": PASSWORD}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        self.sign_in(PASSWORD).await.assert(StatusCode::OK);
    }

    /// Signs in through the API with `password`; on success remembers the CSRF token.
    pub async fn sign_in(&mut self, password: &str) -> Resp {
        let email = self.email.clone();
        let r = self
            .post_json("/api/v1/auth/login", &serde_json::json!({"email": email, "password": password}))
            .await;
        if r.status == StatusCode::OK {
            self.csrf = r.json()["csrf_token"].as_str().map(str::to_owned);
        }
        r
    }

    /// Reloads the CSRF token from `GET /api/v1/session` (after a form sign-in).
    pub async fn refresh_csrf(&mut self) {
        self.csrf = self.get("/api/v1/session").await.json()["csrf_token"].as_str().map(str::to_owned);
    }
}

/// Reads Server-Sent Events (name, data) from `response` until `until` says so,
/// the stream ends, or 15 s pass (then it panics with what it got).
pub async fn read_events(
    response: reqwest::Response,
    mut until: impl FnMut(&str, &str) -> bool,
) -> Vec<(String, String)> {
    use futures_util::StreamExt as _;
    let mut events = Vec::new();
    let mut buffer = String::new();
    let mut stream = response.bytes_stream();
    let read = async {
        while let Some(chunk) = stream.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    }
                    if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() && name == "message" {
                    continue;
                }
                let done = until(&name, &data);
                events.push((name, data));
                if done {
                    return;
                }
            }
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(15), read).await.is_err() {
        panic!("timed out reading events; got {events:?}");
    }
    events
}
