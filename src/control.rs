//! The control socket: how `dockfw status` and `dockfw reload` talk to the
//! running daemon. This module owns the wire protocol, the server's accept
//! loop and the client; it never touches the firewall or the policy itself,
//! it only reads the latest [`Status`] and forwards reload requests.
//!
//! # Protocol
//! Newline-delimited JSON over a Unix stream socket. The client sends one
//! request line, the server answers with one response line, then closes:
//!
//! ```text
//! -> {"cmd":"status"}
//! <- {"ok":true,"status":{...}}
//! -> {"cmd":"reload"}
//! <- {"ok":true,"message":"..."}        or  {"ok":false,"error":"..."}
//! ```
//!
//! A request line may be at most [`MAX_REQUEST_BYTES`] long and must arrive
//! within [`REQUEST_TIMEOUT`]. Any peer that can open the socket (root and the
//! `dockfw` group, mode 0660) may ask for the status; only root may ask for a
//! reload.
//!
//! # Limits
//! The server answers at most [`Limits`] connections at once, counted by the
//! peer's uid (`SO_PEERCRED`), with a reserve of its own for root. A
//! connection over a limit is accepted and closed at once, after a
//! `{"ok":false,"error":"too many connections"}` line if the socket takes it
//! without waiting: a flood by one group member never holds the daemon's
//! descriptors (which it needs for iptables and Docker), nor the backlog that
//! root's `dockfw status` waits in.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::status::Status;

/// Longest request line the server reads; anything longer is refused.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// Longest response line the client reads: the daemon bounds its status
/// document below this ([`Status::bounded`]), with room for the envelope.
const MAX_RESPONSE_BYTES: u64 = crate::status::MAX_DOCUMENT_BYTES as u64 + 64 * 1024;
/// How long a client may hold a connection before its request line is in;
/// short, because until then it holds one of the [`Limits`] places.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client may take to take the response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server waits for the daemon to answer a reload.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client waits for the whole exchange; above `RELOAD_TIMEOUT`.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);
/// How long the accept loop pauses after a failed accept (out of descriptors
/// and the like) rather than spin on it.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Refused connections are logged at most once per this interval.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// The error line sent to a connection over a limit.
const TOO_MANY_CONNECTIONS: &str = "too many connections";
/// How long shutdown waits for connections still being answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Group given access to the socket, if it exists.
const SOCKET_GROUP: &str = "dockfw";
const SOCKET_MODE: u32 = 0o660;
const DIR_MODE: u32 = 0o755;

/// One request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Reload,
}

/// One response line; on the wire it is `{"ok":..,"status"|"message"|"error":..}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "WireResponse", try_from = "WireResponse")]
pub enum Response {
    Status(Box<Status>),
    Message(String),
    Error(String),
}

/// The response as it appears on the wire, before checking it is one of the
/// three shapes [`Response`] allows.
#[derive(Serialize, Deserialize)]
struct WireResponse {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Box<Status>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<Response> for WireResponse {
    fn from(response: Response) -> Self {
        let mut wire = WireResponse {
            ok: true,
            status: None,
            message: None,
            error: None,
        };
        match response {
            Response::Status(status) => wire.status = Some(status),
            Response::Message(message) => wire.message = Some(message),
            Response::Error(error) => (wire.ok, wire.error) = (false, Some(error)),
        }
        wire
    }
}

impl TryFrom<WireResponse> for Response {
    type Error = String;

