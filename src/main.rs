//! The `dockfw` command line: the daemon and the commands that check the
//! policy, show the plan, ask the daemon for status or a reload, and
//! uninstall dockfw's rules.

use std::io::{IsTerminal as _, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory as _, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use dockfw::choice::{BackendKind, Chosen, EngineFirewall, Requested, choose};
use dockfw::control::{self, ControlError, Request, Response};
use dockfw::daemon::{self, Channels, Config, RulesetWatch};
use dockfw::docker::{BollardSource, DockerSource, endpoint_from_env};
use dockfw::endpoints::Endpoints;
use dockfw::firewall::{self, Backend, Transaction, WithBackend};
use dockfw::inventory::Inventory;
use dockfw::policy::{self, Policy, PolicyError};
use dockfw::ruleset::{Family, Ruleset};
use dockfw::state::{DEFAULT_STATE_DIR, StateDir, StateError};
use dockfw::status::{Status, escape, render_text};

const DEFAULT_CONFIG: &str = "/etc/dockfw/policy.toml";
const DEFAULT_SOCKET: &str = "/run/dockfw/dockfw.sock";

/// Exit status when the daemon is not running (for `status`, `reload`).
const EXIT_NOT_RUNNING: u8 = 3;

/// `--config -`: the policy is read from standard input.
const STDIN_CONFIG: &str = "-";
/// What messages name as the path of a policy read from standard input.
const STDIN_LABEL: &str = "<stdin>";

/// `dockfw --version`: the package version and the commit it was built
/// from (`build.rs`; "unknown" outside a git checkout).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("DOCKFW_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    version = VERSION,
    about = "Docker-aware host firewall: keeps a minimal rule set behind DOCKER-USER",
    long_about = "Docker-aware host firewall. dockfw watches the Docker Engine API, reads a \
declarative policy (/etc/dockfw/policy.toml) and keeps a minimal rule set in its own chains \
behind one jump at the top of DOCKER-USER (and one in INPUT, for the ports docker-proxy \
serves), or in its own nftables table, so that published container ports obey the policy \
instead of being open to the internet. `dockfw status` asks the running daemon what is \
exposed and why."
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
        /// The policy file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The daemon's control socket.
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
        /// Log each dropped new connection to the kernel log (rate-limited,
        /// 10/min per rule), prefixed with the deciding entry, e.g.
        /// `dockfw deny@33` (`journalctl -k`). Off by default.
        #[arg(long, env = "DOCKFW_LOG_DROPS", value_parser = clap::builder::FalseyValueParser::new())]
        log_drops: bool,
        /// Log level (error, warn, info, debug, trace); `RUST_LOG` wins when set.
        #[arg(long, env = "DOCKFW_LOG_LEVEL", default_value = "info")]
        log_level: String,
    },
    /// Validate the policy; print every error as path:line:col: message.
    ///
    /// Exit 0 with a summary when the policy is valid; exit 1 with every
    /// error, and what the daemon enforces instead (the last good policy, or
    /// deny all), when it is not.
    Check {
        /// The policy file; `-` reads it from standard input (errors then
        /// name `<stdin>`), e.g. for a configuration manager's validate hook.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The same as --config: `dockfw check -`, `dockfw check FILE`.
        #[arg(value_name = "CONFIG", conflicts_with = "config")]
        file: Option<PathBuf>,
        /// The daemon's state directory, to say what it would enforce
        /// instead of an invalid policy.
        #[arg(long, env = "DOCKFW_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Print the rules dockfw would install now and how they differ from
    /// what is installed; applies nothing.
    Plan {
        /// The policy file; `-` reads it from standard input.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(flatten)]
        backend: BackendArg,
        /// Print the plan as JSON: per family the rules as rendered lines,
        /// and each transaction with its scope, a summary of its changes
        /// and its text.
        #[arg(long)]
        json: bool,
        /// Plan for the inventory in FILE (dockfw's JSON of bridges and
        /// containers, as in tests/golden/*/inventory.json) instead of the
        /// engine's, against a firewall that holds nothing of dockfw's:
        /// asks no engine, reads no rules, needs no root. `--backend auto`
        /// means iptables here.
        #[arg(long, value_name = "FILE")]
        inventory: Option<PathBuf>,
    },
    /// For a source address: which published ports it can reach, and the
    /// policy entry (or default) that decides each. With --from-container
    /// and --to: whether a new connection that container starts gets out
    /// ([outbound]; [east_west] when ADDR is a container's); with
    /// --to-container: whether it reaches each address of that container
    /// ([east_west]). With --from and --to: the same for two addresses,
    /// where one on a Docker bridge that no known container has is judged
    /// as unclassified, as the rules judge it until the re-plan. Reads the
    /// policy file and the live inventory; changes nothing.
    Explain {
        /// The source address, e.g. 203.0.113.9 or 2001:db8::1.
        #[arg(long, required_unless_present = "from_container")]
        from: Option<std::net::IpAddr>,
        /// Outbound and east-west: the running container that starts the
        /// connection.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["from", "container"], requires = "destination")]
        from_container: Option<String>,
        /// Outbound: the destination address (east-west, when a container
        /// has it or it is on a Docker bridge); with --from, from that
        /// address.
        #[arg(
            long,
            value_name = "ADDR",
            conflicts_with = "container",
            group = "destination"
        )]
        to: Option<std::net::IpAddr>,
        /// East-west: the running container the connection goes to; one
        /// answer per address it has on a bridge network.
        #[arg(
            long,
            value_name = "NAME",
            requires = "from_container",
            conflicts_with = "from",
            group = "destination"
        )]
        to_container: Option<String>,
        /// Only this published (host) port; outbound: the destination port.
        #[arg(long)]
        port: Option<u16>,
        /// Outbound and east-west: the protocol.
        #[arg(long, value_parser = ["tcp", "udp"], default_value = "tcp", requires = "destination")]
        proto: String,
        /// Only this container.
        container: Option<String>,
        /// The policy file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(flatten)]
        backend: BackendArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon what is exposed and why.
    Status {
        /// The daemon's control socket.
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the status document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon to re-read its policy.
    Reload {
        /// The daemon's control socket.
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Remove every rule and chain dockfw owns, in both families. Refuses
    /// while the daemon answers on its socket (it would put them back).
    Uninstall {
        /// The daemon's control socket.
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        #[command(flatten)]
        backend: BackendArg,
        /// The daemon's state directory: the bridge-netfilter flags the
        /// daemon turned on for `[east_west]` are turned off again.
        #[arg(long, env = "DOCKFW_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    // The two hidden commands below are for packaging (build-deb.sh). The
    // pages and completions are generated by the very binary that is
    // shipped, from its clap definition, so they cannot drift from it. A
    // build.rs could not do the same without compiling the CLI a second
    // time apart from the library its defaults come from (DEFAULT_STATE_DIR,
    // …), and would run on every build; this costs two small crates in the
    // binary and two lines in build-deb.sh.
    /// Write the manual pages (dockfw.1 and one per command) into DIR.
    #[command(hide = true)]
    GenerateMan { dir: PathBuf },
    /// Write the bash, zsh and fish completions (dockfw.bash, _dockfw,
    /// dockfw.fish) into DIR.
    #[command(hide = true)]
    GenerateCompletions { dir: PathBuf },
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
    match &command {
        Command::Check {
            config,
            file,
            state_dir,
        } => return Ok(check(file.as_deref().unwrap_or(config), state_dir)),
        Command::GenerateMan { dir } => return generate_man(dir).map(|()| ExitCode::SUCCESS),
        Command::GenerateCompletions { dir } => {
            return generate_completions(dir).map(|()| ExitCode::SUCCESS);
        }
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async move {
        match command {
            Command::Daemon {
                config,
                socket,
                resync_secs,
                state_dir,
                backend,
                log_level,
                metrics_listen,
                log_drops,
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
                    log_drops,
                };
                run_daemon(daemon).await
            }
            Command::Plan {
                config,
                backend,
                json,
                inventory: Some(file),
            } => plan_offline(&config, &file, backend.backend, json).await,
            Command::Plan {
                config,
                backend,
                json,
                inventory: None,
            } => show_plan(&config, backend.backend, json).await,
            Command::Status { socket, json } => show_status(&socket, json).await,
            Command::Explain {
                from_container: Some(name),
                to: Some(to),
                port,
                proto,
                config,
                json,
                ..
            } => explain_outbound(&config, &name, connection(to, &proto, port), json).await,
            Command::Explain {
                from_container: Some(from),
                to_container: Some(to),
                port,
                proto,
                config,
                json,
                ..
            } => {
                let query = (from.as_str(), to.as_str(), proto_named(&proto), port);
                explain_east_west(&config, query, json).await
            }
            Command::Explain {
                from: Some(from),
                to: Some(to),
                port,
                proto,
                config,
                json,
                ..
            } => {
                explain_between(&config, from, connection(to, &proto, port), json).await
            }
            Command::Explain {
                from: Some(from),
                port,
                container,
                config,
                backend,
                json,
                ..
            } => {
                let query = (from, port, container.as_deref());
                explain(&config, query, backend.backend, json).await
            }
            Command::Explain { .. } => {
                bail!(
                    "give --from ADDR (with --to ADDR or not), or --from-container NAME with --to ADDR or --to-container NAME"
                )
            }
            Command::Reload { socket } => reload(&socket).await,
            Command::Uninstall {
                socket,
                backend,
                state_dir,
            } => uninstall(&socket, backend.backend, &state_dir).await,
            Command::Check { .. }
            | Command::GenerateMan { .. }
            | Command::GenerateCompletions { .. } => Ok(ExitCode::SUCCESS),
        }
    });
    // A policy read blocked on a FIFO or a hung mount never ends: do not
    // wait for it to exit (dropping the runtime would, for ever).
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

/// The documented command: the CLI without its hidden commands, which
/// the completions would offer otherwise (clap_complete lists hidden
/// subcommands; clap cannot remove one, so this is a copy without them).
fn documented_command() -> clap::Command {
    let cli = Cli::command();
    let visible: Vec<clap::Command> = cli
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .cloned()
        .collect();
    let mut cmd = clap::Command::new("dockfw")
        .version(VERSION)
        .about(cli.get_about().cloned().unwrap_or_default())
        .long_about(cli.get_long_about().cloned().unwrap_or_default())
        .subcommand_required(true)
        .disable_help_subcommand(true)
        .subcommands(visible);
    cmd.build();
    cmd
}

/// The roff of the main page's own sections, after clap's.
const MAN_EXTRA: &str = r#".SH "EXIT STATUS"
.TP
0
success; for \fBcheck\fR, the policy is valid
.TP
1
an error; for \fBcheck\fR, the policy is invalid
.TP
2
a usage error
.TP
3
\fBstatus\fR, \fBreload\fR: the daemon is not running
.SH ENVIRONMENT
.TP
\fBDOCKER_HOST\fR
the Docker Engine API (\fBunix://\fR\fIPATH\fR); default /var/run/docker.sock
.TP
\fBDOCKFW_BACKEND\fR, \fBDOCKFW_RESYNC_SECS\fR, \fBDOCKFW_STATE_DIR\fR, \fBDOCKFW_METRICS_LISTEN\fR, \fBDOCKFW_LOG_LEVEL\fR
defaults for the options of the same names
.TP
\fBRUST_LOG\fR
the daemon's log filter; wins over \fB\-\-log\-level\fR
.SH FILES
.TP
/etc/dockfw/policy.toml
the policy (version 1; the installed example is commented)
.TP
/run/dockfw/dockfw.sock
the daemon's control socket (group \fBdockfw\fR may ask for status)
.TP
/var/lib/dockfw
the last good policy, the bridges last seen, the lock against a second daemon
.SH "SEE ALSO"
\fBiptables\fR(8), \fBnft\fR(8), \fBipset\fR(8), \fBdockerd\fR(8)
.PP
In /usr/share/doc/dockfw: README.md (what and why, install, a minimal policy) and, in
docs/, policy.md (the policy reference), commands.md (each command, the status
document), how\-it\-works.md, backends.md, guarantees.md (each with the test that
proves it), limits.md and control.md (the control socket and the metrics).
"#;

/// `dockfw generate-man DIR`: dockfw.1, with exit status, environment and
/// files, and dockfw-COMMAND.1 for each command.
fn generate_man(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cmd = documented_command();
    let write = |name: String, page: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))
    };
    for sub in cmd.get_subcommands() {
        let man = clap_mangen::Man::new(sub.clone()).source(format!("dockfw {VERSION}"));
        let mut page = Vec::new();
        man.render(&mut page).context("cannot render a page")?;
        write(man.get_filename(), page)?;
    }
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    page.extend_from_slice(MAN_EXTRA.as_bytes());
    man.render_version_section(&mut page)?;
    write(man.get_filename(), page)
}

