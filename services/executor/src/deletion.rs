//! Deleting a Pilot's or an owner's data everywhere the executor keeps it. Used
//! by the RPC edge (DeletePilotData, DeleteOwnerData) and by the intake's
//! pilot-deleted consumer.

use std::time::Duration;

use async_nats::jetstream;
use bizops_bus::Subjects;
use uuid::Uuid;

use crate::{clients::Clients, system::SystemStore};

/// Deletes a Pilot's or an owner's data everywhere the executor keeps it: the
/// database, the queued triggers in NATS, and the version cache.
#[derive(Clone)]
pub struct Deleter {
    /// System store.
    pub system: SystemStore,
    /// JetStream.
    pub js: jetstream::Context,
    /// Names.
    pub subjects: Subjects,
    /// Catalog cache.
    pub clients: Clients,
    /// Delay of the second deletion pass (catches a trigger taken in concurrently).
    pub second_pass: Duration,
}

impl Deleter {
    async fn purge(&self, stream: String, filter: String) -> anyhow::Result<()> {
        match self.js.get_stream(&stream).await {
            Ok(s) => {
                s.purge().filter(filter).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A Pilot's runs, jobs and queued triggers.
    pub async fn pilot(&self, owner: Uuid, pilot: Uuid) -> anyhow::Result<(u64, u64)> {
        self.clients.forget_pilot(pilot);
        self.purge(self.subjects.triggers_stream(), self.subjects.trigger(owner, pilot)).await?;
        let first = self.system.delete_pilot(owner, pilot).await?;
        tokio::time::sleep(self.second_pass).await;
        let second = self.system.delete_pilot(owner, pilot).await?;
        Ok((first.0 + second.0, first.1 + second.1))
    }

    /// An owner's runs, jobs, approvals and queued triggers; running work stops
    /// at its next step (its run is gone).
    pub async fn owner(&self, owner: Uuid) -> anyhow::Result<(u64, u64)> {
        self.clients.forget_owner(owner);
        for (stream, filter) in self.subjects.owner_filters(owner) {
            self.purge(stream, filter).await?;
        }
        let first = self.system.delete_owner(owner).await?;
        tokio::time::sleep(self.second_pass).await;
        let second = self.system.delete_owner(owner).await?;
        Ok((first.0 + second.0, first.1 + second.1))
    }
}