    fn try_from(wire: WireResponse) -> Result<Self, String> {
        match wire {
            WireResponse {
                ok: true,
                status: Some(status),
                message: None,
                error: None,
            } => Ok(Response::Status(status)),
            WireResponse {
                ok: true,
                status: None,
                message: Some(message),
                error: None,
            } => Ok(Response::Message(message)),
            WireResponse {
                ok: false,
                status: None,
                message: None,
                error: Some(error),
            } => Ok(Response::Error(error)),
            _ => Err("expected exactly one of status, message (ok) or error (not ok)".to_string()),
        }
    }
}

/// The daemon's answer to a reload: `Ok(summary)` or `Err(policy errors)`.
pub type ReloadRequest = oneshot::Sender<Result<String, String>>;

/// What the server needs from the daemon.
#[derive(Debug, Clone)]
pub struct Handles {
    /// The latest status, published by the reconcile loop; a watch channel so
    /// a status request never waits for a reconcile in progress.
    pub status: watch::Receiver<Status>,
    /// Asks the daemon to re-read the policy; each request carries the
    /// oneshot on which the daemon answers.
    pub reload: mpsc::Sender<ReloadRequest>,
}

/// How many connections the server answers at once. Each answered
/// connection holds a descriptor; a connection over a limit is closed as soon
/// as it is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections from all peers but root, together.
    pub total: usize,
    /// Connections from any one uid but root; peers whose uid is unknown
    /// count as one uid.
    pub per_uid: usize,
    /// Connections from root, counted apart from `total`, so that root's
    /// `status` and `reload` get in while other peers flood the socket.
    pub root: usize,
}

impl Default for Limits {
    /// 64 + 8 descriptors at most, far below the daemon's limit; one group
    /// member fills an eighth of the shared places.
    fn default() -> Self {
        Limits {
            total: 64,
            per_uid: 8,
            root: 8,
        }
    }
}

/// Why the socket could not be bound, or the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("dockfw is already running (it answers on {path})")]
    AlreadyRunning { path: PathBuf },
    #[error("{path} exists and is not a socket")]
    NotASocket { path: PathBuf },
    #[error("cannot create socket directory {path}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot remove stale socket {path}")]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("cannot bind control socket {path}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot set owner and mode of control socket {path}")]
    Permissions { path: PathBuf, source: io::Error },
    #[error("dockfw daemon is not running (nothing listens on {path})")]
    NotRunning { path: PathBuf, source: io::Error },
    #[error("cannot talk to dockfw daemon on {path}")]
    Io { path: PathBuf, source: io::Error },
    #[error("dockfw daemon on {path} did not answer within {}", humantime::format_duration(*.after))]
    Timeout { path: PathBuf, after: Duration },
    #[error("dockfw daemon on {path} closed the connection without answering")]
    NoResponse { path: PathBuf },
    #[error("invalid response from dockfw daemon on {path}")]
    BadResponse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Binds the control socket at `path`: creates its directory (0755) if
/// missing, replaces a stale socket, refuses if a daemon answers there, and
/// makes the socket 0660, group `dockfw` when that group exists. The owner is
/// the daemon's user, root in production. Must be called inside a tokio
/// runtime.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        create_socket_dir(dir).map_err(|source| ControlError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    remove_stale_socket(path)?;
    let listener = UnixListener::bind(path).map_err(|source| ControlError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    set_socket_permissions(path).map_err(|source| ControlError::Permissions {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(listener)
}

/// Creates the socket's directory if missing, 0755 whatever the umask.
fn create_socket_dir(dir: &Path) -> io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
}

/// Removes a socket left behind by a daemon that died; leaves a live one,
/// and anything that is not a socket, alone.
fn remove_stale_socket(path: &Path) -> Result<(), ControlError> {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(ControlError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ControlError::AlreadyRunning {
            path: path.to_path_buf(),
        });
    }
    fs::remove_file(path).map_err(|source| ControlError::RemoveStale {
        path: path.to_path_buf(),
        source,
    })
}

fn set_socket_permissions(path: &Path) -> io::Result<()> {
    if let Some(gid) = group_id(SOCKET_GROUP) {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE))
}

