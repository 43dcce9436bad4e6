//! The Prometheus endpoint (`--metrics-listen ADDR`, off by default): the
//! daemon's [`Status`] in the Prometheus text exposition format, served to
//! whoever scrapes it; nothing is pushed anywhere.
//!
//! [`render`] is pure (the status document in, the text out); [`serve`]
//! answers `GET` and `HEAD` of `/metrics` (any query string) with hyper's
//! HTTP/1 server, one request per connection. A connection must send its
//! request head within [`Limits::header_timeout`]; at most
//! [`Limits::serving`] are answered at once, up to [`Limits::queued`] more
//! wait for a place (a flood of slow clients delays a scrape, it does not
//! shut it out), and one peer address holds at most [`Limits::per_peer`]
//! of those places. Only a connection over a bound is closed unanswered.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::status::{DURATION_BUCKETS, Status, Verdict};

/// The Prometheus text format's media type.
const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The longest request head read (hyper's least is 8 KiB); a scrape's is a
/// few hundred bytes.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long the accept loop pauses after a failed accept (out of
/// descriptors and the like) rather than spin on it.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How many scrapes are answered, and wait, at once, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections answered at once.
    pub serving: usize,
    /// Connections waiting for one of those places; more are closed.
    pub queued: usize,
    /// Places (answered or waiting) one peer address may hold.
    pub per_peer: usize,
    /// How long a connection may take to send its request head.
    pub header_timeout: Duration,
    /// How long a connection may wait for a place.
    pub queue_timeout: Duration,
    /// How long one connection may last once answered (a reader that does
    /// not take the answer).
    pub answer_timeout: Duration,
}

impl Default for Limits {
    /// 16 answered and 64 waiting: at most 80 descriptors; Prometheus'
    /// default scrape timeout (10 s) covers a wait behind one round of
    /// slow clients.
    fn default() -> Self {
        Limits {
            serving: 16,
            queued: 64,
            per_peer: 8,
            header_timeout: Duration::from_secs(3),
            queue_timeout: Duration::from_secs(8),
            answer_timeout: Duration::from_secs(10),
        }
    }
}