/// `dockfw generate-completions DIR`: dockfw.bash, _dockfw, dockfw.fish.
fn generate_completions(dir: &Path) -> Result<()> {
    use clap_complete::Shell;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = documented_command();
        clap_complete::generate_to(shell, &mut cmd, "dockfw", dir)
            .with_context(|| format!("cannot write the {shell} completions"))?;
    }
    Ok(())
}

fn summary(policy: &Policy) -> String {
    let lower = |d: policy::Default| format!("{d:?}").to_lowercase();
    let mut text = format!(
        "default {}, {} allow and {} deny entries",
        lower(policy.default),
        policy.allow.len(),
        policy.deny.len()
    );
    if let Some(out) = &policy.outbound {
        text.push_str(&format!(
            "; outbound default {}, to_host {}, {} isolate, {} allow and {} deny entries",
            lower(out.default),
            lower(out.to_host),
            out.isolate.len(),
            out.allow.len(),
            out.deny.len()
        ));
    }
    if let Some(ew) = &policy.east_west {
        text.push_str(&format!(
            "; east_west default {}, {} isolate, {} allow and {} deny entries",
            lower(ew.default),
            ew.isolate.len(),
            ew.allow.len(),
            ew.deny.len()
        ));
    }
    text
}

/// Exit 0 for a valid policy; otherwise every error, what the daemon
/// enforces instead, and exit 1.
fn check(config: &Path, state_dir: &Path) -> ExitCode {
    let parsed = read_policy(config, std::io::stdin().lock());
    let start = daemon::starting_policy_from(parsed, state_dir);
    let label = config_label(config).display();
    match (&start.fallback, &start.errors) {
        (Some(fallback), Some(errors)) => {
            eprintln!("{errors}");
            eprintln!("dockfw: {label} is INVALID; the daemon would be {fallback}");
            ExitCode::FAILURE
        }
        _ => {
            for warning in policy::warnings(&start.policy) {
                eprintln!("{label}:{}:1: warning: {}", warning.line, warning.message);
            }
            println!("{label}: ok ({})", summary(&start.policy));
            ExitCode::SUCCESS
        }
    }
}

