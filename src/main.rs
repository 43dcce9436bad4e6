//! The `dockfw` command line: the daemon and the commands that check the
//! policy, show the plan, ask the daemon for status or a reload, and
//! uninstall dockfw's rules.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::info;

use dockfw::control::{self, ControlError, Handles, Request, Response};
use dockfw::daemon::{self, Channels, Config};
use dockfw::docker::{BollardSource, DockerSource, endpoint_from_env};
use dockfw::firewall::Backend;
use dockfw::firewall::iptables::Iptables;
use dockfw::firewall::nftables::Nftables;
use dockfw::inventory::Inventory;
use dockfw::policy::{self, Policy, PolicyError};
use dockfw::ruleset::Family;
use dockfw::state::{DEFAULT_STATE_DIR, StateDir};
use dockfw::status::{Status, escape, render_text};

const DEFAULT_CONFIG: &str = "/etc/dockfw/policy.toml";
const DEFAULT_SOCKET: &str = "/run/dockfw/dockfw.sock";

/// Exit status when the daemon is not running (for `status`, `reload`).
const EXIT_NOT_RUNNING: u8 = 3;

#[derive(Parser)]
#[command(
    version,
    about = "Docker-aware host firewall: keeps a minimal rule set behind DOCKER-USER"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which firewall backend to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendChoice {
    /// nftables where the engine reports its nftables firewall backend or
    /// made no DOCKER-USER chain; iptables otherwise.
    Auto,
    /// `iptables-restore` behind Docker's DOCKER-USER chain.
    Iptables,
    /// dockfw's own `inet dockfw` table, base chains before Docker's.
    Nftables,
}

