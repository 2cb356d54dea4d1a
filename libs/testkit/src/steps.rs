//! Catalog steps for tests: `step("notify", slack("hi"))`.

use bizops_proto::catalog::v1::{self as pb, step::Kind};

/// A step named `key` doing `kind`, with every other field at its default.
pub fn step(key: &str, kind: Kind) -> pb::Step {
    pb::Step { key: key.into(), kind: Some(kind), ..Default::default() }
}

/// A transform step rendering `template`.
pub fn transform(template: &str) -> Kind {
    Kind::Transform(pb::TransformStep { template: template.into() })
}

/// A Slack step posting `text` through the owner's `slack` credential.
pub fn slack(text: &str) -> Kind {
    Kind::Slack(pb::SlackStep { connector: String::new(), text: text.into() })
}

/// An HTTP step calling `url` with `method`, every other field at its default.
pub fn http(method: pb::HttpMethod, url: &str) -> Kind {
    Kind::Http(pb::HttpStep { method: method as i32, url: url.into(), ..Default::default() })
}
