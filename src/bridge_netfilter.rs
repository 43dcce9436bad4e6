//! Bridge netfilter, for `[east_west]` on one bridge: frames between two
//! containers on the same bridge are bridged, not routed, and reach the IP
//! forward hooks (where the east-west rules are) only when the network
//! namespace's global switch (`net.bridge.bridge-nf-call-iptables`, and
//! `-ip6tables` for IPv6) or the bridge's own flag (`nf_call_iptables`,
//! `nf_call_ip6tables`) is on.
//!
//! dockfw never changes the global switch. Where it is off, dockfw turns on
//! the flag of each bridge an `[east_west]` table needs, keeps which flags
//! it turned on ([`Turned`], saved in the state directory so that `dockfw
//! uninstall` and the next daemon know), and turns them off again when the
//! table goes. Where neither can be read, same-bridge traffic of that
//! bridge is not judged, and [`decide`] says so per bridge and family.
//!
//! [`decide`] is the pure part; [`Switches`] is the edge: [`Kernel`] reads
//! `/proc/sys/net/bridge` (which shows the reader's own network namespace)
//! and reads and writes the flags with `ip` over rtnetlink (sysfs would
//! show the namespace of whoever mounted `/sys`), each run through the
//! firewall's process runner ([`crate::firewall`]: tokio's processes, off
//! the runtime's workers) with a timeout of its own ([`IP_TIMEOUT`]), past
//! which the child is killed.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::firewall::{FirewallError, run_within};
use crate::net::{Family, Iface};

/// `ip`, from where Debian's iproute2 installs it (never found through
/// `PATH`, as the firewall programs).
pub const IP: &str = "/sbin/ip";

/// How long one run of `ip` may take before dockfw kills it: it answers
/// in milliseconds, and the pass waits for it.
pub const IP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a switch or a flag could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} holds {text:?}, not 0 or 1")]
    Unexpected { path: PathBuf, text: String },
    #[error("cannot run {program}")]
    Run {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("{program} {args} failed: {stderr}")]
    Failed {
        program: String,
        args: String,
        stderr: String,
    },
    #[error("{program} {args} timed out after {after:?} and was killed")]
    Timeout {
        program: String,
        args: String,
        after: Duration,
    },
    #[error("cannot parse the bridges {IP} listed")]
    Parse {
        #[source]
        source: serde_json::Error,
    },
}

/// A bridge's own flags, per family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub v4: bool,
    pub v6: bool,
}

impl Flags {
    pub fn get(self, family: Family) -> bool {
        match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }
}

/// The switches of dockfw's network namespace: the edge. Reading and
/// setting a bridge's flags runs a program, so they are futures.
pub trait Switches: Send + Sync {
    /// The global switch of `family`: whether every bridge's IP frames
    /// reach the IP hooks.
    fn global(&self, family: Family) -> Result<bool, SwitchError>;
    /// Every Linux bridge's own flags, by interface name.
    fn flags(&self) -> BoxFuture<'_, Result<BTreeMap<String, Flags>, SwitchError>>;
    /// Set the flag of `family` of `bridge`.
    fn set<'a>(
        &'a self,
        bridge: &'a Iface,
        family: Family,
        on: bool,
    ) -> BoxFuture<'a, Result<(), SwitchError>>;
}

/// The flags dockfw turned on, by bridge and family: what it turns off
/// again when no table needs them, and at `dockfw uninstall`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turned(pub BTreeSet<(String, Family)>);

/// A bridge whose same-bridge traffic is not judged in a family, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotEnforced {
    pub bridge: String,
    pub family: Family,
    pub reason: String,
}

/// What to do for one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Flags to turn on (then kept as [`Turned`]).
    pub turn_on: Vec<(Iface, Family)>,
    /// Flags dockfw turned on that nothing needs now, on bridges that
    /// still exist: to turn off.
    pub turn_off: Vec<(Iface, Family)>,
    /// Flags dockfw turned on, on bridges gone: to forget.
    pub forget: Vec<(String, Family)>,
    /// Bridges (and families) whose same-bridge traffic is not judged.
    pub not_enforced: Vec<NotEnforced>,
}

/// What the switches say: the global one per family (`Err`: unreadable,
/// with why), every bridge's flags (`Err` likewise).
pub struct Reading {
    pub global: [Result<bool, String>; 2],
    pub flags: Result<BTreeMap<String, Flags>, String>,
}

