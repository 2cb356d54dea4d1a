//! Generates the Rust code of every contract under `proto/` with protox (a pure-Rust
//! protobuf compiler: no `protoc` needed) and tonic-prost-build.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

/// Messages that carry a password, a token or a secret value. They do not derive
/// `Debug`; `src/redact.rs` implements a `Debug` that hides those fields, so a stray
/// `{:?}` can never print a secret.
const REDACTED: &[&str] = &[
    "bizops.identity.v1.RegisterRequest",
    "bizops.identity.v1.LoginRequest",
    "bizops.identity.v1.Session",
    "bizops.identity.v1.ChangePasswordRequest",
    "bizops.identity.v1.VerifySessionRequest",
    "bizops.identity.v1.DeleteAccountRequest",
    "bizops.catalog.v1.CreatePilotResponse",
    "bizops.catalog.v1.ImportPilotResponse",
    "bizops.catalog.v1.RotateWebhookSecretResponse",
    "bizops.catalog.v1.VerifyWebhookRequest",
    "bizops.vault.v1.PutCredentialRequest",
    "bizops.vault.v1.ResolvedCredential",
    "bizops.events.v1.Trigger",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.join("../../proto").canonicalize()?;
    let files = [
        "bizops/events/v1/events.proto",
        "bizops/identity/v1/identity.proto",
        "bizops/catalog/v1/catalog.proto",
        "bizops/vault/v1/vault.proto",
        "bizops/executor/v1/executor.proto",
    ];
    println!("cargo:rerun-if-changed={}", root.display());
    for file in files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }

    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("bizops_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        // A webhook's body travels gateway → catalog (to verify) → JetStream as
        // reference-counted `Bytes`: no copy per hop or per retry.
        .bytes(".bizops.catalog.v1.VerifyWebhookRequest.body")
        .bytes(".bizops.events.v1.Trigger.payload")
        .build_client(true)
        .build_server(true)
        .skip_debug(REDACTED.iter().map(|name| format!(".{name}")))
        .compile_fds(fds)?;
    Ok(())
}
