//! Control socket (placeholder until the real one lands).

use tokio::sync::{mpsc, oneshot, watch};

use crate::status::Status;

pub type ReloadRequest = oneshot::Sender<Result<String, String>>;

pub struct Handles {
    pub status: watch::Receiver<Status>,
    pub reload: mpsc::Sender<ReloadRequest>,
}