#[derive(clap::Args, Debug, Clone, Copy)]
struct BackendArg {
    /// The firewall backend.
    #[arg(long, env = "DOCKFW_BACKEND", value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Daemon {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Seconds between full checks when nothing triggers a reconcile
        /// (drift is repaired sooner: on nf_tables notifications, or by a
        /// 1.5 s poll where there are none).
        #[arg(long, env = "DOCKFW_RESYNC_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        resync_secs: u64,
        /// Where the last good policy, the bridges last seen and the lock
        /// against a second daemon are kept.
        #[arg(long, env = "DOCKFW_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        #[command(flatten)]
        backend: BackendArg,
        /// Serve Prometheus metrics at http://ADDR/metrics (off by default),
        /// e.g. 127.0.0.1:9469.
        #[arg(long, env = "DOCKFW_METRICS_LISTEN")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Log level (error, warn, info, debug, trace); `RUST_LOG` wins when set.
        #[arg(long, env = "DOCKFW_LOG_LEVEL", default_value = "info")]
        log_level: String,
    },
    /// Validate the policy; print every error as path:line:col: message.
    Check {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The daemon's state directory, to say what it would enforce
        /// instead of an invalid policy.
        #[arg(long, env = "DOCKFW_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Print the rules dockfw would install now and how they differ from
    /// what is installed; applies nothing.
    Plan {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(flatten)]
        backend: BackendArg,
    },
    /// For a source address: which published ports it can reach, and the
    /// policy entry (or default) that decides each. Reads the policy file
    /// and the live inventory; changes nothing.
    Explain {
        /// The source address, e.g. 203.0.113.9 or 2001:db8::1.
        #[arg(long)]
        from: std::net::IpAddr,
        /// Only this published (host) port.
        #[arg(long)]
        port: Option<u16>,
        /// Only this container.
        container: Option<String>,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon what is exposed and why.
    Status {
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the status document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon to re-read its policy.
    Reload {
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Remove every rule and chain dockfw owns, in both families. Refuses
    /// while the daemon answers on its socket (it would put them back).
    Uninstall {
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        #[command(flatten)]
        backend: BackendArg,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            if let Some(ControlError::NotRunning { path, .. }) = e.downcast_ref::<ControlError>() {
                eprintln!(
                    "dockfw: the daemon is not running (no answer on {})",
                    path.display()
                );
                return ExitCode::from(EXIT_NOT_RUNNING);
            }
            eprintln!("dockfw: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    if let Command::Check { config, state_dir } = &command {
        return Ok(check(config, state_dir));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match command {
            Command::Daemon {
                config,
                socket,
                resync_secs,
                state_dir,
                backend,
                log_level,
                metrics_listen,
            } => {
                let resync = Duration::from_secs(resync_secs);
                init_logging(&log_level);
                let daemon = DaemonArgs {
                    config,
                    socket,
                    state_dir,
                    resync,
                    backend: backend.backend,
                    metrics_listen,
                };
                run_daemon(daemon).await
            }
            Command::Plan { config, backend } => show_plan(&config, backend.backend).await,
            Command::Status { socket, json } => show_status(&socket, json).await,
            Command::Explain {
                from,
                port,
                container,
                config,
                json,
            } => explain(&config, from, port, container.as_deref(), json).await,
            Command::Reload { socket } => reload(&socket).await,
            Command::Uninstall { socket, backend } => uninstall(&socket, backend.backend).await,
            Command::Check { .. } => Ok(ExitCode::SUCCESS),
        }
    })
}

fn summary(policy: &Policy) -> String {
    format!(
        "default {}, {} allow and {} deny entries",
        format!("{:?}", policy.default).to_lowercase(),
        policy.allow.len(),
        policy.deny.len()
    )
}

/// Exit 0 for a valid policy; otherwise every error, what the daemon
/// enforces instead, and exit 1.
fn check(config: &Path, state_dir: &Path) -> ExitCode {
    let start = daemon::starting_policy(config, state_dir);
    match (&start.fallback, &start.errors) {
        (Some(fallback), Some(errors)) => {
            eprintln!("{errors}");
            eprintln!(
                "dockfw: {} is INVALID; the daemon {fallback}",
                config.display()
            );
            ExitCode::FAILURE
        }
        _ => {
            println!("{}: ok ({})", config.display(), summary(&start.policy));
            ExitCode::SUCCESS
        }
    }
}

fn load_policy(config: &Path) -> Result<Policy> {
    policy::parse(config).map_err(|e| match e {
        PolicyError::Invalid(_) => anyhow::anyhow!("invalid policy, nothing changed:\n{e}"),
        other => anyhow::Error::new(other),
    })
}

/// What `dockfw daemon` was asked to do.
struct DaemonArgs {
    config: PathBuf,
    socket: PathBuf,
    state_dir: PathBuf,
    resync: Duration,
    backend: BackendChoice,
    metrics_listen: Option<std::net::SocketAddr>,
}

async fn run_daemon(args: DaemonArgs) -> Result<ExitCode> {
    let DaemonArgs {
        config,
        socket,
        state_dir,
        resync,
        backend,
        metrics_listen,
    } = args;
    let state = StateDir::lock(&state_dir)?;
    let start = daemon::starting_policy(&config, &state_dir);
    let endpoint = endpoint_from_env();
    let docker = Arc::new(BollardSource::new(endpoint.clone()));
    let backend = resolve(backend, &docker).await;
    let listener = control::bind(&socket)?;
    let shutdown = CancellationToken::new();
    let (reload_tx, reload_rx) = mpsc::channel(8);
    let (status_tx, status_rx) = watch::channel(Status::default());
    let handles = Handles {
        status: status_rx,
        reload: reload_tx.clone(),
    };
    if let Some(addr) = metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        let status = handles.status.clone();
        tokio::spawn(dockfw::metrics::serve(listener, status, shutdown.clone()));
    }
    let server = tokio::spawn(control::serve(listener, handles, shutdown.clone()));
    spawn_signal_handlers(reload_tx, shutdown.clone())?;
    info!(policy = %config.display(), %endpoint, socket = %socket.display(), state = %state_dir.display(), ?backend, "dockfw starting ({})", summary(&start.policy));
    let channels = Channels {
        reload: reload_rx,
        status: status_tx,
    };
    let settings = Config {
        resync,
        watch_ruleset: true,
        ..Config::new(config, endpoint)
    };
    let state = Some(state);
    match backend {
        BackendChoice::Nftables => {
            let fw = Nftables::new();
            daemon::run(settings, start, state, docker, fw, channels, shutdown).await;
        }
        _ => {
            let fw = Iptables::new();
            daemon::run(settings, start, state, docker, fw, channels, shutdown).await;
        }
    }
    let _ = server.await;
    Ok(ExitCode::SUCCESS)
}

/// `auto` made concrete: nftables where the engine reports its nftables
/// firewall backend, or answers but made no `DOCKER-USER` chain in either
/// iptables variant; iptables otherwise (also while the engine is not up:
/// at boot the chains are made before it).
async fn resolve(choice: BackendChoice, docker: &BollardSource) -> BackendChoice {
    if choice != BackendChoice::Auto {
        return choice;
    }
    match docker.firewall_driver().await {
        Ok(Some(driver)) if driver.starts_with("nftables") => BackendChoice::Nftables,
        Ok(_) => {
            let installed = Iptables::new().read(Family::V4).await;
            match installed {
                Ok(st) if !st.has_chain("DOCKER-USER") => BackendChoice::Nftables,
                _ => BackendChoice::Iptables,
            }
        }
        Err(_) => BackendChoice::Iptables,
    }
}

/// SIGHUP reloads the policy; SIGTERM and SIGINT stop the daemon.
fn spawn_signal_handlers(
    reload: mpsc::Sender<control::ReloadRequest>,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    info!("SIGHUP: reloading the policy");
                    let (answer, _) = oneshot::channel();
                    // Never wait here: SIGTERM must stay answerable. A full
                    // queue already holds a reload that will read the file.
                    let _ = reload.try_send(answer);
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        info!("stopping");
        shutdown.cancel();
    });
    Ok(())
}

