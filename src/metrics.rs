//! The Prometheus endpoint (`--metrics-listen ADDR`, off by default): the
//! daemon's [`Status`] in the Prometheus text exposition format, served to
//! whoever scrapes it; nothing is pushed anywhere.
//!
//! [`render`] is pure (the status document in, the text out); [`serve`] is
//! a minimal HTTP/1.0 responder for `GET /metrics` on a TCP listener, with
//! the same connection caps and timeouts spirit as the control socket: one
//! request, one answer, close.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::status::{Status, Verdict};

/// Upper bounds (seconds) of the reconcile-duration histogram's buckets.
pub const DURATION_BUCKETS: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// Most scrapes answered at once; more wait for a slot.
const MAX_CONNECTIONS: usize = 16;
/// How long a scraper may take to send its request or take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Counts of reconcile passes, kept in the status document for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PassCounters {
    /// Passes that failed (firewall or engine).
    pub failures: u64,
    /// Per bucket of [`DURATION_BUCKETS`], passes that took at most that long
    /// (not cumulative); the last slot counts the rest.
    pub buckets: Vec<u64>,
    /// Sum of all pass durations, in seconds.
    pub sum_seconds: f64,
    pub count: u64,
}

impl PassCounters {
    /// Record one pass.
    pub fn observe(&mut self, duration: Duration, failed: bool) {
        if self.buckets.len() != DURATION_BUCKETS.len() + 1 {
            self.buckets = vec![0; DURATION_BUCKETS.len() + 1];
        }
        let secs = duration.as_secs_f64();
        let slot = DURATION_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[slot] += 1;
        self.sum_seconds += secs;
        self.count += 1;
        self.failures += u64::from(failed);
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
        "New connections dropped since the daemon started, per policy entry (deny@LINE, default).",
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
    metric(
        "dockfw_rejected_objects",
        "gauge",
        "Objects or fields from Docker that dockfw refused or could not read.",
        &one(status.rejected.len() as u64),
    );
    out
}

/// Answer `GET /metrics` from the latest status until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    status: watch::Receiver<Status>,
    shutdown: CancellationToken,
) {
    // Bounds the scrapes answered at once; a flood waits, it never piles up.
    let slots = std::sync::Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        let body = render(&status.borrow());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(IO_TIMEOUT, answer(stream, body)).await;
        });
    }
}

async fn answer(mut stream: tokio::net::TcpStream, body: String) -> std::io::Result<()> {
    let mut request = [0u8; 1024];
    let n = stream.read(&mut request).await?;
    let line = String::from_utf8_lossy(&request[..n]);
    let response = if line.starts_with("GET /metrics ") || line.starts_with("GET /metrics\r") {
        format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned()
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

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
