//! The daemon's optional endpoints, the control socket and the metrics
//! listener: when they start, how a bind that fails is retried, and how
//! each one's state reaches the status document.
//!
//! The firewall never depends on them. They start once the first reconcile
//! pass is over (protection is installed, or status says why not), a bind
//! that fails (a port someone else holds, an address not up yet at boot) is
//! retried in the background with backoff, and every failure is logged and
//! shown in status (`endpoints`). Nothing here can stop the daemon or hold
//! up a pass. This module never touches the firewall or the policy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::control::{self, Handles, ReloadRequest};
use crate::daemon::error_chain;
use crate::status::{EndpointState, EndpointStatus, Status};

/// First wait after a failed bind; doubled after every failure.
pub const RETRY_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between two binds: an address that comes up at boot, or a
/// port set free, is served within this long.
pub const RETRY_MAX: Duration = Duration::from_secs(8);

/// What the daemon was asked to serve.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The control socket's path.
    pub socket: PathBuf,
    /// Where to serve `/metrics`, if anywhere (`--metrics-listen`).
    pub metrics: Option<SocketAddr>,
}

impl Endpoints {
    /// One status entry per endpoint, all waiting for the first pass: the
    /// control socket at index 0, the metrics at 1.
    fn waiting(&self) -> Vec<EndpointStatus> {
        let mut all = vec![EndpointStatus::waiting(
            "control",
            self.socket.display().to_string(),
        )];
        if let Some(addr) = self.metrics {
            all.push(EndpointStatus::waiting("metrics", addr.to_string()));
        }
        all
    }
}

/// Serve the endpoints until `shutdown`: wait for the first pass in
/// `status` (the reconcile loop's), then bind each endpoint, retrying with
/// backoff while a bind fails. What the endpoints serve is `status` with
/// their own states added.
pub async fn run(
    endpoints: Endpoints,
    status: watch::Receiver<Status>,
    reload: mpsc::Sender<ReloadRequest>,
    shutdown: CancellationToken,
) {
    let (states_tx, states_rx) = watch::channel(endpoints.waiting());
    let (served_tx, served_rx) = watch::channel(Status::default());
    let tracker = TaskTracker::new();
    tracker.spawn(merge(
        status.clone(),
        states_rx,
        served_tx,
        shutdown.clone(),
    ));
    if first_pass_over(status, &shutdown).await {
        let handles = Handles {
            status: served_rx.clone(),
            reload,
        };
        let socket = endpoints.socket.clone();
        let serving = shutdown.clone();
        tracker.spawn(keep_bound(
            Bound::new(0, states_tx.clone(), shutdown.clone()),
            move || control::bind(&socket).map_err(|e| error_chain(&e)),
            move |listener| control::serve(listener, handles, serving),
        ));
        if let Some(addr) = endpoints.metrics {
            let serving = shutdown.clone();
            tracker.spawn(keep_bound(
                Bound::new(1, states_tx, shutdown.clone()),
                move || bind_tcp(addr),
                move |listener| crate::metrics::serve(listener, served_rx, serving),
            ));
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// Whether the reconcile loop finished its first pass before `shutdown`.
async fn first_pass_over(
    mut status: watch::Receiver<Status>,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        over = status.wait_for(|s| s.reconcile.passes.count > 0) => over.is_ok(),
    }
}

/// Publish the loop's status with the endpoints' states in it, at every
/// change of either, until `shutdown` or the loop is gone.
async fn merge(
    mut status: watch::Receiver<Status>,
    mut states: watch::Receiver<Vec<EndpointStatus>>,
    served: watch::Sender<Status>,
    shutdown: CancellationToken,
) {
    loop {
        let mut merged = status.borrow_and_update().clone();
        merged.endpoints = states.borrow_and_update().clone();
        served.send_replace(merged);
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = status.changed() => if changed.is_err() { return },
            changed = states.changed() => if changed.is_err() { return },
        }
    }
}

/// A TCP listener on `addr`, without waiting on anything.
fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, String> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(TcpListener::from_std)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    Ok(listener)
}

/// One endpoint's entry in the shared states, and how it is reported.
struct Bound {
    index: usize,
    /// The states of all endpoints, merged into the served status.
    states: watch::Sender<Vec<EndpointStatus>>,
    /// The daemon's shutdown: a bind retry or a serving endpoint stops on it.
    shutdown: CancellationToken,
}

impl Bound {
    fn new(
        index: usize,
        states: watch::Sender<Vec<EndpointStatus>>,
        shutdown: CancellationToken,
    ) -> Self {
        Bound {
            index,
            states,
            shutdown,
        }
    }

    fn update(&self, change: impl FnOnce(&mut EndpointStatus)) {
        self.states.send_modify(|all| {
            if let Some(entry) = all.get_mut(self.index) {
                change(entry);
            }
        });
    }

    fn entry(&self) -> EndpointStatus {
        let all = self.states.borrow();
        all.get(self.index).cloned().unwrap_or_default()
    }
}