/// The path messages name for `config`: `<stdin>` for `-`.
fn config_label(config: &Path) -> &Path {
    if config.as_os_str() == STDIN_CONFIG {
        Path::new(STDIN_LABEL)
    } else {
        config
    }
}

/// Read and validate the policy at `config`, or from `stdin` when `config`
/// is `-` (a file named `-` is `./-`); also the text read.
fn read_policy(config: &Path, mut stdin: impl Read) -> Result<(Policy, String), PolicyError> {
    if config.as_os_str() != STDIN_CONFIG {
        return policy::parse_with_text(config);
    }
    let label = Path::new(STDIN_LABEL);
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .map_err(|source| PolicyError::Read {
            path: label.to_owned(),
            source,
        })?;
    let policy = policy::parse_str(&text, label)?;
    Ok((policy, text))
}

fn load_policy(config: &Path) -> Result<Policy> {
    let parsed = read_policy(config, std::io::stdin().lock()).map(|(policy, _)| policy);
    parsed.map_err(|e| match e {
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
    log_drops: bool,
}

async fn run_daemon(args: DaemonArgs) -> Result<ExitCode> {
    let DaemonArgs {
        config,
        socket,
        state_dir,
        resync,
        backend,
        metrics_listen,
        log_drops,
    } = args;
    let state = lock_state_dir(&state_dir)?;
    let start = daemon::starting_policy_within(&config, &state_dir, daemon::START_READ_LIMIT).await;
    let endpoint = endpoint_from_env();
    let docker = Arc::new(BollardSource::new(endpoint.clone()));
    let remembered = dockfw::state::engine_firewall(&state_dir);
    let (chosen, engine_now) = resolve(backend, &docker, remembered).await;
    let shutdown = CancellationToken::new();
    match engine_now {
        Some(now) => remember_engine_firewall(&state_dir, now, &chosen),
        // Auto at boot: what the engine uses is kept once it answers.
        None if backend == BackendChoice::Auto => {
            tokio::spawn(learn_engine_firewall(
                Arc::clone(&docker),
                state_dir.clone(),
                chosen.clone(),
                shutdown.clone(),
            ));
        }
        None => {}
    }
    let (reload_tx, reload_rx) = mpsc::channel(8);
    let (status_tx, status_rx) = watch::channel(Status::default());
    // The control socket and the metrics start after the first pass and
    // retry in the background: the firewall never waits for them.
    let endpoints = Endpoints {
        socket: socket.clone(),
        metrics: metrics_listen,
    };
    let server = tokio::spawn(dockfw::endpoints::run(
        endpoints,
        status_rx,
        reload_tx.clone(),
        shutdown.clone(),
    ));
    if let Err(e) = spawn_signal_handlers(reload_tx, shutdown.clone()) {
        // Protection does not wait for it: SIGTERM then ends the process as
        // by default (the rules stay), SIGHUP is lost; `dockfw reload` works.
        error!("{e:#}; running without signal handlers");
    }
    info!(policy = %config.display(), %endpoint, socket = %socket.display(), state = %state_dir.display(), backend = %chosen.backend, why = %chosen.why, "dockfw starting ({})", summary(&start.policy));
    let channels = Channels {
        reload: reload_rx,
        status: status_tx,
    };
    let settings = Config {
        resync,
        ruleset_watch: RulesetWatch::Netlink,
        log_drops,
        backend: Some(chosen.clone()),
        ..Config::new(config, endpoint)
    };
    let daemon = RunDaemon {
        settings,
        start,
        state,
        docker,
        channels,
        shutdown,
    };
    firewall::open(chosen.backend, daemon).await;
    let _ = server.await;
    Ok(ExitCode::SUCCESS)
}

/// The reconcile loop, until `shutdown`, with the driver
/// [`firewall::open`] picks.
struct RunDaemon {
    settings: Config,
    start: daemon::StartPolicy,
    state: Option<StateDir>,
    docker: Arc<BollardSource>,
    channels: Channels,
    shutdown: CancellationToken,
}

impl WithBackend for RunDaemon {
    type Output = ();

    async fn run<F: Backend>(self, firewall: F) {
        let RunDaemon {
            settings: config,
            start,
            state,
            docker,
            channels,
            shutdown,
        } = self;
        daemon::run(config, start, state, docker, firewall, channels, shutdown).await;
    }
}

/// The state directory, locked; refused when another daemon holds it. A
/// directory that cannot be used otherwise (a read-only or full disk at
/// boot) does not stop protection: the daemon runs without it, loudly.
fn lock_state_dir(dir: &Path) -> Result<Option<StateDir>> {
    match StateDir::lock(dir) {
        Ok(state) => Ok(Some(state)),
        Err(e @ StateError::AlreadyRunning { .. }) => Err(e.into()),
        Err(e) => {
            error!(
                error = %daemon::error_chain(&e),
                "STATE DIRECTORY UNUSABLE: protecting without it (no last good policy kept, \
                 no bridges remembered for the next boot, no lock against a second daemon)"
            );
            Ok(None)
        }
    }
}

impl BackendChoice {
    fn requested(self) -> Requested {
        match self {
            BackendChoice::Auto => Requested::Auto,
            BackendChoice::Iptables => Requested::Explicit(BackendKind::Iptables),
            BackendChoice::Nftables => Requested::Explicit(BackendKind::Nftables),
        }
    }
}

/// The backend to drive and why (see [`dockfw::choice::choose`]), and what
/// the engine's firewall is when `auto` asked it and it answered.
async fn resolve(
    choice: BackendChoice,
    docker: &BollardSource,
    remembered: Option<BackendKind>,
) -> (Chosen, Option<EngineFirewall>) {
    let requested = choice.requested();
    let now = match requested {
        Requested::Auto => engine_firewall(docker).await,
        Requested::Explicit(_) => None,
    };
    (choose(requested, now, remembered), now)
}

/// What the engine's firewall is: nftables where it reports its nftables
/// firewall driver (`GET /info`, Docker 28+), or answers but made no
/// `DOCKER-USER` chain in either iptables variant; iptables otherwise.
/// `None` while it does not answer (at boot it starts after dockfw).
async fn engine_firewall(docker: &BollardSource) -> Option<EngineFirewall> {
    // Briefly: at boot the engine waits for dockfw, and a socket-activated
    // docker.socket would hold the call until bollard's own timeout.
    let driver = match tokio::time::timeout(Duration::from_secs(2), docker.firewall_driver()).await
    {
        Ok(Ok(driver)) => driver,
        _ => return None,
    };
    Some(firewall::engine_firewall(driver.as_deref()).await)
}

/// Keep what goes with the engine's firewall for `auto` at the next boot
/// (this daemon holds the state directory's lock); say so when it is not
/// the backend this daemon drives.
fn remember_engine_firewall(state_dir: &Path, now: EngineFirewall, chosen: &Chosen) {
    if let Err(e) = dockfw::state::save_engine_firewall(state_dir, now.backend()) {
        warn!(error = %daemon::error_chain(&e), "cannot keep the engine's firewall for the next boot");
    }
    if now.backend() != chosen.backend {
        warn!(
            engine = %now.backend(),
            driving = %chosen.backend,
            why = %chosen.why,
            "the engine's firewall is not the backend dockfw drives; restart dockfw to follow it (the next boot does)"
        );
    }
}

/// `auto` chose without the engine (at boot): once it answers, keep what
/// its firewall is for the next boot (and warn if it is not what runs).
/// Ends with the daemon: `shutdown` stops it between and during asks.
async fn learn_engine_firewall(
    docker: Arc<BollardSource>,
    state_dir: PathBuf,
    chosen: Chosen,
    shutdown: CancellationToken,
) {
    loop {
        let asked = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            engine_firewall(&docker).await
        };
        let answer = tokio::select! {
            () = shutdown.cancelled() => return,
            answer = asked => answer,
        };
        if let Some(now) = answer {
            remember_engine_firewall(&state_dir, now, &chosen);
            return;
        }
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

/// The engine's inventory, its bridges checked as the daemon checks them:
/// only interfaces the kernel has as Linux bridges now are judged by their
/// interface, the others by address (each one said on stderr). What `plan`
/// and every `explain` answer from.
async fn checked_inventory(docker: &BollardSource) -> Result<dockfw::inventory::Inventory> {
    let mut inventory = docker
        .snapshot()
        .await
        .context("cannot read the docker inventory")?
        .inventory;
    let links = dockfw::links::links().map_err(|e| format!("{:#}", anyhow::Error::from(e)));
    for r in dockfw::links::check_bridges(&mut inventory, links.as_ref().map_err(String::as_str)) {
        eprintln!(
            "dockfw: network {:?}: {}",
            r.rejected.name, r.rejected.reason
        );
    }
    Ok(inventory)
}

async fn show_plan(config: &Path, backend: BackendChoice, json: bool) -> Result<ExitCode> {
    let policy = load_policy(config)?;
    let docker = BollardSource::from_env();
    let inventory = checked_inventory(&docker).await?;
    let chosen = resolve(backend, &docker, remembered_engine_firewall())
        .await
        .0;
    let plan = PrintPlan {
        policy: &policy,
        inventory: &inventory,
        json,
    };
    firewall::open(chosen.backend, plan).await
}

/// `dockfw plan --inventory FILE`: the plan for a saved inventory, and the
/// transactions that would install it where nothing of dockfw's is.
async fn plan_offline(
    config: &Path,
    file: &Path,
    backend: BackendChoice,
    json: bool,
) -> Result<ExitCode> {
    let policy = load_policy(config)?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let inventory: Inventory = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an inventory", file.display()))?;
    let ruleset = dockfw::plan::plan(&policy, &inventory);
    let kind = if backend == BackendChoice::Nftables {
        BackendKind::Nftables
    } else {
        BackendKind::Iptables
    };
    firewall::open(kind, PlanOffline { ruleset, json }).await
}

/// [`plan_offline`] with the driver [`firewall::open`] hands over.
struct PlanOffline {
    ruleset: Ruleset,
    json: bool,
}

impl WithBackend for PlanOffline {
    type Output = Result<ExitCode>;

    async fn run<F: Backend>(self, firewall: F) -> Result<ExitCode> {
        let nothing = firewall.nothing_installed();
        let transactions = firewall.transactions(&self.ruleset, &nothing)?;
        print_prepared(&firewall, &self.ruleset, &[], &transactions, self.json)
    }
}

/// The engine's firewall as the daemon's state directory (`DOCKFW_STATE_DIR`
/// or the default) last kept it: what `auto` goes by while the engine is away.
fn remembered_engine_firewall() -> Option<BackendKind> {
    let state_dir = std::env::var_os("DOCKFW_STATE_DIR")
        .map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from);
    dockfw::state::engine_firewall(&state_dir)
}

/// `dockfw plan --json`: per family whether the kernel has it, what drives
/// it, and its rules as rendered lines; then each transaction with its
/// scope, its changes and its text (what would run, in order).
fn plan_json<F: Backend>(
    firewall: &F,
    ruleset: &Ruleset,
    unavailable: &[Family],
    transactions: &[F::Transaction],
) -> serde_json::Value {
    let families: Vec<serde_json::Value> = Family::ALL
        .into_iter()
        .map(|family| {
            let available = !unavailable.contains(&family);
            let rules: Vec<String> = firewall
                .render_family(ruleset, family)
                .lines()
                .map(str::to_owned)
                .collect();
            serde_json::json!({
                "family": family.as_str(),
                "available": available,
                "variant": if available { firewall.variant(family) } else { None },
                "rule_count": firewall.rule_count(ruleset.family(family)),
                "rules": rules,
            })
        })
        .collect();
    let transactions: Vec<serde_json::Value> = transactions
        .iter()
        .map(|tx| {
            let c = tx.changes();
            serde_json::json!({
                "scope": tx.scope(),
                "changes": {
                    "summary": tx.summary(),
                    "rules_added": c.added,
                    "rules_removed": c.removed,
                    "elements_added": c.elements_added,
                    "elements_removed": c.elements_removed,
                },
                "text": tx.script(),
            })
        })
        .collect();
    serde_json::json!({
        "backend": firewall.kind().as_str(),
        "families": families,
        "transactions": transactions,
    })
}

/// `dockfw plan`: the desired rules, then each transaction that would take
/// the installed rules there, exactly as the daemon would run it.
struct PrintPlan<'a> {
    policy: &'a Policy,
    inventory: &'a Inventory,
    json: bool,
}

impl WithBackend for PrintPlan<'_> {
    type Output = Result<ExitCode>;

    async fn run<F: Backend>(self, firewall: F) -> Result<ExitCode> {
        print_plan(&firewall, self.policy, self.inventory, self.json).await
    }
}

