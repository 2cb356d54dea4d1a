//! `bizops-topology`: the topology for shell scripts (`make run`, `scripts/dev-keys`).
//!
//! - `bizops-topology order` — the binaries in start order, one a line;
//! - `bizops-topology list` — `<name> <binary> <port> <metrics port>` per service;
//! - `bizops-topology keys` — `<kind> <name>` per key the suite needs (`session
//!   identity`, `service gateway`, `keyring vault`, `csrf gateway`, …);
//! - `bizops-topology env <name> <nats url>` — `VAR=value` lines: the environment
//!   that wires service `<name>` on this machine (the other services at
//!   `http://127.0.0.1:<default port>`), its keys read from the variables
//!   `scripts/dev-keys` writes: `IDENTITY_SIGNING_KEY`, `<NAME>_SERVICE_KEY` and
//!   `<NAME>_SERVICE_PUBLIC`, `<NAME>_KEYRING` (its first id is the active one),
//!   `<NAME>_CSRF_KEY`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use bizops_topology::{Key, Keys, Topology, Wiring};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&Topology::get(), &args) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bizops-topology: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(t: &Topology, args: &[&str]) -> Result<Vec<String>, String> {
    match args {
        ["order"] => Ok(t.start_order().map_err(|e| e.0)?.iter().map(|s| s.binary.clone()).collect()),
        ["list"] => Ok(t
            .services
            .iter()
            .map(|s| format!("{} {} {} {}", s.name, s.binary, s.port(), s.metrics_port))
            .collect()),
        ["keys"] => {
            let mut lines = Vec::new();
            for s in &t.services {
                for key in &s.keys {
                    match key {
                        Key::Session => lines.push(format!("session {}", s.name)),
                        Key::Keyring => lines.push(format!("keyring {}", s.name)),
                        Key::Csrf => lines.push(format!("csrf {}", s.name)),
                        Key::Service => {}
                    }
                }
            }
            lines.extend(t.identities().iter().map(|id| format!("service {id}")));
            Ok(lines)
        }
        ["env", name, nats_url] => {
            let service = t.service(name).ok_or_else(|| format!("no service {name}"))?;
            let keys = dev_keys(t)?;
            let url = |callee: &str| {
                let port = t.service(callee).map(|s| s.port()).unwrap_or_default();
                format!("http://127.0.0.1:{port}")
            };
            let wiring = Wiring { keys: &keys, url: &url, static_session_keys: false, nats_url };
            let mut lines: Vec<String> = t
                .env(&service.name, &wiring)
                .map_err(|e| e.0)?
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if lines.iter().any(|l| l.contains('\n')) {
                return Err("a key holds a line break".into());
            }
            lines.sort();
            Ok(lines)
        }
        _ => Err("usage: bizops-topology order | list | keys | env <service> <nats url>".into()),
    }
}

/// The keys `scripts/dev-keys` wrote, from the environment (`.dev/keys.env` sourced).
fn dev_keys(t: &Topology) -> Result<Keys, String> {
    let var =
        |name: String| std::env::var(&name).map_err(|_| format!("{name} is not set (scripts/dev-keys)"));
    let upper = |name: &str| name.to_ascii_uppercase();
    let mut keys = Keys::default();
    for s in &t.services {
        let n = upper(&s.name);
        for key in &s.keys {
            match key {
                Key::Session => keys.session = var(format!("{n}_SIGNING_KEY"))?,
                Key::Keyring => {
                    let ring = var(format!("{n}_KEYRING"))?;
                    let active = ring.split(':').next().unwrap_or_default().trim().to_owned();
                    keys.keyring.insert(s.name.clone(), (ring, active));
                }
                Key::Csrf => {
                    keys.csrf.insert(s.name.clone(), var(format!("{n}_CSRF_KEY"))?);
                }
                Key::Service => {}
            }
        }
    }
    for id in t.identities() {
        let n = upper(id);
        keys.service
            .insert(id.to_owned(), (var(format!("{n}_SERVICE_KEY"))?, var(format!("{n}_SERVICE_PUBLIC"))?));
    }
    Ok(keys)
}