/// Bind with `bind` until it succeeds (waiting longer after each failure,
/// up to [`RETRY_MAX`]), then `serve` the listener; report each step.
async fn keep_bound<L, B, S, F>(endpoint: Bound, mut bind: B, serve: S)
where
    B: FnMut() -> Result<L, String>,
    S: FnOnce(L) -> F,
    F: Future<Output = ()>,
{
    let mut delay = RETRY_FIRST;
    let listener = loop {
        match bind() {
            Ok(listener) => break listener,
            Err(error) => {
                let before = endpoint.entry();
                if before.error.as_deref() != Some(error.as_str()) {
                    warn!(
                        endpoint = %before.name,
                        address = %before.address,
                        %error,
                        "endpoint unavailable; retrying in the background (the firewall does not wait for it)"
                    );
                }
                endpoint.update(|e| {
                    e.state = EndpointState::Failing;
                    e.error = Some(error);
                    e.failures += 1;
                });
                tokio::select! {
                    () = endpoint.shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    };
    let entry = endpoint.entry();
    info!(endpoint = %entry.name, address = %entry.address, failures = entry.failures, "endpoint listening");
    endpoint.update(|e| {
        e.state = EndpointState::Listening;
        e.error = None;
    });
    serve(listener).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The loop's status once its first pass is over.
    fn started() -> Status {
        let mut status = Status::default();
        status.reconcile.passes.count = 1;
        status.reconcile.result = "applied".into();
        status
    }

    fn socket_path(name: &str) -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dockfw-endpoints-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("control.sock")
    }

    async fn state_of(status: &mut watch::Receiver<Status>, name: &str, want: EndpointState) {
        let found = tokio::time::timeout(
            Duration::from_secs(20),
            status.wait_for(|s| {
                s.endpoints
                    .iter()
                    .any(|e| e.name == name && e.state == want)
            }),
        )
        .await;
        assert!(found.is_ok(), "{name} never became {want:?}");
    }

    /// Serves `endpoints` from a fake loop's status; the status the control
    /// socket would serve is read back through a control request.
    struct Running {
        loop_status: watch::Sender<Status>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(endpoints: Endpoints) -> Running {
        let (loop_status, status_rx) = watch::channel(Status::default());
        let (reload, _reloads) = mpsc::channel(1);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(endpoints, status_rx, reload, shutdown.clone()));
        Running {
            loop_status,
            shutdown,
            task,
        }
    }

    async fn ask_status(socket: &std::path::Path) -> Status {
        match control::request(socket, &control::Request::Status).await {
            Ok(control::Response::Status(status)) => *status,
            other => panic!("no status: {other:?}"),
        }
    }

    #[tokio::test]
    async fn nothing_binds_before_the_first_pass() {
        let socket = socket_path("first-pass");
        let endpoints = Endpoints {
            socket: socket.clone(),
            metrics: None,
        };
        let running = start(endpoints);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !socket.exists(),
            "the control socket was bound before protection"
        );
        running.loop_status.send_replace(started());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(tokio::time::Instant::now() < deadline, "never bound");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let status = ask_status(&socket).await;
        assert_eq!(status.endpoints[0].state, EndpointState::Listening);
        assert_eq!(status.reconcile.result, "applied");
        running.shutdown.cancel();
        running.task.await.expect("endpoints task");
        assert!(!socket.exists(), "the socket file stays after shutdown");
    }

    #[tokio::test]
    async fn a_metrics_port_held_by_another_is_reported_and_retried_until_free() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = holder.local_addr().expect("addr");
        let socket = socket_path("port-taken");
        let endpoints = Endpoints {
            socket: socket.clone(),
            metrics: Some(addr),
        };
        let running = start(endpoints);
        running.loop_status.send_replace(started());
        let mut watched = watch_served(&socket).await;
        state_of(&mut watched, "metrics", EndpointState::Failing).await;
        let status = ask_status(&socket).await;
        let metrics = &status.endpoints[1];
        assert!(
            metrics
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("in use"),
            "{metrics:?}"
        );
        assert!(metrics.failures >= 1);
        drop(holder);
        state_of(&mut watched, "metrics", EndpointState::Listening).await;
        let answer = scrape(addr).await;
        assert!(answer.contains(" 200 OK"), "{answer}");
        running.shutdown.cancel();
        running.task.await.expect("endpoints task");
    }

    #[tokio::test]
    async fn a_metrics_address_not_on_the_host_is_reported_not_fatal() {
        // TEST-NET-1: on no interface here.
        let addr: SocketAddr = "192.0.2.99:9469".parse().expect("addr");
        let socket = socket_path("no-address");
        let endpoints = Endpoints {
            socket: socket.clone(),
            metrics: Some(addr),
        };
        let running = start(endpoints);
        running.loop_status.send_replace(started());
        let mut watched = watch_served(&socket).await;
        state_of(&mut watched, "metrics", EndpointState::Failing).await;
        state_of(&mut watched, "control", EndpointState::Listening).await;
        let status = ask_status(&socket).await;
        let error = status.endpoints[1].error.clone().unwrap_or_default();
        assert!(error.contains("192.0.2.99:9469"), "{error}");
        running.shutdown.cancel();
        running.task.await.expect("endpoints task");
    }

    /// The served status, polled over the control socket into a watch.
    async fn watch_served(socket: &std::path::Path) -> watch::Receiver<Status> {
        let (tx, rx) = watch::channel(Status::default());
        let socket = socket.to_owned();
        tokio::spawn(async move {
            loop {
                if let Ok(control::Response::Status(status)) =
                    control::request(&socket, &control::Request::Status).await
                    && tx.send(*status).is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        rx
    }

    async fn scrape(addr: SocketAddr) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await;
        answer
    }
}