async fn print_plan<F: Backend>(
    firewall: &F,
    policy: &Policy,
    inventory: &Inventory,
    json: bool,
) -> Result<ExitCode> {
    let prepared = daemon::prepare(firewall, policy, inventory).await;
    if let Some((scope, e)) = prepared.observation.failed.into_iter().next() {
        return Err(anyhow::Error::new(e))
            .with_context(|| format!("cannot read the installed {scope} rules"));
    }
    let transactions = prepared.transactions?;
    let unavailable = &prepared.observation.unavailable;
    print_prepared(
        firewall,
        &prepared.ruleset,
        unavailable,
        &transactions,
        json,
    )
}

/// Print a plan and its transactions, as text or (`json`) as [`plan_json`].
fn print_prepared<F: Backend>(
    firewall: &F,
    ruleset: &Ruleset,
    unavailable: &[Family],
    transactions: &[F::Transaction],
    json: bool,
) -> Result<ExitCode> {
    if json {
        let doc = plan_json(firewall, ruleset, unavailable, transactions);
        let text = serde_json::to_string_pretty(&doc).context("cannot encode the plan")?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    for family in Family::ALL {
        if unavailable.contains(&family) {
            println!(
                "# {}: disabled in this kernel, nothing to do",
                family.as_str()
            );
        } else {
            let variant = firewall.variant(family).unwrap_or("unknown");
            let rules = firewall.rule_count(ruleset.family(family));
            println!("# {} ({variant}): {rules} rules", family.as_str());
        }
    }
    print!("{}", firewall.render(ruleset));
    if transactions.is_empty() {
        println!("# no changes against what is installed");
    }
    for tx in transactions {
        println!(
            "# {}: differs from what is installed ({}); it would run:\n{}",
            tx.scope(),
            tx.summary(),
            tx.script()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn explain(
    config: &Path,
    (from, port, container): (std::net::IpAddr, Option<u16>, Option<&str>),
    backend: BackendChoice,
    json: bool,
) -> Result<ExitCode> {
    let policy = load_policy(config)?;
    let docker = BollardSource::from_env();
    let inventory = checked_inventory(&docker).await?;
    let mut rows = dockfw::explain::explain(&policy, &inventory, from, port, container);
    // With iptables, another tool's rule above FORWARD -> DOCKER-USER may
    // accept first; nftables base chains all see the packet, dockfw's first.
    let chosen = resolve(backend, &docker, remembered_engine_firewall())
        .await
        .0;
    let bypasses = firewall::forward_bypasses(chosen.backend).await;
    dockfw::explain::mark_bypassed(&mut rows, &bypasses);
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
        if let Some(rule) = &r.bypassed_by {
            println!(
                "  {:<20} BYPASSED: FORWARD rule \"{}\" above DOCKER-USER may accept it before dockfw judges it",
                "",
                escape(rule)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn explain_outbound(
    config: &Path,
    container: &str,
    connection: dockfw::plan::Connection,
    json: bool,
) -> Result<ExitCode> {
    let policy = load_policy(config)?;
    let inventory = checked_inventory(&BollardSource::from_env()).await?;
    let answer = dockfw::explain::explain_outbound(&policy, &inventory, container, connection)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).context("cannot encode")?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let to = match (answer.port, answer.to) {
        (Some(port), std::net::IpAddr::V6(addr)) => format!("[{addr}]:{port}"),
        (Some(port), addr) => format!("{addr}:{port}"),
        (None, addr) => addr.to_string(),
    };
    let verdict = if answer.passes { "passes" } else { "blocked" };
    println!(
        "from {} to {to}/{}: {verdict} ({})",
        escape(&answer.container),
        answer.proto,
        escape(&answer.why)
    );
    if let Some(note) = &answer.note {
        println!("  note: {note}");
    }
    println!(
        "  to the host itself (any of its addresses): to_host = {}",
        answer.to_host
    );
    Ok(ExitCode::SUCCESS)
}

async fn explain_between(
    config: &Path,
    from: std::net::IpAddr,
    connection: dockfw::plan::Connection,
    json: bool,
) -> Result<ExitCode> {
    let policy = load_policy(config)?;
    let inventory = checked_inventory(&BollardSource::from_env()).await?;
    let answer = dockfw::explain::explain_between(&policy, &inventory, from, connection)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).context("cannot encode")?
        );
    } else {
        print!("{}", dockfw::explain::render_between(&answer));
    }
    Ok(ExitCode::SUCCESS)
}

/// `tcp` or `udp`, as `explain --proto` accepts them.
/// The connection `explain` asks about: to `to`, over the protocol named
/// `proto`, to `port` when given.
fn connection(to: std::net::IpAddr, proto: &str, port: Option<u16>) -> dockfw::plan::Connection {
    dockfw::plan::Connection {
        to,
        proto: proto_named(proto),
        port,
    }
}

fn proto_named(proto: &str) -> dockfw::inventory::Proto {
    if proto == "udp" {
        dockfw::inventory::Proto::Udp
    } else {
        dockfw::inventory::Proto::Tcp
    }
}

async fn explain_east_west(
    config: &Path,
    (from, to, proto, port): (&str, &str, dockfw::inventory::Proto, Option<u16>),
    json: bool,
) -> Result<ExitCode> {
    let policy = load_policy(config)?;
    let inventory = checked_inventory(&BollardSource::from_env()).await?;
    let answers = dockfw::explain::explain_east_west(&policy, &inventory, (from, to), proto, port)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answers).context("cannot encode")?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if answers.is_empty() {
        println!(
            "{} has no address on a bridge network: [east_west] judges nothing to it",
            escape(to)
        );
    }
    for answer in &answers {
        let to = match (answer.port, answer.to) {
            (Some(port), std::net::IpAddr::V6(addr)) => format!("[{addr}]:{port}"),
            (Some(port), addr) => format!("{addr}:{port}"),
            (None, addr) => addr.to_string(),
        };
        let verdict = if answer.passes { "passes" } else { "blocked" };
        println!(
            "from {} to {} on {} ({to}/{}): {verdict} ({})",
            escape(&answer.container),
            escape(&answer.to_container),
            escape(&answer.network),
            answer.proto,
            escape(&answer.why)
        );
        if let Some(note) = &answer.note {
            println!("  note: {note}");
        }
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

async fn uninstall(socket: &Path, backend: BackendChoice, state_dir: &Path) -> Result<ExitCode> {
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
    for kind in firewall::to_uninstall(backend.requested()) {
        if firewall::open(kind, RemoveAll).await? != ExitCode::SUCCESS {
            code = ExitCode::FAILURE;
        }
    }
    if !restore_bridge_flags(state_dir).await {
        code = ExitCode::FAILURE;
    }
    Ok(code)
}

/// Turn off the bridge-netfilter flags the daemon turned on (kept in the
/// state directory); forget those whose bridge is gone. False when one
/// could not be turned off (it stays kept, for the next try).
async fn restore_bridge_flags(state_dir: &Path) -> bool {
    use dockfw::bridge_netfilter::{Kernel, Switches, Turned};
    let turned = match dockfw::state::bridge_flags(state_dir) {
        Ok(turned) => turned,
        Err(e) => {
            eprintln!(
                "dockfw: {} (the bridge-netfilter flags the daemon turned on stay on)",
                daemon::error_chain(&e)
            );
            return false;
        }
    };
    if turned.0.is_empty() {
        return true;
    }
    let kernel = Kernel::default();
    let bridges = kernel.flags().await.ok();
    let mut kept = Turned::default();
    for (bridge, family) in turned.0 {
        let gone = bridges.as_ref().is_some_and(|b| !b.contains_key(&bridge));
        let result = match dockfw::net::Iface::new(&bridge) {
            Ok(_) if gone => continue,
            Ok(iface) => kernel.set(&iface, family, false).await,
            Err(_) => continue,
        };
        match result {
            Ok(()) => println!(
                "{bridge}: bridge netfilter for {} turned off again",
                family.as_str()
            ),
            Err(e) => {
                eprintln!("dockfw: {bridge}: {}", daemon::error_chain(&e));
                kept.0.insert((bridge, family));
            }
        }
    }
    let ok = kept.0.is_empty();
    if let Err(e) = dockfw::state::save_bridge_flags(state_dir, &kept) {
        eprintln!("dockfw: {}", daemon::error_chain(&e));
        return false;
    }
    ok
}

/// `dockfw uninstall` of one driver: everything dockfw owns goes,
/// transaction by transaction.
struct RemoveAll;

impl WithBackend for RemoveAll {
    type Output = Result<ExitCode>;

    async fn run<F: Backend>(self, firewall: F) -> Result<ExitCode> {
        remove_all(&firewall).await
    }
}

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

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use dockfw::firewall::Changes;
    use dockfw::firewall::iptables::{Iptables, Step, Transaction};
    use dockfw::firewall::nftables::Nftables;

    use super::*;

    const VALID: &str = "[inbound]\ndefault = \"deny\"\n\n[[inbound.allow]]\nports = [80]\n";
    const INVALID: &str = "[inbound]\ndefault = \"maybe\"\n\n[[inbound.allow]]\nports = [0]\n";

    /// A fresh, empty directory under the system's temporary one.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dockfw-main-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
        documented_command().debug_assert();
    }

    #[test]
    fn version_names_the_commit() {
        let prefix = concat!(env!("CARGO_PKG_VERSION"), " (");
        assert!(VERSION.starts_with(prefix), "{VERSION}");
        assert!(VERSION.ends_with(')'), "{VERSION}");
        let commit = &VERSION[prefix.len()..VERSION.len() - 1];
        assert!(
            commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{VERSION}"
        );
    }

    fn check_config(args: &[&str]) -> PathBuf {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Command::Check { config, file, .. } => file.unwrap_or(config),
            _ => panic!("not check"),
        }
    }

    #[test]
    fn check_takes_the_policy_as_option_or_argument() {
        assert_eq!(
            check_config(&["dockfw", "check"]),
            Path::new(DEFAULT_CONFIG)
        );
        assert_eq!(check_config(&["dockfw", "check", "-"]), Path::new("-"));
        assert_eq!(
            check_config(&["dockfw", "check", "--config", "-"]),
            Path::new("-")
        );
        assert_eq!(
            check_config(&["dockfw", "check", "/tmp/p.toml"]),
            Path::new("/tmp/p.toml")
        );
        assert!(Cli::try_parse_from(["dockfw", "check", "--config", "a", "b"]).is_err());
    }

    #[test]
    fn stdin_policy_is_labelled_stdin() {
        assert_eq!(config_label(Path::new("-")), Path::new("<stdin>"));
        assert_eq!(config_label(Path::new("./-")), Path::new("./-"));
        let (policy, text) = read_policy(Path::new("-"), Cursor::new(VALID)).unwrap();
        assert_eq!(text, VALID);
        assert_eq!(policy.allow.len(), 1);
        let err = read_policy(Path::new("-"), Cursor::new(INVALID)).unwrap_err();
        let lines: Vec<String> = err.to_string().lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        for line in &lines {
            assert!(line.starts_with("<stdin>:"), "{line}");
        }
        // Not UTF-8: a read error naming <stdin>, not a panic.
        let err = read_policy(Path::new("-"), Cursor::new(vec![0xff, 0xfe])).unwrap_err();
        assert!(err.to_string().contains("<stdin>"), "{err}");
    }

    #[test]
    fn a_path_is_read_from_the_file_not_stdin() {
        let dir = scratch("file");
        let path = dir.join("policy.toml");
        std::fs::write(&path, INVALID).unwrap();
        let err = read_policy(&path, Cursor::new(VALID)).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!("{}:", path.display())),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn check_of_stdin_falls_back_like_a_file() {
        let dir = scratch("fallback");
        let parsed = read_policy(Path::new("-"), Cursor::new(INVALID));
        let start = daemon::starting_policy_from(parsed, &dir);
        assert!(start.errors.unwrap().starts_with("<stdin>:"));
        assert!(start.fallback.unwrap().contains("deny all"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn man_pages_and_completions_document_the_visible_commands() {
        let dir = scratch("docs");
        generate_man(&dir.join("man")).unwrap();
        generate_completions(&dir.join("comp")).unwrap();
        let page = std::fs::read_to_string(dir.join("man/dockfw.1")).unwrap();
        for section in ["SYNOPSIS", "\"EXIT STATUS\"", "FILES", "\"SEE ALSO\""] {
            assert!(page.contains(&format!(".SH {section}")), "{section}");
        }
        assert!(page.contains(VERSION));
        let visible = [
            "daemon",
            "check",
            "plan",
            "explain",
            "status",
            "reload",
            "uninstall",
        ];
        for name in visible {
            assert!(dir.join(format!("man/dockfw-{name}.1")).exists(), "{name}");
        }
        for file in ["comp/dockfw.bash", "comp/_dockfw", "comp/dockfw.fish"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            assert!(text.contains("uninstall"), "{file}");
            assert!(
                !text.contains("generate-"),
                "{file} offers a hidden command"
            );
        }
        let names: Vec<String> = std::fs::read_dir(dir.join("man"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), visible.len() + 1, "{names:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn plan_json_lists_families_and_transactions() {
        let tx = Transaction {
            family: Some(Family::V6),
            steps: vec![
                Step::Sets("create s hash:net family inet6\n".to_owned()),
                Step::Rules("*filter\nCOMMIT\n".to_owned()),
            ],
            changes: Changes {
                added: 3,
                elements_added: 2,
                ..Changes::default()
            },
            jumps: Default::default(),
        };
        let doc = plan_json(&Iptables::new(), &Ruleset::default(), &[Family::V4], &[tx]);
        assert_eq!(doc["backend"], "iptables");
        assert_eq!(doc["families"][0]["family"], "ipv4");
        assert_eq!(doc["families"][0]["available"], false);
        assert_eq!(doc["families"][1]["family"], "ipv6");
        assert_eq!(doc["families"][1]["available"], true);
        assert_eq!(doc["families"][1]["rule_count"], 0);
        assert!(doc["families"][1]["rules"].is_array());
        let t = &doc["transactions"][0];
        assert_eq!(t["scope"], "ipv6");
        assert_eq!(t["changes"]["summary"], "+3 -0 rules, +2 -0 set elements");
        assert_eq!(t["changes"]["rules_added"], 3);
        assert_eq!(t["changes"]["elements_added"], 2);
        assert_eq!(
            t["text"],
            "# sets:\ncreate s hash:net family inet6\n# rules:\n*filter\nCOMMIT\n"
        );
        let nft = plan_json(&Nftables::new(), &Ruleset::default(), &[], &[]);
        assert_eq!(nft["backend"], "nftables");
        let first = nft["families"][0]["rules"][0].as_str().unwrap_or_default();
        assert!(first.starts_with("table inet dockfw"), "{nft}");
        assert_eq!(nft["transactions"], serde_json::json!([]));
    }
}