/// Looks a group up by name through NSS; `None` if it does not exist.
fn group_id(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: all-zero is a valid `group` (null pointers, zero gid).
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buf.len()` is the
        // length of `buf`; the reentrant variant keeps no shared state.
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut group,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            0 if !found.is_null() => return Some(group.gr_gid),
            _ => return None,
        }
    }
}

/// Whether a peer with this uid may ask for a reload.
pub fn may_reload(uid: u32) -> bool {
    uid == 0
}

/// [`serve_with`] the default [`Limits`].
pub async fn serve(listener: UnixListener, handles: Handles, shutdown: CancellationToken) {
    serve_with(listener, handles, shutdown, Limits::default()).await;
}

/// Answers connections until `shutdown` is cancelled, each in its own task and
/// at most `limits` at once, then waits up to [`SHUTDOWN_GRACE`] for answers
/// in flight and removes the socket file. A connection still running after
/// that is abandoned; its own timeouts bound how long it can last.
pub async fn serve_with(
    listener: UnixListener,
    handles: Handles,
    shutdown: CancellationToken,
    limits: Limits,
) {
    let tracker = TaskTracker::new();
    let admission = Arc::new(Admission::new(limits));
    let mut refusals = Refusals::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let uid = stream.peer_cred().ok().map(|cred| cred.uid());
                    match admission.admit(uid) {
                        Some(slot) => {
                            tracker.spawn(answer(stream, uid, handles.clone(), slot));
                        }
                        None => {
                            refuse(&stream);
                            refusals.record(uid);
                        }
                    }
                }
                Err(error) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(%error, "control socket: accept failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_PAUSE) => {}
                    }
                }
            },
        }
    }
    tracker.close();
    if timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("control socket: abandoning connections still open at shutdown");
    }
    remove_socket_file(&listener);
}

fn remove_socket_file(listener: &UnixListener) {
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    if let Some(path) = addr.as_pathname()
        && let Err(error) = fs::remove_file(path)
    {
        tracing::warn!(%error, path = %path.display(), "control socket: cannot remove");
    }
}

/// The connections being answered, by peer uid (`None`: unknown).
#[derive(Debug, Default)]
struct OpenConnections {
    by_uid: HashMap<Option<u32>, usize>,
    /// The sum of `by_uid` over every peer but root.
    not_root: usize,
}

impl OpenConnections {
    /// Whether `limits` leave room for one more connection from `uid`: root
    /// draws on its own reserve only, everyone else on its uid's share and on
    /// the total.
    fn has_room(&self, uid: Option<u32>, limits: &Limits) -> bool {
        let open = self.by_uid.get(&uid).copied().unwrap_or(0);
        match uid {
            Some(0) => open < limits.root,
            _ => open < limits.per_uid && self.not_root < limits.total,
        }
    }

    fn open(&mut self, uid: Option<u32>) {
        *self.by_uid.entry(uid).or_default() += 1;
        if uid != Some(0) {
            self.not_root += 1;
        }
    }

    /// Counts one connection of `uid` closed; a uid with none left is
    /// forgotten, so the map never outgrows the limits.
    fn close(&mut self, uid: Option<u32>) {
        if let Some(open) = self.by_uid.get_mut(&uid) {
            *open -= 1;
            if *open == 0 {
                self.by_uid.remove(&uid);
            }
            if uid != Some(0) {
                self.not_root -= 1;
            }
        }
    }
}

/// Decides which accepted connections are answered, and hands each one a
/// [`Slot`] that keeps its place until the connection ends.
#[derive(Debug)]
struct Admission {
    limits: Limits,
    /// Shared by the accept loop and every [`Slot`], which gives its place
    /// back in `Drop`; a std mutex because it is only held to change a count,
    /// never across an await, and `Drop` cannot await.
    open: Mutex<OpenConnections>,
}

impl Admission {
    fn new(limits: Limits) -> Self {
        Admission {
            limits,
            open: Mutex::new(OpenConnections::default()),
        }
    }

    /// A place for one more connection from `uid`, or `None` if it is over a limit.
    fn admit(self: &Arc<Self>, uid: Option<u32>) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if !open.has_room(uid, &self.limits) {
            return None;
        }
        open.open(uid);
        Some(Slot {
            admission: Arc::clone(self),
            uid,
        })
    }
}

/// One connection's place within the [`Limits`]; given back when dropped,
/// however the connection ends.
#[derive(Debug)]
struct Slot {
    /// The counts this slot is part of; shared so `Drop` can give the place back.
    admission: Arc<Admission>,
    uid: Option<u32>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.close(self.uid);
    }
}

/// Tells a connection over a limit why, if its socket takes the line without
/// waiting; the caller then drops, and so closes, the stream.
fn refuse(stream: &UnixStream) {
    let line = response_line(&Response::Error(TOO_MANY_CONNECTIONS.to_string()));
    if let Err(error) = stream.try_write(line.as_bytes()) {
        tracing::debug!(%error, "control socket: cannot tell a refused peer why");
    }
}

/// Logs refused connections at most once per [`REFUSAL_LOG_INTERVAL`], so a
/// flood shows in the log without flooding it.
#[derive(Debug, Default)]
struct Refusals {
    since_logged: u64,
    logged_at: Option<Instant>,
}

impl Refusals {
    fn record(&mut self, uid: Option<u32>) {
        self.since_logged += 1;
        let now = Instant::now();
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            uid,
            refused = self.since_logged,
            "control socket: too many connections, closing new ones"
        );
        self.since_logged = 0;
        self.logged_at = Some(now);
    }
}

/// Reads one request, answers it, and closes; `_slot` keeps the connection's
/// place until then. Errors end this connection only.
async fn answer(stream: UnixStream, uid: Option<u32>, handles: Handles, _slot: Slot) {
    let (read, mut write) = stream.into_split();
    let response = match timeout(REQUEST_TIMEOUT, read_request(read)).await {
        Ok(Ok(request)) => dispatch(request, uid, &handles).await,
        Ok(Err(error)) => Response::Error(error),
        Err(_) => Response::Error("timed out waiting for the request".to_string()),
    };
    let line = response_line(&response);
    match timeout(RESPONSE_TIMEOUT, write.write_all(line.as_bytes())).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "control socket: cannot send response"),
        Err(_) => tracing::debug!("control socket: client did not take its response"),
    }
}

/// Reads one request line of at most [`MAX_REQUEST_BYTES`]; the error is the
/// message sent back to the client.
async fn read_request(read: impl AsyncRead + Unpin) -> Result<Request, String> {
    let mut line = Vec::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES + 1));
    reader
        .read_until(b'\n', &mut line)
        .await
        .map_err(|error| format!("cannot read request: {error}"))?;
    if line.len() as u64 > MAX_REQUEST_BYTES {
        return Err(format!("request longer than {MAX_REQUEST_BYTES} bytes"));
    }
    serde_json::from_slice(&line).map_err(|error| format!("invalid request: {error}"))
}

async fn dispatch(request: Request, uid: Option<u32>, handles: &Handles) -> Response {
    match request {
        // Bounded: a document over the client's limit would reach no one.
        Request::Status => Response::Status(Box::new(handles.status.borrow().bounded())),
        Request::Reload if !uid.is_some_and(may_reload) => {
            Response::Error("reload requires root".to_string())
        }
        Request::Reload => match timeout(RELOAD_TIMEOUT, forward_reload(&handles.reload)).await {
            Ok(Ok(summary)) => Response::Message(summary),
            Ok(Err(error)) => Response::Error(error),
            Err(_) => Response::Error(format!(
                "daemon did not finish the reload within {}",
                humantime::format_duration(RELOAD_TIMEOUT)
            )),
        },
    }
}

/// Hands a reload to the daemon and waits for its answer.
async fn forward_reload(reload: &mpsc::Sender<ReloadRequest>) -> Result<String, String> {
    let (answer, answered) = oneshot::channel();
    let gone = || "daemon is shutting down".to_string();
    reload.send(answer).await.map_err(|_| gone())?;
    answered.await.map_err(|_| gone())?
}

/// The response as one JSON line; falls back to an error line, so the client
/// always gets an answer.
fn response_line(response: &Response) -> String {
    match serde_json::to_string(response) {
        Ok(json) => json + "\n",
        Err(error) => {
            let fallback = Response::Error(format!("cannot encode response: {error}"));
            serde_json::to_string(&fallback).unwrap_or_default() + "\n"
        }
    }
}

/// Sends one request to the daemon listening on `path` and returns its answer.
/// A missing socket or a refused connection is [`ControlError::NotRunning`].
pub async fn request(path: &Path, request: &Request) -> Result<Response, ControlError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|source| connect_error(path, source))?;
    let exchange = timeout(CLIENT_TIMEOUT, exchange(stream, request)).await;
    let line = exchange
        .map_err(|_| ControlError::Timeout {
            path: path.to_path_buf(),
            after: CLIENT_TIMEOUT,
        })?
        .map_err(|source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if line.is_empty() {
        return Err(ControlError::NoResponse {
            path: path.to_path_buf(),
        });
    }
    serde_json::from_slice(&line).map_err(|source| ControlError::BadResponse {
        path: path.to_path_buf(),
        source,
    })
}

fn connect_error(path: &Path, source: io::Error) -> ControlError {
    let path = path.to_path_buf();
    match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            ControlError::NotRunning { path, source }
        }
        _ => ControlError::Io { path, source },
    }
}

/// Writes the request line and reads the response line.
async fn exchange(stream: UnixStream, request: &Request) -> io::Result<Vec<u8>> {
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut response = Vec::new();
    BufReader::new(read.take(MAX_RESPONSE_BYTES))
        .read_until(b'\n', &mut response)
        .await?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::PolicyStatus;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let unique = format!(
                "dockfw-control-{}-{}-{name}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let dir = std::env::temp_dir().join(unique);
            fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        fn socket(&self) -> PathBuf {
            self.0.join("control.sock")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A server on a temp socket, holding the daemon's ends of its channels.
    struct Running {
        _dir: TempDir,
        path: PathBuf,
        /// Publishes the status the server hands out.
        status: watch::Sender<Status>,
        /// Receives the reloads the server forwards; the test plays the daemon.
        reloads: mpsc::Receiver<ReloadRequest>,
        /// Stops the server.
        shutdown: CancellationToken,
        server: tokio::task::JoinHandle<()>,
    }

    fn start(name: &str) -> Running {
        start_with(name, Limits::default())
    }

    fn start_with(name: &str, limits: Limits) -> Running {
        let dir = TempDir::new(name);
        let path = dir.socket();
        let (status, status_rx) = watch::channel(Status::default());
        let (reload, reloads) = mpsc::channel(1);
        let listener = bind(&path).expect("bind");
        let shutdown = CancellationToken::new();
        let handles = Handles {
            status: status_rx,
            reload,
        };
        let server = tokio::spawn(serve_with(listener, handles, shutdown.clone(), limits));
        Running {
            _dir: dir,
            path,
            status,
            reloads,
            shutdown,
            server,
        }
    }

    /// Sends raw bytes, ends the write half, and returns everything the server answers.
    async fn raw(path: &Path, bytes: &[u8]) -> String {
        let mut stream = UnixStream::connect(path).await.expect("connect");
        stream.write_all(bytes).await.expect("write");
        stream.shutdown().await.expect("end of request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer
    }

    fn sample_status() -> Status {
        Status {
            policy: PolicyStatus {
                path: "/etc/dockfw/policy.toml".to_string(),
                default: "deny".to_string(),
                allow_entries: 2,
                ..PolicyStatus::default()
            },
            host_network: vec!["netdebug".to_string()],
            ..Status::default()
        }
    }

    async fn assert_serves_status(path: &Path) {
        let response = request(path, &Request::Status).await.expect("status");
        assert!(matches!(response, Response::Status(_)), "got {response:?}");
    }

    fn json(value: &impl Serialize) -> String {
        serde_json::to_string(value).expect("serializes")
    }

    #[test]
    fn wire_format_matches_protocol() {
        assert_eq!(json(&Request::Status), r#"{"cmd":"status"}"#);
        assert_eq!(json(&Request::Reload), r#"{"cmd":"reload"}"#);
        let message = Response::Message("done".into());
        assert_eq!(json(&message), r#"{"ok":true,"message":"done"}"#);
        let error = Response::Error("no".into());
        assert_eq!(json(&error), r#"{"ok":false,"error":"no"}"#);
        let status = json(&Response::Status(Box::default()));
        assert!(
            status.starts_with(r#"{"ok":true,"status":{"policy":"#),
            "{status}"
        );
    }

    #[test]
    fn inconsistent_response_is_rejected() {
        for bad in [
            r#"{"ok":true,"error":"x"}"#,
            r#"{"ok":false}"#,
            r#"{"ok":true}"#,
        ] {
            assert!(
                serde_json::from_str::<Response>(bad).is_err(),
                "accepted {bad}"
            );
        }
    }

    #[test]
    fn only_root_may_reload() {
        assert!(may_reload(0));
        assert!(!may_reload(1000));
    }

    #[tokio::test]
    async fn non_root_or_unknown_peer_is_refused_reload() {
        let (_status, status) = watch::channel(Status::default());
        let (reload, mut reloads) = mpsc::channel(1);
        let handles = Handles { status, reload };
        for uid in [Some(1000), None] {
            let response = dispatch(Request::Reload, uid, &handles).await;
            assert_eq!(
                response,
                Response::Error("reload requires root".to_string())
            );
        }
        assert!(
            reloads.try_recv().is_err(),
            "refused reload reached the daemon"
        );
    }

    #[test]
    fn group_lookup_finds_root_and_not_nonsense() {
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("dockfw-no-such-group"), None);
    }

    #[tokio::test]
    async fn status_round_trip() {
        let running = start("status");
        running.status.send_replace(sample_status());
        let response = request(&running.path, &Request::Status)
            .await
            .expect("status");
        assert_eq!(response, Response::Status(Box::new(sample_status())));
    }

    #[tokio::test]
    async fn a_status_over_the_size_bound_still_reaches_the_client_bounded() {
        let running = start("huge-status");
        let mut status = sample_status();
        // 20,000 ports of 1,000-character names: about 50 MB as JSON.
        status.ports = (0..20_000u16)
            .map(|port| crate::status::PortStatus {
                container: format!("{}{port}", "n".repeat(1000)),
                network: "m".repeat(1000),
                host_ip: "0.0.0.0".into(),
                host_port: port,
                container_port: 80,
                proto: "tcp".into(),
                verdict: crate::status::Verdict::Blocked,
                detail: "d".repeat(1000),
                why: "w".repeat(1000),
                gateway_mode: String::new(),
            })
            .collect();
        running.status.send_replace(status.clone());
        let response = request(&running.path, &Request::Status)
            .await
            .expect("status");
        let Response::Status(got) = response else {
            panic!("not a status: {response:?}");
        };
        assert_eq!(*got, status.bounded());
        assert!(got.omitted.ports > 0, "nothing left out");
        assert!(
            got.ports[0].container.ends_with("…+745"),
            "{}",
            got.ports[0].container
        );
    }

    #[tokio::test]
    async fn reload_is_forwarded_and_its_summary_returned() {
        let mut running = start("reload-ok");
        let daemon = tokio::spawn(async move {
            let answer = running.reloads.recv().await.expect("reload forwarded");
            answer
                .send(Ok("policy reloaded: 3 entries".to_string()))
                .expect("answer");
        });
        let response = request(&running.path, &Request::Reload)
            .await
            .expect("reload");
        assert_eq!(
            response,
            Response::Message("policy reloaded: 3 entries".to_string())
        );
        daemon.await.expect("daemon stub");
    }

    #[tokio::test]
    async fn refused_reload_returns_policy_errors() {
        let mut running = start("reload-err");
        let errors = "policy.toml:4:9: ports: port 0 is out of range 1-65535";
        let daemon = tokio::spawn(async move {
            let answer = running.reloads.recv().await.expect("reload forwarded");
            answer.send(Err(errors.to_string())).expect("answer");
        });
        let response = request(&running.path, &Request::Reload)
            .await
            .expect("reload");
        assert_eq!(response, Response::Error(errors.to_string()));
        daemon.await.expect("daemon stub");
    }

    #[tokio::test]
    async fn reload_without_daemon_is_an_error_not_a_hang() {
        let running = start("reload-gone");
        drop(running.reloads);
        let response = request(&running.path, &Request::Reload)
            .await
            .expect("reload");
        assert_eq!(
            response,
            Response::Error("daemon is shutting down".to_string())
        );
    }

    #[tokio::test]
    async fn malformed_request_gets_error_and_server_keeps_serving() {
        let running = start("malformed");
        for bad in [&b"{\"cmd\":\"dance\"}\n"[..], b"not json\n", b"\n", b""] {
            let answer = raw(&running.path, bad).await;
            assert!(
                answer.starts_with(r#"{"ok":false,"error":"invalid request: "#),
                "{answer}"
            );
            assert!(answer.ends_with("}\n"), "{answer}");
        }
        assert_serves_status(&running.path).await;
    }

    #[tokio::test]
    async fn oversized_request_is_refused() {
        let running = start("oversized");
        let long = vec![b'x'; MAX_REQUEST_BYTES as usize + 1];
        let answer = raw(&running.path, &long).await;
        assert_eq!(
            answer,
            "{\"ok\":false,\"error\":\"request longer than 65536 bytes\"}\n"
        );
        assert_serves_status(&running.path).await;
    }

    #[tokio::test]
    async fn stale_socket_is_replaced() {
        let dir = TempDir::new("stale");
        let path = dir.socket();
        drop(std::os::unix::net::UnixListener::bind(&path).expect("stale bind"));
        assert!(path.exists(), "dropping a listener leaves its file");
        let listener = bind(&path).expect("bind over stale socket");
        let (_status, status) = watch::channel(Status::default());
        let (reload, _reloads) = mpsc::channel(1);
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            Handles { status, reload },
            shutdown.clone(),
        ));
        assert_serves_status(&path).await;
        shutdown.cancel();
    }

    #[tokio::test]
    async fn second_bind_on_live_socket_fails() {
        let running = start("live");
        let error = bind(&running.path).expect_err("second bind");
        assert!(
            matches!(error, ControlError::AlreadyRunning { .. }),
            "{error:?}"
        );
        assert_serves_status(&running.path).await;
    }

    #[tokio::test]
    async fn file_that_is_not_a_socket_is_left_alone() {
        let dir = TempDir::new("not-socket");
        let path = dir.socket();
        fs::write(&path, "precious").expect("write file");
        let error = bind(&path).expect_err("bind over a file");
        assert!(
            matches!(error, ControlError::NotASocket { .. }),
            "{error:?}"
        );
        assert_eq!(fs::read_to_string(&path).expect("file kept"), "precious");
    }

    #[tokio::test]
    async fn request_to_missing_or_dead_socket_is_not_running() {
        let dir = TempDir::new("missing");
        let path = dir.socket();
        let error = request(&path, &Request::Status).await.expect_err("missing");
        assert!(
            matches!(error, ControlError::NotRunning { .. }),
            "{error:?}"
        );
        drop(std::os::unix::net::UnixListener::bind(&path).expect("stale bind"));
        let error = request(&path, &Request::Status).await.expect_err("stale");
        assert!(
            matches!(error, ControlError::NotRunning { .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn socket_mode_is_0660_and_missing_directory_0755() {
        let dir = TempDir::new("mode");
        let path = dir.0.join("run/dockfw/control.sock");
        let _listener = bind(&path).expect("bind");
        let mode = |path: &Path| fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o660);
        assert_eq!(mode(&dir.0.join("run/dockfw")), 0o755);
    }

    /// Two places for whoever runs the tests: root's reserve and any other
    /// uid's share are the same size.
    const TWO_EACH: Limits = Limits {
        total: 64,
        per_uid: 2,
        root: 2,
    };

    /// Connects and sends nothing, as a flooder does.
    async fn idle(path: &Path) -> UnixStream {
        UnixStream::connect(path).await.expect("connect")
    }

    /// Everything the server sends on `stream` before it closes, failing the
    /// test if the server keeps it open for as long as it waits for a request.
    async fn read_until_closed(mut stream: UnixStream) -> String {
        let mut answer = String::new();
        timeout(REQUEST_TIMEOUT / 2, stream.read_to_string(&mut answer))
            .await
            .expect("closed before the request timeout")
            .expect("read");
        answer
    }

    #[test]
    fn root_gets_in_while_other_uids_fill_the_total() {
        let limits = Limits {
            total: 4,
            per_uid: 2,
            root: 1,
        };
        let mut open = OpenConnections::default();
        for uid in [1000, 1000, 1001, 1001] {
            assert!(
                open.has_room(Some(uid), &limits),
                "uid {uid} under its share"
            );
            open.open(Some(uid));
        }
        assert!(!open.has_room(Some(1002), &limits), "total is full");
        assert!(
            !open.has_room(None, &limits),
            "unknown peers share the total"
        );
        assert!(open.has_room(Some(0), &limits), "root has its own reserve");
        open.open(Some(0));
        assert!(!open.has_room(Some(0), &limits), "root's reserve is full");
        open.close(Some(1001));
        assert!(open.has_room(Some(1002), &limits), "a place came back");
        assert!(
            !open.has_room(Some(1000), &limits),
            "uid 1000 still at its share"
        );
    }

    #[test]
    fn one_uid_cannot_take_more_than_its_share() {
        let limits = Limits {
            total: 64,
            per_uid: 2,
            root: 8,
        };
        let mut open = OpenConnections::default();
        open.open(Some(1000));
        open.open(Some(1000));
        assert!(!open.has_room(Some(1000), &limits));
        assert!(open.has_room(Some(1001), &limits));
        assert!(
            open.has_room(None, &limits),
            "unknown peers are a uid of their own"
        );
    }

    #[test]
    fn dropped_slot_gives_its_place_back_and_is_forgotten() {
        let admission = Arc::new(Admission::new(TWO_EACH));
        let first = admission.admit(Some(1000)).expect("first place");
        let second = admission.admit(Some(1000)).expect("second place");
        assert!(
            admission.admit(Some(1000)).is_none(),
            "third over the share"
        );
        drop(first);
        let third = admission.admit(Some(1000)).expect("place given back");
        drop((second, third));
        let open = admission.open.lock().expect("not poisoned");
        assert!(open.by_uid.is_empty(), "{:?}", open.by_uid);
        assert_eq!(open.not_root, 0);
    }

    #[tokio::test]
    async fn connection_over_the_uid_limit_is_closed_at_once() {
        let running = start_with("over-limit", TWO_EACH);
        let _held = [idle(&running.path).await, idle(&running.path).await];
        let refused = read_until_closed(idle(&running.path).await).await;
        assert_eq!(
            refused,
            "{\"ok\":false,\"error\":\"too many connections\"}\n"
        );
    }

    #[tokio::test]
    async fn connections_under_the_limit_are_answered() {
        let running = start_with("under-limit", TWO_EACH);
        let _held = idle(&running.path).await;
        assert_serves_status(&running.path).await;
    }

    #[tokio::test]
    async fn places_come_back_when_idle_connections_close() {
        let running = start_with("places-back", TWO_EACH);
        let held = [idle(&running.path).await, idle(&running.path).await];
        let refused = read_until_closed(idle(&running.path).await).await;
        assert!(refused.contains(TOO_MANY_CONNECTIONS), "{refused}");
        drop(held);
        // The server notices the closed connections on its own time; retry
        // briefly rather than race it.
        let deadline = Instant::now() + REQUEST_TIMEOUT / 2;
        loop {
            match request(&running.path, &Request::Status).await {
                Ok(Response::Status(_)) => break,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => panic!("not served after the idle connections closed: {other:?}"),
            }
        }
        // And both places are back, not just one.
        let _held = idle(&running.path).await;
        assert_serves_status(&running.path).await;
    }

    #[tokio::test]
    async fn shutdown_removes_socket_file() {
        let running = start("shutdown");
        assert_serves_status(&running.path).await;
        running.shutdown.cancel();
        running.server.await.expect("server stops");
        assert!(!running.path.exists(), "socket file left behind");
    }
}