/// Logs go to stderr: plain text unless stderr is a terminal; when stderr
/// is the journal (`JOURNAL_STREAM`), no timestamps of our own (the journal
/// keeps its own) and a `<N>` syslog priority prefix per line, so that
/// `journalctl -p warning -u dockfw` shows exactly the warnings and errors.
/// The level comes from `RUST_LOG` if set, else `--log-level`.
fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        let format = tracing_subscriber::fmt::format()
            .without_time()
            .with_ansi(false);
        builder.event_format(JournalPriority(format)).init();
    } else {
        builder.init();
    }
}

/// Prefixes each log line with its syslog priority for journald.
struct JournalPriority<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for JournalPriority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

async fn show_plan(config: &Path, backend: BackendChoice) -> Result<ExitCode> {
    let policy = load_policy(config)?;
    let docker = BollardSource::from_env();
    let inventory = docker
        .snapshot()
        .await
        .context("cannot read the docker inventory")?
        .inventory;
    match resolve(backend, &docker).await {
        BackendChoice::Nftables => print_plan(&Nftables::new(), &policy, &inventory).await,
        _ => print_plan(&Iptables::new(), &policy, &inventory).await,
    }
}

/// The desired rules, then each transaction that would take the installed
/// rules there, exactly as the daemon would run it.
async fn print_plan<F: Backend>(
    firewall: &F,
    policy: &Policy,
    inventory: &Inventory,
) -> Result<ExitCode> {
    let prepared = daemon::prepare(firewall, policy, inventory).await;
    if let Some((scope, e)) = prepared.observation.failed.into_iter().next() {
        return Err(anyhow::Error::new(e))
            .with_context(|| format!("cannot read the installed {scope} rules"));
    }
    let transactions = prepared.transactions?;
    for family in Family::ALL {
        if prepared.observation.unavailable.contains(&family) {
            println!(
                "# {}: disabled in this kernel, nothing to do",
                family.as_str()
            );
        } else {
            let variant = firewall.variant(family).unwrap_or("unknown");
            let rules = prepared.ruleset.family(family).rule_count();
            println!("# {} ({variant}): {rules} rules", family.as_str());
        }
    }
    print!("{}", firewall.render(&prepared.ruleset));
    if transactions.is_empty() {
        println!("# no changes against what is installed");
    }
    for tx in &transactions {
        println!(
            "# {}: differs from what is installed ({}); it would run:\n{}",
            tx.scope(),
            tx.changes,
            tx.script()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn explain(
    config: &Path,
    from: std::net::IpAddr,
    port: Option<u16>,
    container: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let policy = load_policy(config)?;
    let inventory = BollardSource::from_env()
        .snapshot()
        .await
        .context("cannot read the docker inventory")?
        .inventory;
    let rows = dockfw::explain::explain(&policy, &inventory, from, port, container);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).context("cannot encode")?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no published port {from} could address");
        return Ok(ExitCode::SUCCESS);
    }
    println!("from {from}:");
    for r in &rows {
        let host = if r.host_ip.contains(':') {
            format!("[{}]:{}", r.host_ip, r.host_port)
        } else {
            format!("{}:{}", r.host_ip, r.host_port)
        };
        let verdict = if r.reachable { "reachable" } else { "blocked" };
        println!(
            "  {:<20} {:<22} {:<5} {:<10} {}",
            escape(&r.container),
            host,
            r.proto,
            verdict,
            r.why
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show_status(socket: &Path, json: bool) -> Result<ExitCode> {
    match control::request(socket, &Request::Status).await? {
        Response::Status(status) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&status).context("cannot encode status")?
            );
        }
        Response::Status(status) => print!("{}", render_text(&status)),
        Response::Message(m) => println!("{m}"),
        Response::Error(e) => bail!("the daemon answered: {e}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn reload(socket: &Path) -> Result<ExitCode> {
    match control::request(socket, &Request::Reload).await? {
        Response::Message(m) => {
            println!("{m}");
            Ok(ExitCode::SUCCESS)
        }
        Response::Error(e) => {
            eprintln!("dockfw: reload refused:\n{e}");
            Ok(ExitCode::FAILURE)
        }
        Response::Status(_) => bail!("the daemon answered a reload with a status"),
    }
}

async fn uninstall(socket: &Path, backend: BackendChoice) -> Result<ExitCode> {
    // Anything but "nothing answers" means a daemon may be there.
    if !matches!(
        control::request(socket, &Request::Status).await,
        Err(ControlError::NotRunning { .. })
    ) {
        bail!(
            "a daemon is running on {} and would put the rules back; stop it first (systemctl stop dockfw)",
            socket.display()
        );
    }
    // Without a choice, remove what either backend left.
    let mut code = ExitCode::SUCCESS;
    if backend != BackendChoice::Nftables {
        code = remove_all(&Iptables::new()).await?;
    }
    // `auto` on a host without nft has no nftables table to remove.
    let nft_present = Path::new("/usr/sbin/nft").exists();
    let nft = backend == BackendChoice::Nftables || (backend == BackendChoice::Auto && nft_present);
    if nft && remove_all(&Nftables::new()).await? != ExitCode::SUCCESS {
        code = ExitCode::FAILURE;
    }
    Ok(code)
}

/// Remove everything dockfw owns, transaction by transaction.
async fn remove_all<F: Backend>(firewall: &F) -> Result<ExitCode> {
    let observation = firewall.observe().await;
    let mut failed = false;
    for family in observation.unavailable {
        println!("{}: disabled in this kernel", family.as_str());
    }
    for (scope, e) in observation.failed {
        eprintln!("dockfw: {scope}: {}", daemon::error_chain(&e));
        failed = true;
    }
    let transactions = firewall.uninstall(&observation.observed);
    if transactions.is_empty() && !failed {
        println!("nothing of dockfw's installed");
    }
    for tx in transactions {
        match firewall.apply(&tx).await {
            Ok(()) => println!("{}: removed dockfw's chains and jumps", tx.scope()),
            Err(e) => {
                eprintln!("dockfw: {}: {}", tx.scope(), daemon::error_chain(&e));
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