/// The status as Prometheus text (format 0.0.4).
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let r = &status.reconcile;
    let p = &r.passes;
    let mut cumulative = 0;
    let mut buckets: Vec<(String, String)> = DURATION_BUCKETS
        .iter()
        .enumerate()
        .map(|(i, le)| {
            cumulative += p.buckets.get(i).copied().unwrap_or(0);
            (format!("_bucket{{le=\"{le}\"}}"), cumulative.to_string())
        })
        .collect();
    buckets.push(("_bucket{le=\"+Inf\"}".into(), p.count.to_string()));
    buckets.push(("_sum".into(), p.sum_seconds.to_string()));
    buckets.push(("_count".into(), p.count.to_string()));
    // The histogram's samples carry suffixes; write them by hand.
    let _ = writeln!(
        out,
        "# HELP dockfw_reconcile_duration_seconds Time one reconcile pass took.\n\
         # TYPE dockfw_reconcile_duration_seconds histogram"
    );
    for (suffix, value) in &buckets {
        let _ = writeln!(out, "dockfw_reconcile_duration_seconds{suffix} {value}");
    }
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: u64| vec![(String::new(), v.to_string())];
    metric(
        "dockfw_reconcile_passes_total",
        "counter",
        "Reconcile passes run since start.",
        &one(p.count),
    );
    metric(
        "dockfw_reconcile_failures_total",
        "counter",
        "Reconcile passes that failed (firewall or engine).",
        &one(p.failures),
    );
    metric(
        "dockfw_applies_total",
        "counter",
        "Firewall transactions applied since start.",
        &one(r.applies),
    );
    metric(
        "dockfw_drift_repairs_total",
        "counter",
        "Re-applies of rules something else had changed.",
        &one(status.drift.repairs),
    );
    metric(
        "dockfw_inventory_repairs_total",
        "counter",
        "Full listings that found the inventory kept from events different from the engine's.",
        &one(status.inventory.repairs),
    );
    metric(
        "dockfw_incremental_plan_repairs_total",
        "counter",
        "Periodic checks that found the plan kept from events different from the whole plan.",
        &one(status.inventory.incremental_repairs),
    );
    metric(
        "dockfw_inventory_inspects_total",
        "counter",
        "Containers and networks inspected for the events that named them.",
        &one(status.inventory.inspects),
    );
    metric(
        "dockfw_inventory_listings_total",
        "counter",
        "Full listings of the engine's containers and networks.",
        &one(status.inventory.listings),
    );
    metric(
        "dockfw_docker_connected",
        "gauge",
        "1 while the Docker engine answers.",
        &one(u64::from(status.docker.connected)),
    );
    metric(
        "dockfw_policy_fallback",
        "gauge",
        "1 while the policy file is invalid and a fallback is enforced.",
        &one(u64::from(status.policy.fallback.is_some())),
    );
    let verdicts = [
        Verdict::Open,
        Verdict::Restricted,
        Verdict::Blocked,
        Verdict::Local,
    ];
    let ports: Vec<(String, String)> = verdicts
        .iter()
        .map(|v| {
            let n = status.ports.iter().filter(|p| p.verdict == *v).count();
            (format!("{{verdict=\"{}\"}}", v.as_str()), n.to_string())
        })
        .collect();
    metric(
        "dockfw_ports",
        "gauge",
        "Published ports by the policy's verdict.",
        &ports,
    );
    let rules = [("ipv4", &status.rules.ipv4), ("ipv6", &status.rules.ipv6)]
        .iter()
        .map(|(f, s)| (format!("{{family=\"{f}\"}}"), s.rules.to_string()))
        .collect::<Vec<_>>();
    metric(
        "dockfw_rules",
        "gauge",
        "Rules dockfw keeps installed, per family.",
        &rules,
    );
    // Labels are `deny@N` or `default`: fixed words and numbers only.
    let drops: Vec<(String, String)> = status
        .drops
        .entries
        .iter()
        .map(|e| (format!("{{entry=\"{}\"}}", e.entry), e.dropped.to_string()))
        .collect();
    metric(
        "dockfw_dropped_connections_total",
        "counter",
        "New connections dropped since the daemon started, per policy entry (deny@LINE, default, loopback, out-deny@LINE, out-default, out-isolated, to-host).",
        &drops,
    );
    // Labels are a protocol name and a number.
    let port_drops: Vec<(String, String)> = status
        .drops
        .ports
        .iter()
        .map(|p| {
            let labels = format!("{{proto=\"{}\",port=\"{}\"}}", p.proto, p.port);
            (labels, p.dropped.to_string())
        })
        .collect();
    metric(
        "dockfw_port_dropped_connections_total",
        "counter",
        "New connections dropped since the daemon started, per published port (both families).",
        &port_drops,
    );
    let bypass: Vec<(String, String)> = ["ipv4", "ipv6"]
        .iter()
        .map(|f| {
            let n = status
                .forward_bypass
                .iter()
                .filter(|b| b.family == *f)
                .count();
            (format!("{{family=\"{f}\"}}"), n.to_string())
        })
        .collect();
    metric(
        "dockfw_forward_bypass_rules",
        "gauge",
        "Rules of other tools above FORWARD -> DOCKER-USER that may accept connections dockfw never judges.",
        &bypass,
    );
    let not_enforced: Vec<(String, String)> = ["ipv4", "ipv6"]
        .iter()
        .map(|f| {
            let n = (status.east_west_not_enforced.iter())
                .filter(|n| n.family == *f)
                .count();
            (format!("{{family=\"{f}\"}}"), n.to_string())
        })
        .collect();
    metric(
        "dockfw_east_west_not_enforced_networks",
        "gauge",
        "Bridge networks whose same-bridge traffic [east_west] cannot judge (bridge netfilter off, their own flag unknown); names in dockfw status.",
        &not_enforced,
    );
    metric(
        "dockfw_rejected_objects",
        "gauge",
        "Objects or fields from Docker that dockfw refused or could not read.",
        &one(status.rejected.len() as u64),
    );
    out
}

/// [`serve_with`] the default [`Limits`].
pub async fn serve(
    listener: TcpListener,
    status: watch::Receiver<Status>,
    shutdown: CancellationToken,
) {
    serve_with(listener, status, shutdown, Limits::default()).await;
}

