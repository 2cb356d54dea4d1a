//! Generated tonic/prost code for every BizOps Pilot contract (`proto/bizops/**`),
//! conversions between protobuf and `time` timestamps, and the standard gRPC
//! services every server exposes (health and reflection v1 + v1alpha).
//!
//! Messages that carry a password, token or secret value have a hand-written
//! `Debug` that prints `[REDACTED]` instead (see `redact.rs`).
#![forbid(unsafe_code)]
#![allow(clippy::all, clippy::unwrap_used, clippy::expect_used)]

mod redact;
pub mod standard;
pub mod timestamp;

/// Encoded `FileDescriptorSet` of every BizOps contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bizops_descriptor.bin"));

/// Shared event types and run/step states (`bizops.events.v1`).
pub mod events {
    pub mod v1 {
        tonic::include_proto!("bizops.events.v1");
    }
}

/// identity service contract (`bizops.identity.v1`).
pub mod identity {
    pub mod v1 {
        tonic::include_proto!("bizops.identity.v1");
    }
}

/// pilot-catalog service contract (`bizops.catalog.v1`).
pub mod catalog {
    pub mod v1 {
        tonic::include_proto!("bizops.catalog.v1");
    }
}

/// credential-vault service contract (`bizops.vault.v1`).
pub mod vault {
    pub mod v1 {
        tonic::include_proto!("bizops.vault.v1");
    }
}

/// executor service contract (`bizops.executor.v1`).
pub mod executor {
    pub mod v1 {
        tonic::include_proto!("bizops.executor.v1");
    }
}