impl Reading {
    /// Read the switches now: the bridges' flags only when some global
    /// switch is not known to be on, or `flags` asks for them anyway
    /// (some are dockfw's, to turn off when no longer needed).
    pub async fn now(switches: &dyn Switches, flags: bool) -> Reading {
        let global = Family::ALL.map(|f| switches.global(f).map_err(|e| error_text(&e)));
        let flags = if flags || global.iter().any(|g| g != &Ok(true)) {
            switches.flags().await.map_err(|e| error_text(&e))
        } else {
            Ok(BTreeMap::new())
        };
        Reading { global, flags }
    }

    fn global(&self, family: Family) -> &Result<bool, String> {
        match family {
            Family::V4 => &self.global[0],
            Family::V6 => &self.global[1],
        }
    }
}

/// `needed`: the bridges whose same-bridge traffic the policy judges;
/// `refused`: the interface names of the bridges it judges by address
/// only (names dockfw refuses, which it never passes to `ip`). A bridge
/// and family are covered when the global switch is on, or it is off and
/// the bridge's flag is on; a flag that is off is turned on. A global
/// switch that cannot be read covers nothing, and neither does a flag
/// then: without bridge netfilter (the `br_netfilter` module, which
/// Docker 27.3 and later load only for some options) `/proc/sys/net/bridge`
/// is absent and a bridge's own flag takes no effect. A refused bridge is
/// not enforced wherever the global switch is not known to be on. Flags
/// dockfw turned on that no bridge needs now are turned off (or
/// forgotten, their bridge gone).
pub fn decide(
    needed: &BTreeSet<Iface>,
    refused: &BTreeSet<String>,
    read: &Reading,
    turned: &Turned,
) -> Decision {
    let mut decision = Decision::default();
    for bridge in refused {
        for family in Family::ALL {
            let global = match read.global(family) {
                Ok(true) => continue,
                Ok(false) => "the global switch is off".to_owned(),
                Err(e) => e.clone(),
            };
            decision.not_enforced.push(NotEnforced {
                bridge: bridge.clone(),
                family,
                reason: format!("{global}, and dockfw refuses its name, so it sets no flag of it"),
            });
        }
    }
    for bridge in needed {
        for family in Family::ALL {
            match read.global(family) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(why) => {
                    decision.not_enforced.push(NotEnforced {
                        bridge: bridge.to_string(),
                        family,
                        reason: format!(
                            "{why}: without bridge netfilter (the br_netfilter module) a bridge's own flag takes no effect"
                        ),
                    });
                    continue;
                }
            }
            match &read.flags {
                Ok(flags) => match flags.get(bridge.as_str()) {
                    Some(f) if f.get(family) => {}
                    Some(_) => decision.turn_on.push((bridge.clone(), family)),
                    None => decision.not_enforced.push(NotEnforced {
                        bridge: bridge.to_string(),
                        family,
                        reason: "the kernel has no such bridge now".to_owned(),
                    }),
                },
                Err(why) => decision.not_enforced.push(NotEnforced {
                    bridge: bridge.to_string(),
                    family,
                    reason: format!("the global switch is off, and its own flag: {why}"),
                }),
            }
        }
    }
    for (bridge, family) in &turned.0 {
        let iface = Iface::new(bridge).ok();
        if iface.as_ref().is_some_and(|i| needed.contains(i)) {
            continue;
        }
        let exists = match &read.flags {
            Ok(flags) => flags.contains_key(bridge),
            // Unknown: try to turn it off; a bridge gone fails the write.
            Err(_) => true,
        };
        match iface {
            Some(iface) if exists => decision.turn_off.push((iface, *family)),
            _ => decision.forget.push((bridge.clone(), *family)),
        }
    }
    decision
}

/// Carry out `decision` on `switches`, updating `turned`; a flag that
/// could not be turned on is not enforced, with why.
pub async fn carry_out(
    decision: Decision,
    switches: &dyn Switches,
    turned: &mut Turned,
) -> Vec<NotEnforced> {
    let mut not_enforced = decision.not_enforced;
    for (bridge, family) in decision.turn_on {
        match switches.set(&bridge, family, true).await {
            Ok(()) => {
                turned.0.insert((bridge.to_string(), family));
            }
            Err(e) => not_enforced.push(NotEnforced {
                bridge: bridge.to_string(),
                family,
                reason: format!(
                    "the global switch is off, and its own flag: {}",
                    error_text(&e)
                ),
            }),
        }
    }
    for (bridge, family) in decision.turn_off {
        // Gone since it was read, or turned off by someone: forgotten
        // either way; a failure to write keeps it, to try again.
        if switches.set(&bridge, family, false).await.is_ok() {
            turned.0.remove(&(bridge.to_string(), family));
        }
    }
    for key in decision.forget {
        turned.0.remove(&key);
    }
    not_enforced
}

fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Switches as the kernel's defaults have them (the global ones on), and
/// no bridge: for the daemon's tests, whose fake engines' bridges exist
/// nowhere ([`crate::daemon::BridgeCheck::Fixed`]).
pub struct Assumed;

impl Switches for Assumed {
    fn global(&self, _: Family) -> Result<bool, SwitchError> {
        Ok(true)
    }

    fn flags(&self) -> BoxFuture<'_, Result<BTreeMap<String, Flags>, SwitchError>> {
        Box::pin(async { Ok(BTreeMap::new()) })
    }

    fn set<'a>(
        &'a self,
        _: &'a Iface,
        _: Family,
        _: bool,
    ) -> BoxFuture<'a, Result<(), SwitchError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The kernel of dockfw's own network namespace.
pub struct Kernel {
    /// The `ip` program: [`IP`]; a test's own in tests.
    ip: String,
    /// How long one run of it may take: [`IP_TIMEOUT`].
    timeout: Duration,
}

impl Default for Kernel {
    fn default() -> Self {
        Kernel {
            ip: IP.to_owned(),
            timeout: IP_TIMEOUT,
        }
    }
}

impl Kernel {
    fn global_path(family: Family) -> PathBuf {
        let name = match family {
            Family::V4 => "bridge-nf-call-iptables",
            Family::V6 => "bridge-nf-call-ip6tables",
        };
        PathBuf::from("/proc/sys/net/bridge").join(name)
    }

    /// Run `ip args` and return what it printed; a run past the timeout
    /// is killed.
    async fn ip(&self, args: &[&str]) -> Result<String, SwitchError> {
        let program = self.ip.clone();
        run_within(&self.ip, args, None, self.timeout)
            .await
            .map_err(|e| match e {
                FirewallError::Spawn { source, .. } => SwitchError::Run { program, source },
                FirewallError::Timeout { after, .. } => SwitchError::Timeout {
                    program,
                    args: args.join(" "),
                    after,
                },
                FirewallError::Failed { stderr, .. } => SwitchError::Failed {
                    program,
                    args: args.join(" "),
                    stderr,
                },
                // run_within makes no other error; kept whole if it did.
                other => SwitchError::Failed {
                    program,
                    args: args.join(" "),
                    stderr: other.to_string(),
                },
            })
    }
}

/// One link of `ip -d -j link show type bridge`, what is read of it.
#[derive(Deserialize)]
struct Link {
    ifname: String,
    linkinfo: Option<LinkInfo>,
}

#[derive(Deserialize)]
struct LinkInfo {
    info_data: Option<BridgeData>,
}

#[derive(Deserialize)]
struct BridgeData {
    #[serde(default)]
    nf_call_iptables: u8,
    #[serde(default)]
    nf_call_ip6tables: u8,
}

/// The flags of every bridge `ip -d -j link show type bridge` printed.
fn parse_links(json: &[u8]) -> Result<BTreeMap<String, Flags>, SwitchError> {
    let links: Vec<Link> =
        serde_json::from_slice(json).map_err(|source| SwitchError::Parse { source })?;
    Ok(links
        .into_iter()
        .map(|link| {
            let data = link.linkinfo.and_then(|i| i.info_data);
            let flags = data.map_or(Flags::default(), |d| Flags {
                v4: d.nf_call_iptables == 1,
                v6: d.nf_call_ip6tables == 1,
            });
            (link.ifname, flags)
        })
        .collect())
}

impl Switches for Kernel {
    fn global(&self, family: Family) -> Result<bool, SwitchError> {
        let path = Kernel::global_path(family);
        let text = std::fs::read_to_string(&path).map_err(|source| SwitchError::Read {
            path: path.clone(),
            source,
        })?;
        match text.trim() {
            "1" => Ok(true),
            "0" => Ok(false),
            other => Err(SwitchError::Unexpected {
                path,
                text: other.to_owned(),
            }),
        }
    }