/// Answer `/metrics` from the latest status until `shutdown`, within `limits`.
pub async fn serve_with(
    listener: TcpListener,
    status: watch::Receiver<Status>,
    shutdown: CancellationToken,
    limits: Limits,
) {
    let admission = Arc::new(Admission::new(limits));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "metrics: accept failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_PAUSE) => continue,
                }
            }
        };
        // Over a bound: dropped, so closed at once.
        let Some(place) = admission.admit(peer.ip()) else {
            tracing::debug!(%peer, "metrics: too many connections, closing");
            continue;
        };
        let status = status.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = answer(stream, status, place, limits) => {}
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Wait for a place to answer, then answer one request on `stream`.
async fn answer(stream: TcpStream, status: watch::Receiver<Status>, place: Place, limits: Limits) {
    let serving = Arc::clone(&place.admission.serving);
    let Ok(Ok(_serving)) =
        tokio::time::timeout(limits.queue_timeout, serving.acquire_owned()).await
    else {
        return; // waited too long: closed
    };
    let service = hyper::service::service_fn(move |request| {
        let response = respond(&request, &status.borrow());
        async move { Ok::<_, Infallible>(response) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(false);
    let connection = http.serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(limits.answer_timeout, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "metrics: connection ended"),
        Err(_) => tracing::debug!("metrics: connection took too long, closed"),
    }
}

/// The answer to one request: the metrics for `GET`/`HEAD /metrics`
/// (whatever the query), 405 for another method there, 404 elsewhere.
fn respond<B>(request: &Request<B>, status: &Status) -> Response<Full<Bytes>> {
    let builder = Response::builder();
    let response = if request.uri().path() != "/metrics" {
        builder.status(StatusCode::NOT_FOUND).body(Full::default())
    } else if request.method() == Method::GET || request.method() == Method::HEAD {
        // hyper sends no body for HEAD, and the length of GET's.
        builder
            .header(CONTENT_TYPE, CONTENT_TYPE_TEXT)
            .body(Full::new(Bytes::from(render(status))))
    } else {
        builder
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(ALLOW, "GET, HEAD")
            .body(Full::default())
    };
    response.unwrap_or_else(|_| Response::new(Full::default()))
}

/// Which accepted connections get a place (answered, or waiting for that).
#[derive(Debug)]
struct Admission {
    limits: Limits,
    /// Places to be answered in, [`Limits::serving`] of them; a connection
    /// holds one while hyper serves it. Fair: the first to wait is the
    /// first served.
    serving: Arc<Semaphore>,
    /// Places held (answered or waiting), in all and per peer address; a
    /// std mutex, only held to change a count (never across an await), as
    /// [`Place`]'s `Drop` gives its place back.
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

impl Admission {
    fn new(limits: Limits) -> Self {
        Admission {
            limits,
            serving: Arc::new(Semaphore::new(limits.serving)),
            held: Mutex::new(Held::default()),
        }
    }

    /// A place for one more connection from `peer`, or `None` over a bound.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Place> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let of_peer = held.by_peer.get(&peer).copied().unwrap_or(0);
        if held.total >= self.limits.serving + self.limits.queued || of_peer >= self.limits.per_peer
        {
            return None;
        }
        held.total += 1;
        held.by_peer.insert(peer, of_peer + 1);
        Some(Place {
            admission: Arc::clone(self),
            peer,
        })
    }
}

/// One connection's place; given back when dropped, however it ends.
#[derive(Debug)]
struct Place {
    /// The counts this place is part of; shared so `Drop` can give it back.
    admission: Arc<Admission>,
    peer: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut held = self
            .admission
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.total -= 1;
        if let Some(n) = held.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                held.by_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A metrics server on 127.0.0.1 with `limits`, stopped on drop.
    struct Server {
        addr: SocketAddr,
        shutdown: CancellationToken,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    async fn server(limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut status = Status::default();
        status
            .reconcile
            .passes
            .observe(Duration::from_millis(3), false);
        let (_tx, rx) = watch::channel(status);
        let shutdown = CancellationToken::new();
        tokio::spawn(serve_with(listener, rx, shutdown.clone(), limits));
        // The sender may go: the receiver keeps the last status.
        Server { addr, shutdown }
    }

    /// A connection to `to` from `from` (any 127.0.0.0/8 address).
    async fn connect(from: &str, to: SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        let from: IpAddr = from.parse().expect("address");
        socket.bind(SocketAddr::new(from, 0)).expect("bind source");
        socket.connect(to).await.expect("connect")
    }

    /// Sends `parts` with a pause between them; returns all that came back.
    async fn exchange(from: &str, to: SocketAddr, parts: &[&str]) -> String {
        let mut stream = connect(from, to).await;
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            stream.write_all(part.as_bytes()).await.expect("write");
        }
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
        read.await.expect("answered in time").expect("read");
        String::from_utf8_lossy(&answer).into_owned()
    }

    fn scrape(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: dockfw\r\nAccept: text/plain\r\n\r\n")
    }

    #[tokio::test]
    async fn a_query_string_head_and_a_split_request_line_are_answered() {
        let server = server(Limits::default()).await;
        let with_query = exchange("127.0.0.1", server.addr, &[&scrape("/metrics?x=1&y=2")]).await;
        assert!(
            with_query.starts_with("HTTP/1.1 200 OK\r\n"),
            "{with_query}"
        );
        assert!(
            with_query.contains("dockfw_reconcile_passes_total 1\n"),
            "{with_query}"
        );
        assert!(
            with_query.contains("text/plain; version=0.0.4"),
            "{with_query}"
        );
        let head = exchange(
            "127.0.0.1",
            server.addr,
            &["HEAD /metrics HTTP/1.1\r\nHost: dockfw\r\n\r\n"],
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "HEAD got a body: {head}");
        let split = exchange(
            "127.0.0.1",
            server.addr,
            &["GET /met", "rics HTTP/1.1\r\nHo", "st: dockfw\r\n\r\n"],
        )
        .await;
        assert!(split.starts_with("HTTP/1.1 200 OK\r\n"), "{split}");
        let old = exchange("127.0.0.1", server.addr, &["GET /metrics HTTP/1.0\r\n\r\n"]).await;
        assert!(old.starts_with("HTTP/1.0 200 OK\r\n"), "{old}");
        let elsewhere = exchange("127.0.0.1", server.addr, &[&scrape("/")]).await;
        assert!(elsewhere.starts_with("HTTP/1.1 404"), "{elsewhere}");
        let post = exchange(
            "127.0.0.1",
            server.addr,
            &["POST /metrics HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n"],
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    }

    #[tokio::test]
    async fn a_scrape_waits_behind_slow_clients_holding_every_place_and_is_answered() {
        let limits = Limits {
            header_timeout: Duration::from_millis(1500),
            ..Limits::default()
        };
        let server = server(limits).await;
        // One more slow client than there are places, each from its own
        // address (so no per-peer cap applies): half send half a request
        // line, half nothing at all.
        let mut slow = Vec::new();
        for i in 0..=limits.serving {
            let mut stream = connect(&format!("127.0.0.{}", 10 + i), server.addr).await;
            if i % 2 == 0 {
                stream.write_all(b"GET /metr").await.expect("write");
            }
            slow.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = tokio::time::Instant::now();
        let answer = exchange("127.0.0.1", server.addr, &[&scrape("/metrics")]).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "answered before a place was free: the slow clients held none"
        );
        // The slow clients were closed by the header timeout.
        for mut stream in slow {
            let mut rest = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest));
            assert!(read.await.is_ok(), "a slow client is still connected");
        }
    }

    #[tokio::test]
    async fn one_peer_holds_at_most_its_share_and_others_are_answered_at_once() {
        let server = server(Limits::default()).await;
        let mut held = Vec::new();
        for _ in 0..Limits::default().per_peer {
            let mut stream = connect("127.0.0.2", server.addr).await;
            stream.write_all(b"GET /").await.expect("write");
            held.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Over its share: closed at once, unanswered.
        let mut over = connect("127.0.0.2", server.addr).await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(1), over.read_to_end(&mut answer));
        assert!(read.await.is_ok(), "over the cap, yet kept open");
        assert!(answer.is_empty());
        let started = tokio::time::Instant::now();
        let scrape = exchange("127.0.0.1", server.addr, &[&scrape("/metrics")]).await;
        assert!(scrape.starts_with("HTTP/1.1 200 OK\r\n"), "{scrape}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_names_follow_conventions() {
        let mut status = Status::default();
        for ms in [3, 7, 40, 3000] {
            status
                .reconcile
                .passes
                .observe(Duration::from_millis(ms), ms == 3000);
        }
        let text = render(&status);
        assert!(text.contains("dockfw_reconcile_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("dockfw_reconcile_duration_seconds_bucket{le=\"0.05\"} 3\n"));
        assert!(text.contains("dockfw_reconcile_duration_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("dockfw_reconcile_failures_total 1\n"));
        status.drops.entries = vec![crate::status::EntryDrops {
            entry: "deny@3".into(),
            line: Some(3),
            dropped: 7,
        }];
        status.drops.ports = vec![crate::status::PortDrops {
            proto: "tcp".into(),
            port: 5432,
            dropped: 9,
            ..Default::default()
        }];
        let text = render(&status);
        assert!(text.contains("dockfw_dropped_connections_total{entry=\"deny@3\"} 7\n"));
        assert!(
            text.contains("dockfw_port_dropped_connections_total{proto=\"tcp\",port=\"5432\"} 9\n")
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(name.starts_with("dockfw_"), "{line}");
        }
    }
}
