//! Docker edge (placeholder until the bollard source lands).

use std::future::Future;

use futures_util::stream::BoxStream;

use crate::inventory::Inventory;

pub trait DockerSource: Send + Sync + 'static {
    fn snapshot(&self) -> impl Future<Output = Result<Snapshot, DockerError>> + Send;
    fn events(&self) -> BoxStream<'static, Result<String, DockerError>>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub engine: Engine,
    pub inventory: Inventory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    pub version: String,
    pub api_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("docker unreachable: {0}")]
    Unreachable(String),
}