    fn flags(&self) -> BoxFuture<'_, Result<BTreeMap<String, Flags>, SwitchError>> {
        Box::pin(async {
            let listed = self
                .ip(&["-d", "-j", "link", "show", "type", "bridge"])
                .await?;
            parse_links(listed.as_bytes())
        })
    }

    fn set<'a>(
        &'a self,
        bridge: &'a Iface,
        family: Family,
        on: bool,
    ) -> BoxFuture<'a, Result<(), SwitchError>> {
        let flag = match family {
            Family::V4 => "nf_call_iptables",
            Family::V6 => "nf_call_ip6tables",
        };
        let value = if on { "1" } else { "0" };
        let args = [
            "link",
            "set",
            "dev",
            bridge.as_str(),
            "type",
            "bridge",
            flag,
            value,
        ];
        Box::pin(async move { self.ip(&args).await.map(drop) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str) -> Iface {
        Iface::new(name).expect("iface")
    }

    fn read(global: bool, flags: &[(&str, bool)]) -> Reading {
        Reading {
            global: [Ok(global), Ok(global)],
            flags: Ok(flags
                .iter()
                .map(|(n, on)| ((*n).to_owned(), Flags { v4: *on, v6: *on }))
                .collect()),
        }
    }

    #[test]
    fn with_the_global_switch_on_nothing_is_touched() {
        let needed = BTreeSet::from([iface("br-a")]);
        let decision = decide(
            &needed,
            &BTreeSet::new(),
            &read(true, &[("br-a", false)]),
            &Turned::default(),
        );
        assert_eq!(decision, Decision::default());
    }

    #[test]
    fn with_it_off_the_needed_bridges_flags_are_turned_on_and_the_rest_restored() {
        let needed = BTreeSet::from([iface("br-a"), iface("br-b")]);
        let turned = Turned(BTreeSet::from([
            ("br-old".to_owned(), Family::V4),
            ("br-gone".to_owned(), Family::V6),
        ]));
        let flags = [("br-a", false), ("br-b", true), ("br-old", true)];
        let decision = decide(&needed, &BTreeSet::new(), &read(false, &flags), &turned);
        assert_eq!(
            decision.turn_on,
            [(iface("br-a"), Family::V4), (iface("br-a"), Family::V6)]
        );
        assert_eq!(decision.turn_off, [(iface("br-old"), Family::V4)]);
        assert_eq!(decision.forget, [("br-gone".to_owned(), Family::V6)]);
        assert!(decision.not_enforced.is_empty());
    }

    #[test]
    fn unreadable_switches_are_reported_per_bridge_and_family() {
        let needed = BTreeSet::from([iface("br-a")]);
        let read = Reading {
            global: [Ok(false), Ok(true)],
            flags: Err("cannot run ip".to_owned()),
        };
        let decision = decide(&needed, &BTreeSet::new(), &read, &Turned::default());
        assert_eq!(decision.not_enforced.len(), 1);
        assert_eq!(decision.not_enforced[0].family, Family::V4);
        assert_eq!(
            decision.not_enforced[0].reason,
            "the global switch is off, and its own flag: cannot run ip"
        );
    }

    #[test]
    fn without_bridge_netfilter_a_flag_covers_nothing() {
        // No /proc/sys/net/bridge (br_netfilter not loaded): the flags read
        // fine and are off, but turning them on would change nothing.
        let needed = BTreeSet::from([iface("br-a")]);
        let read = Reading {
            global: [
                Err("cannot read /proc/sys/net/bridge/bridge-nf-call-iptables".to_owned()),
                Err("cannot read /proc/sys/net/bridge/bridge-nf-call-ip6tables".to_owned()),
            ],
            flags: Ok(BTreeMap::from([("br-a".to_owned(), Flags::default())])),
        };
        let decision = decide(&needed, &BTreeSet::new(), &read, &Turned::default());
        assert!(decision.turn_on.is_empty(), "{decision:?}");
        assert_eq!(decision.not_enforced.len(), 2);
        assert!(decision.not_enforced[0].reason.contains("br_netfilter"));
    }

    #[test]
    fn a_refused_bridge_is_not_enforced_unless_the_global_switch_is_on() {
        let refused = BTreeSet::from(["br+x".to_owned()]);
        let on = decide(
            &BTreeSet::new(),
            &refused,
            &read(true, &[]),
            &Turned::default(),
        );
        assert!(on.not_enforced.is_empty());
        let off = decide(
            &BTreeSet::new(),
            &refused,
            &read(false, &[]),
            &Turned::default(),
        );
        assert_eq!(off.not_enforced.len(), 2);
        assert_eq!(off.not_enforced[0].bridge, "br+x");
        assert!(off.not_enforced[0].reason.contains("refuses its name"));
        assert!(off.turn_on.is_empty());
    }

    #[test]
    fn ip_json_is_read_for_every_bridge() {
        let json = br#"[{"ifindex":3,"ifname":"br-a","linkinfo":{"info_kind":"bridge","info_data":{"stp_state":0,"nf_call_iptables":1,"nf_call_ip6tables":0}}},{"ifname":"docker0"}]"#;
        let flags = parse_links(json).expect("parses");
        assert_eq!(
            flags["br-a"],
            Flags {
                v4: true,
                v6: false
            }
        );
        assert_eq!(flags["docker0"], Flags::default());
    }

    /// Write the executable script `path` from a shell of its own, not from
    /// this process: a file this process held open for writing while
    /// another test's thread forked would be "busy" (ETXTBSY) to exec for
    /// as long as that child lives.
    fn write_script(path: &std::path::Path, text: &str) {
        let wrote = std::process::Command::new("/bin/sh")
            .args([
                "-c",
                "printf '%s' \"$1\" > \"$2\" && chmod 755 \"$2\"",
                "sh",
            ])
            .arg(text)
            .arg(path)
            .status()
            .unwrap();
        assert!(wrote.success(), "writing {}", path.display());
    }

    /// A stand-in for `ip` that notes its process id and sleeps.
    fn hanging_ip(dir: &std::path::Path) -> (String, PathBuf) {
        std::fs::create_dir_all(dir).unwrap();
        let (script, pid) = (dir.join("ip"), dir.join("pid"));
        let text = format!("#!/bin/sh\necho $$ > '{}'\nexec sleep 30\n", pid.display());
        write_script(&script, &text);
        (script.display().to_string(), pid)
    }

    /// Whether the process `pid` still runs (not gone, not a zombie).
    fn running(pid: &str) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(") ")
            .next()
            .and_then(|rest| rest.chars().next());
        !matches!(state, None | Some('Z' | 'X'))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_ip_that_hangs_is_killed_after_its_timeout_and_blocks_no_other_task() {
        let dir = std::env::temp_dir().join(format!("dockfw-ip-hangs-{}", std::process::id()));
        let (ip, pid_file) = hanging_ip(&dir);
        let timeout = Duration::from_secs(1);
        let kernel = Kernel {
            ip: ip.clone(),
            timeout,
        };
        let started = std::time::Instant::now();
        let ticked = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            started.elapsed()
        };
        let (ticked, listed) = tokio::join!(ticked, kernel.flags());
        let waited = started.elapsed();
        let error = listed.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{ip} -d -j link show type bridge timed out after 1s and was killed")
        );
        assert!(
            waited >= timeout && waited < Duration::from_secs(10),
            "{waited:?}"
        );
        assert!(
            ticked < timeout,
            "the one worker thread ran another task while ip hung: {ticked:?}"
        );
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let pid = pid.trim();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while running(pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!running(pid), "the sleeping ip ({pid}) was killed");
        let set = kernel.set(&iface("br-x"), Family::V4, true).await;
        assert!(matches!(set, Err(SwitchError::Timeout { .. })), "{set:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_ip_that_fails_or_is_missing_is_reported_as_before() {
        let dir = std::env::temp_dir().join(format!("dockfw-ip-fails-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("ip");
        write_script(
            &script,
            "#!/bin/sh\necho 'Cannot find device' >&2\nexit 1\n",
        );
        let ip = script.display().to_string();
        let failing = Kernel {
            ip: ip.clone(),
            timeout: IP_TIMEOUT,
        };
        let error = failing
            .set(&iface("br-x"), Family::V6, false)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{ip} link set dev br-x type bridge nf_call_ip6tables 0 failed: Cannot find device"
            )
        );
        let missing = Kernel {
            ip: dir.join("none").display().to_string(),
            timeout: IP_TIMEOUT,
        };
        let error = missing.flags().await.unwrap_err();
        assert!(matches!(error, SwitchError::Run { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!("cannot run {}", dir.join("none").display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
