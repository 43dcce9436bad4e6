//! The Docker edge: complete inventory snapshots, inspects of one object, and events.
//!
//! [`DockerSource`] is the small trait the daemon uses; [`BollardSource`] implements it over the
//! engine's Unix socket. An [`Event`] names the container or network that moved; the daemon
//! inspects that one object ([`DockerSource::inspect_container`],
//! [`DockerSource::inspect_network`]) and updates its inventory, so an event costs the same
//! whatever the engine runs; the full listing ([`DockerSource::snapshot`]) is the periodic
//! consistency check. A snapshot reuses the client of the last one that worked, with the
//! engine's version as it answered when that client was made (`GET /version` costs 4–6 ms on
//! Docker 29, at every pass otherwise); after any failed call, and whenever an event
//! subscription starts or ends (an engine restart ends it), the next snapshot connects afresh,
//! negotiates the API version and asks the version again, so an engine that was down,
//! restarted or upgraded is simply picked up; nothing here retries or sleeps, that is the
//! daemon's job. The bollard-model-to-[`Inventory`] mapping is pure
//! ([`inventory_from`]) and tested without an engine. What Docker reports about its objects is
//! untrusted input: it is mapped per object and per field, and one odd object never stops the
//! others (what cannot be read is left out with a note in [`Inventory::rejected`]); only an
//! unreachable engine or a failed call fails a snapshot. This module must not plan or touch the
//! firewall: events are triggers, the inventory is plain data.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{
    ContainerInspectResponse, ContainerSummary, ContainerSummaryHostConfig,
    ContainerSummaryNetworkSettings, EndpointSettings, EventMessage, EventMessageTypeEnum, Network,
    NetworkInspect, PortMap, PortSummary, PortSummaryTypeEnum, SystemVersion,
};
use bollard::query_parameters::{
    EventsOptions, InspectContainerOptions, InspectNetworkOptions, ListContainersOptions,
    ListNetworksOptions,
};
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::inventory::{
    Attachment, Bridge, Container, GatewayMode, GatewayModes, Inventory, Proto, PublishedPort,
    Rejected,
};

/// The engine's socket when `DOCKER_HOST` does not name a Unix socket.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Seconds bollard waits for a response (for `/events`: for its headers).
const REQUEST_TIMEOUT_SECS: u64 = 30;

/// How often a snapshot is taken again when containers and networks were listed mid-change.
const SNAPSHOT_ATTEMPTS: usize = 3;

/// Network option naming the Linux bridge interface (the default `bridge` network: `docker0`).
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// Network options with a bridge's gateway mode per family (Docker 28 and later).
const GATEWAY_MODE_IPV4_OPTION: &str = "com.docker.network.bridge.gateway_mode_ipv4";
const GATEWAY_MODE_IPV6_OPTION: &str = "com.docker.network.bridge.gateway_mode_ipv6";

/// Container and network actions that can change what the firewall must allow.
/// `rename` because `containers` selectors match names.
const CONTAINER_ACTIONS: [&str; 4] = ["start", "die", "destroy", "rename"];
const NETWORK_ACTIONS: [&str; 4] = ["create", "destroy", "connect", "disconnect"];

/// Where the daemon gets Docker's state from.
pub trait DockerSource: Send + Sync + 'static {
    /// A fresh, complete inventory plus engine info. Errors when the engine is unreachable.
    fn snapshot(&self) -> impl Future<Output = Result<Snapshot, DockerError>> + Send;
    /// One container as it is now, mapped against the networks `known` has (its bridges and
    /// [`Inventory::other_networks`]). Errors when the engine does not answer, or when no
    /// snapshot has worked since the source last (re)connected: the daemon then lists.
    fn inspect_container(
        &self,
        id: &str,
        known: &Inventory,
    ) -> impl Future<Output = Result<Inspected, DockerError>> + Send;
    /// One network as it is now: the inventory of that network alone (its bridge, gateway
    /// modes, or its id in [`Inventory::other_networks`], and notes), `None` when it is gone.
    fn inspect_network(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Inventory>, DockerError>> + Send;
    /// Relevant engine events, each naming the object that moved. The stream ends or yields
    /// Err when the connection drops; the daemon then reconnects by calling `events()` again.
    fn events(&self) -> BoxStream<'static, Result<Event, DockerError>>;
}

/// What an inspect found of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspected {
    /// Running (or paused): the container as a listing would map it, with a note for each
    /// part that could not be used.
    Running {
        container: Container,
        rejected: Vec<Rejected>,
    },
    /// Not running, or no longer there.
    Gone,
    /// Attached to a network the inventory does not know (named here): only a listing of
    /// everything can place it.
    UnknownNetwork(String),
}

/// An engine event that can change what the firewall must allow: which object moved, and a
/// line for the log (`container start web`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub subject: Subject,
    /// e.g. `container start web`, `network connect shop container 3333…`.
    pub text: String,
}

impl Event {
    /// A `network connect`: at a container's start it comes before the `container start`.
    pub fn is_connect(&self) -> bool {
        self.text.starts_with("network connect ")
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The object an event is about, by full id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    /// A container started, stopped, went or was renamed, or was connected to or
    /// disconnected from a network.
    Container(String),
    /// A network was created or removed.
    Network(String),
    /// The event did not say which object: only a listing of everything tells.
    Unknown,
}

/// One consistent look at the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub engine: Engine,
    pub inventory: Inventory,
}

/// What the engine says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Engine {
    /// Engine release, e.g. `20.10.24+dfsg1`.
    pub version: String,
    /// Highest API version the engine speaks, e.g. `1.41`.
    pub api_version: String,
}

impl Engine {
    /// The release's major number (`28` of `28.5.2`); `None` when the
    /// version does not start with one.
    pub fn major(&self) -> Option<u32> {
        self.version.split('.').next()?.parse().ok()
    }

    /// Whether the engine implements gateway modes (Docker 28 and later).
    /// Older engines store the `gateway_mode_ipv4` option they do not know
    /// and NAT all the same; an unreadable version counts as older.
    pub fn has_gateway_modes(&self) -> bool {
        self.major()
            .is_some_and(|major| major >= GATEWAY_MODES_SINCE)
    }
}

/// The first engine release with gateway modes.
const GATEWAY_MODES_SINCE: u32 = 28;

/// Why talking to Docker failed. An object Docker reports oddly is a note, not an error.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot connect to the docker engine at {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("docker api call {call} failed")]
    Call {
        call: &'static str,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("docker engine reported no {field} in GET /version")]
    MissingVersion { field: &'static str },
    #[error("no engine version known yet: list before inspecting")]
    NotListed,
}

/// The socket named by `DOCKER_HOST` if it is `unix://PATH`, else [`DEFAULT_SOCKET`].
pub fn endpoint_from_env() -> String {
    endpoint_from(std::env::var("DOCKER_HOST").ok().as_deref())
}

fn endpoint_from(docker_host: Option<&str>) -> String {
    docker_host
        .and_then(|host| host.strip_prefix("unix://"))
        .filter(|path| !path.is_empty())
        .unwrap_or(DEFAULT_SOCKET)
        .to_string()
}

/// [`DockerSource`] over the engine's Unix socket, via bollard.
#[derive(Debug, Clone)]
pub struct BollardSource {
    /// Path of the engine's Unix socket.
    socket: String,
    /// The client of the last snapshot that worked, its API version
    /// negotiated, and the engine's version as it answered then: the next
    /// snapshot reuses both (no new negotiation, no `GET /version`, and
    /// bollard keeps its connections). Dropped at the first failed call and
    /// when an event subscription starts or ends, so a restarted or
    /// upgraded engine is negotiated with, and asked its version, anew.
    client: Arc<Mutex<Option<Kept>>>,
}

/// A client kept between snapshots, with what its engine said about itself.
#[derive(Debug, Clone)]
struct Kept {
    docker: Docker,
    engine: Engine,
}

/// Forget the kept client: the next snapshot connects and asks the version again.
fn forget(client: &Mutex<Option<Kept>>) {
    if let Ok(mut client) = client.lock() {
        *client = None;
    }
}

impl BollardSource {
    /// A source for the socket at `socket` (a path, or `unix://PATH`). Does no I/O, so it
    /// succeeds while the engine is down.
    pub fn new(socket: impl Into<String>) -> Self {
        let socket: String = socket.into();
        let socket = socket
            .strip_prefix("unix://")
            .unwrap_or(&socket)
            .to_string();
        BollardSource {
            socket,
            client: Arc::default(),
        }
    }

    /// A source for [`endpoint_from_env`].
    pub fn from_env() -> Self {
        Self::new(endpoint_from_env())
    }

    /// The socket path this source talks to.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// The engine's firewall driver as `GET /info` reports it (`iptables`,
    /// `nftables`, `iptables+firewalld`); `None` for engines older than 28
    /// that do not say.
    pub async fn firewall_driver(&self) -> Result<Option<String>, DockerError> {
        let docker = connect(&self.socket).await?;
        let info = docker.info().await.map_err(call("GET /info"))?;
        Ok(info.firewall_backend.and_then(|f| f.driver))
    }
}

impl DockerSource for BollardSource {
    async fn snapshot(&self) -> Result<Snapshot, DockerError> {
        let cached = self.client.lock().ok().and_then(|c| c.clone());
        // A kept client that fails (the engine restarted: its connections
        // are gone) gets one fresh try at once, not a failed pass.
        let taken = match cached {
            Some(kept) => match consistent_inventory(|| list(&kept.docker)).await {
                Ok(inventory) => Ok((inventory, kept)),
                Err(_) => self.fresh_snapshot().await,
            },
            None => self.fresh_snapshot().await,
        };
        let (mut inventory, kept) = match taken {
            Ok(taken) => taken,
            Err(e) => {
                forget(&self.client);
                return Err(e);
            }
        };
        let engine = kept.engine.clone();
        if engine.has_gateway_modes() {
            add_routed_bindings(&kept.docker, &mut inventory).await;
        } else {
            ignore_gateway_modes(&engine, &mut inventory);
        }
        if let Ok(mut client) = self.client.lock() {
            *client = Some(kept);
        }
        Ok(Snapshot { engine, inventory })
    }

    async fn inspect_container(
        &self,
        id: &str,
        known: &Inventory,
    ) -> Result<Inspected, DockerError> {
        let kept = self.kept().ok_or(DockerError::NotListed)?;
        match kept
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspect) => Ok(inspected_from(&inspect, known)),
            Err(e) if is_not_found(&e) => Ok(Inspected::Gone),
            Err(source) => {
                forget(&self.client);
                Err(call("GET /containers/{id}/json")(source))
            }
        }
    }

    async fn inspect_network(&self, id: &str) -> Result<Option<Inventory>, DockerError> {
        let kept = self.kept().ok_or(DockerError::NotListed)?;
        match kept
            .docker
            .inspect_network(id, None::<InspectNetworkOptions>)
            .await
        {
            Ok(inspect) => {
                let mut inventory = inventory_from(&[network_from(inspect)], &[]);
                if !kept.engine.has_gateway_modes() {
                    ignore_gateway_modes(&kept.engine, &mut inventory);
                }
                Ok(Some(inventory))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => {
                forget(&self.client);
                Err(call("GET /networks/{id}")(source))
            }
        }
    }

    fn events(&self) -> BoxStream<'static, Result<Event, DockerError>> {
        let socket = self.socket.clone();
        // The subscription is only made when the stream is first polled, and
        // the daemon's resync snapshot may run before it is in place: ask
        // for the events of the last few seconds too, so none fall between.
        let since = SystemTime::now() - EVENT_REPLAY;
        // A new subscription follows an ended one (an engine that stopped,
        // restarted, was upgraded) or is the first: the snapshot it brings
        // asks the version anew, and so does every one after the stream
        // ends or fails, until a fresh client is kept again.
        forget(&self.client);
        let (on_error, on_end) = (Arc::clone(&self.client), Arc::clone(&self.client));
        let subscribed = async move {
            let docker = connect(&socket).await?;
            let events = docker
                .events(Some(events_options(since)))
                .map_err(call("GET /events"));
            Ok::<_, DockerError>(events)
        };
        let ended = stream::once(async move { forget(&on_end) }).filter_map(|()| async { None });
        stream::once(subscribed)
            .try_flatten()
            .inspect(move |item| {
                if item.is_err() {
                    forget(&on_error);
                }
            })
            .chain(ended)
            .try_filter_map(|event| async move { Ok(event_from(&event)) })
            .boxed()
    }
}

impl BollardSource {
    /// The client of the last snapshot that worked, if it is still kept.
    fn kept(&self) -> Option<Kept> {
        self.client.lock().ok().and_then(|c| c.clone())
    }

    /// A snapshot over a new, negotiated client, which asks the version.
    async fn fresh_snapshot(&self) -> Result<(Inventory, Kept), DockerError> {
        let docker = connect(&self.socket).await?;
        let version = docker.version().await.map_err(call("GET /version"))?;
        let engine = engine_from(&version)?;
        let inventory = consistent_inventory(|| list(&docker)).await?;
        Ok((inventory, Kept { docker, engine }))
    }
}

/// Whether a call failed because the object is not there (HTTP 404).
fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// What an inspect says of a container, mapped as a listing maps it ([`container_from`]):
/// `Gone` unless it runs; `UnknownNetwork` when it is attached to a network `known` does not
/// have (neither one of its bridges nor one of its [`Inventory::other_networks`]).
pub fn inspected_from(inspect: &ContainerInspectResponse, known: &Inventory) -> Inspected {
    let running = inspect.state.as_ref().and_then(|s| s.running);
    if running != Some(true) {
        return Inspected::Gone;
    }
    let summary = summary_from(inspect);
    let networks = known_networks(known);
    if let Some((_, network)) = unlisted_attachment(&networks, std::slice::from_ref(&summary)) {
        return Inspected::UnknownNetwork(network);
    }
    let mut rejected = Vec::new();
    let container = container_from(&summary, &NetworkIndex::new(&networks), &mut rejected);
    rejected.sort_by(|a, b| (&a.kind, &a.name, &a.reason).cmp(&(&b.kind, &b.name, &b.reason)));
    Inspected::Running {
        container,
        rejected,
    }
}

/// An inspect in the shape of a listing's entry: its name, labels, network mode, endpoints,
/// and its port map as published ports (see [`port_summaries`]).
fn summary_from(inspect: &ContainerInspectResponse) -> ContainerSummary {
    let settings = inspect.network_settings.as_ref();
    ContainerSummary {
        id: inspect.id.clone(),
        names: inspect.name.clone().map(|name| vec![name]),
        labels: inspect.config.as_ref().and_then(|c| c.labels.clone()),
        host_config: Some(ContainerSummaryHostConfig {
            network_mode: inspect
                .host_config
                .as_ref()
                .and_then(|h| h.network_mode.clone()),
            ..Default::default()
        }),
        network_settings: Some(ContainerSummaryNetworkSettings {
            networks: settings.and_then(|s| s.networks.clone()),
        }),
        ports: Some(port_summaries(
            &settings.and_then(|s| s.ports.clone()).unwrap_or_default(),
        )),
        ..Default::default()
    }
}

/// An inspect's port map (`"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]`) as a
/// listing reports it: one entry per binding, without a public port where the binding has
/// no host port (a `routed` network's: see [`PublishedPort::is_routed`]); an empty `HostIp`
/// is both `0.0.0.0` and `::`. Exposed ports without bindings, and keys that do not read,
/// are left out.
fn port_summaries(ports: &PortMap) -> Vec<PortSummary> {
    let mut listed = Vec::new();
    for (key, bindings) in ports {
        let Some((port, proto)) = key.split_once('/') else {
            continue;
        };
        let Ok(private_port) = port.parse::<u16>() else {
            continue;
        };
        let typ = match proto {
            "tcp" => PortSummaryTypeEnum::TCP,
            "udp" => PortSummaryTypeEnum::UDP,
            "sctp" => PortSummaryTypeEnum::SCTP,
            _ => PortSummaryTypeEnum::EMPTY,
        };
        for binding in bindings.iter().flatten() {
            let public_port = binding
                .host_port
                .as_deref()
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|&p| p != 0);
            let ips = match binding.host_ip.as_deref() {
                None | Some("") => vec!["0.0.0.0".to_owned(), "::".to_owned()],
                Some(ip) => vec![ip.to_owned()],
            };
            listed.extend(ips.into_iter().map(|ip| PortSummary {
                ip: Some(ip),
                private_port,
                public_port,
                typ: Some(typ),
            }));
        }
    }
    listed
}

/// The networks an inventory knows, as a listing would have them (id, name and whether the
/// driver is `bridge`): what an inspected container's endpoints are matched against.
fn known_networks(known: &Inventory) -> Vec<Network> {
    let network = |id: &str, name: &str, driver: &str| Network {
        id: Some(id.to_owned()),
        name: Some(name.to_owned()),
        driver: Some(driver.to_owned()),
        ..Default::default()
    };
    let bridges = known
        .bridges
        .iter()
        .map(|b| network(&b.id, &b.name, "bridge"));
    let others = known
        .other_networks
        .iter()
        .map(|(id, name)| network(id, name, "other"));
    bridges.chain(others).collect()
}

/// A network inspect as a listing's entry: what [`inventory_from`] reads of it.
fn network_from(inspect: NetworkInspect) -> Network {
    Network {
        id: inspect.id,
        name: inspect.name,
        driver: inspect.driver,
        options: inspect.options,
        ipam: inspect.ipam,
        ..Default::default()
    }
}

/// Docker 29 leaves a binding without a host port (a `routed` network's,
/// `-p 8080:80` there opens container port 80) out of `GET /containers/json`;
/// its inspect has it (`"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": ""}]`).
/// So a container attached to a network whose gateway mode is `routed` in a
/// family, and that lists no such binding, is inspected and its routed
/// bindings added: the plan opens routed ports only where a binding says so.
/// A failed inspect (the container just went) leaves it without them, which
/// admits nothing routed (fail closed), with a note.
async fn add_routed_bindings(docker: &Docker, inventory: &mut Inventory) {
    let routed: Vec<&str> = inventory
        .gateway_modes
        .iter()
        .filter(|(_, m)| m.ipv4 == GatewayMode::Routed || m.ipv6 == GatewayMode::Routed)
        .map(|(id, _)| id.as_str())
        .collect();
    let needs_inspect: Vec<usize> = inventory
        .containers
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.ports.iter().any(PublishedPort::is_routed))
        .filter(|(_, c)| {
            c.attachments
                .iter()
                .any(|a| routed.contains(&a.network_id.as_str()))
        })
        .map(|(i, _)| i)
        .collect();
    if needs_inspect.is_empty() {
        return;
    }
    // All together, a few at a time, within one deadline: a pass never
    // waits a client timeout per container.
    let ids: Vec<(usize, String)> = needs_inspect
        .iter()
        .map(|&i| (i, inventory.containers[i].id.clone()))
        .collect();
    let inspects = stream::iter(ids)
        .map(|(i, id)| async move {
            let inspected = docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
                .map_err(|e| e.to_string());
            (i, inspected)
        })
        .buffer_unordered(INSPECT_CONCURRENCY)
        .take_until(tokio::time::sleep(INSPECT_DEADLINE));
    let answers: Vec<_> = inspects.collect().await;
    let mut answered = vec![false; inventory.containers.len()];
    for (i, inspected) in answers {
        answered[i] = true;
        let container = &mut inventory.containers[i];
        match inspected {
            Ok(inspect) => {
                let ports = inspect.network_settings.and_then(|n| n.ports);
                container
                    .ports
                    .extend(routed_bindings(&ports.unwrap_or_default()));
                let key = |p: &PublishedPort| (p.host_port, p.proto, p.host_ip, p.container_port);
                container.ports.sort_by_key(key);
                container.ports.dedup();
            }
            Err(e) => {
                let note = not_inspected(container, &format!("cannot inspect it: {e}"));
                inventory.rejected.push(note);
            }
        }
    }
    for i in needs_inspect.into_iter().filter(|&i| !answered[i]) {
        let note = not_inspected(
            &inventory.containers[i],
            &format!("no answer to its inspect within {INSPECT_DEADLINE:?}"),
        );
        inventory.rejected.push(note);
    }
}

/// How many containers are inspected at once for their routed bindings.
const INSPECT_CONCURRENCY: usize = 8;
/// How long a pass waits for all of those inspects together.
const INSPECT_DEADLINE: Duration = Duration::from_secs(3);

/// The note for a container on a routed network whose routed bindings
/// could not be read: it gets none (nothing routed is admitted to it).
fn not_inspected(container: &Container, why: &str) -> Rejected {
    Rejected {
        kind: "container".to_string(),
        name: container.name.clone(),
        reason: format!("routed bindings unknown ({why}); none admitted"),
    }
}

/// The bindings without a host port in an inspect's port map (`"80/tcp"` to
/// bindings whose `HostPort` is empty or `0`), one per host address family
/// (an empty `HostIp` is both). Keys or addresses that do not read are left out.
pub fn routed_bindings(ports: &PortMap) -> Vec<PublishedPort> {
    let mut routed = Vec::new();
    for (key, bindings) in ports {
        let Some((port, proto)) = key.split_once('/') else {
            continue;
        };
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "sctp" => Proto::Sctp,
            _ => continue,
        };
        let Ok(container_port) = port.parse::<u16>() else {
            continue;
        };
        for binding in bindings.iter().flatten() {
            if !matches!(binding.host_port.as_deref(), None | Some("") | Some("0")) {
                continue;
            }
            let host_ips: Vec<IpAddr> = match binding.host_ip.as_deref() {
                None | Some("") => vec![
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                ],
                Some(ip) => ip.parse().into_iter().collect(),
            };
            routed.extend(host_ips.into_iter().map(|host_ip| PublishedPort {
                host_ip,
                host_port: 0,
                container_port,
                proto,
            }));
        }
    }
    routed
}

/// Drop the gateway modes of an engine that has none (see
/// [`Engine::has_gateway_modes`]): an option it stored is not what it does.
/// Each mode other than `nat` is noted in [`Inventory::rejected`].
pub fn ignore_gateway_modes(engine: &Engine, inventory: &mut Inventory) {
    let modes = std::mem::take(&mut inventory.gateway_modes);
    for (id, modes) in modes {
        if modes.ipv4 == GatewayMode::Nat && modes.ipv6 == GatewayMode::Nat {
            continue;
        }
        let name = inventory
            .bridges
            .iter()
            .find(|b| b.id == id)
            .map_or_else(|| short_id(&id).to_string(), |b| b.name.clone());
        inventory.rejected.push(Rejected {
            kind: "network".to_string(),
            name,
            reason: format!(
                "gateway mode ipv4 {}, ipv6 {} ignored: engine {} has no gateway modes \
                 (Docker {GATEWAY_MODES_SINCE} and later), so it NATs",
                modes.ipv4, modes.ipv6, engine.version
            ),
        });
    }
    inventory
        .rejected
        .sort_by(|a, b| (&a.kind, &a.name, &a.reason).cmp(&(&b.kind, &b.name, &b.reason)));
}

/// One listing: containers first, then networks of every driver (see [`inventory_from`]).
async fn list(docker: &Docker) -> Result<(Vec<ContainerSummary>, Vec<Network>), DockerError> {
    let containers = docker
        .list_containers(None::<ListContainersOptions>)
        .await
        .map_err(call("GET /containers/json"))?;
    let networks = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .map_err(call("GET /networks"))?;
    Ok((containers, networks))
}

/// Lists until containers and networks agree, at most [`SNAPSHOT_ATTEMPTS`] times: a network
/// removed between the two calls shows as an attachment to an unlisted network. After the last
/// attempt such an attachment is left out with a note (see [`inventory_from`]), so one
/// container or network that keeps disagreeing never holds back the others.
async fn consistent_inventory<F, L>(mut list: F) -> Result<Inventory, DockerError>
where
    F: FnMut() -> L,
    L: Future<Output = Result<(Vec<ContainerSummary>, Vec<Network>), DockerError>>,
{
    let mut attempt = 1;
    loop {
        let (containers, networks) = list().await?;
        let unlisted = unlisted_attachment(&networks, &containers);
        match unlisted {
            Some((container, network)) if attempt < SNAPSHOT_ATTEMPTS => {
                tracing::debug!(
                    container,
                    network,
                    attempt,
                    "networks changed while listing"
                );
                attempt += 1;
            }
            _ => return Ok(inventory_from(&networks, &containers)),
        }
    }
}

/// A client for `socket` whose API version is negotiated with the engine.
///
/// Negotiation keeps the client at or below the engine's API version. bollard 0.21.1 sends
/// unversioned paths (`/containers/json`; checked against Docker 20.10), so today the engine
/// answers in its own newest API version either way; the models are all-optional and read both.
async fn connect(socket: &str) -> Result<Docker, DockerError> {
    let connect_error = |source| DockerError::Connect {
        endpoint: socket.to_string(),
        source,
    };
    let docker =
        Docker::connect_with_unix(socket, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(connect_error)?;
    docker.negotiate_version().await.map_err(connect_error)
}

fn call(call: &'static str) -> impl Fn(bollard::errors::Error) -> DockerError {
    move |source| DockerError::Call { call, source }
}

/// How far back a new event subscription starts.
const EVENT_REPLAY: Duration = Duration::from_secs(2);

fn events_options(since: SystemTime) -> EventsOptions {
    let since = since
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let filters = HashMap::from([
        (
            "type".to_string(),
            vec!["container".to_string(), "network".to_string()],
        ),
        (
            "event".to_string(),
            CONTAINER_ACTIONS
                .iter()
                .chain(NETWORK_ACTIONS.iter())
                .map(|action| action.to_string())
                .collect(),
        ),
    ]);
    EventsOptions {
        since: Some(since.to_string()),
        filters: Some(filters),
        ..Default::default()
    }
}

fn engine_from(version: &SystemVersion) -> Result<Engine, DockerError> {
    let field = |value: &Option<String>, field| {
        value
            .clone()
            .filter(|v| !v.is_empty())
            .ok_or(DockerError::MissingVersion { field })
    };
    Ok(Engine {
        version: field(&version.version, "Version")?,
        api_version: field(&version.api_version, "ApiVersion")?,
    })
}

/// The [`Event`] for an engine event that can change the firewall, `None` for any other.
pub fn event_from(event: &EventMessage) -> Option<Event> {
    let action = event.action.as_deref()?;
    let attributes = event
        .actor
        .as_ref()
        .and_then(|actor| actor.attributes.as_ref());
    let attribute = |key: &str| attributes.and_then(|a| a.get(key)).map(String::as_str);
    let actor_id = event.actor.as_ref().and_then(|actor| actor.id.as_deref());
    let subject = attribute("name").or(actor_id.map(short_id)).unwrap_or("?");
    let id = |id: Option<&str>| id.filter(|id| !id.is_empty()).map(str::to_owned);
    let (subject, text) = match event.typ? {
        EventMessageTypeEnum::CONTAINER if CONTAINER_ACTIONS.contains(&action) => (
            id(actor_id).map_or(Subject::Unknown, Subject::Container),
            format!("container {action} {subject}"),
        ),
        EventMessageTypeEnum::NETWORK if NETWORK_ACTIONS.contains(&action) => {
            match attribute("container") {
                // A connect or disconnect changes the container's attachments.
                Some(container) => (
                    id(Some(container)).map_or(Subject::Unknown, Subject::Container),
                    format!(
                        "network {action} {subject} container {}",
                        short_id(container)
                    ),
                ),
                None if matches!(action, "create" | "destroy") => (
                    id(actor_id).map_or(Subject::Unknown, Subject::Network),
                    format!("network {action} {subject}"),
                ),
                None => (Subject::Unknown, format!("network {action} {subject}")),
            }
        }
        _ => return None,
    };
    Some(Event { subject, text })
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Networks by id and by name, as far as the inventory cares: a bridge or some other driver.
/// A network without an id or a name is left out (see [`identity`]). Names are not identities
/// (Docker 20.10 lets two networks have one name): a name is only looked up for an endpoint
/// that does not say its network's id, and one that several networks have names none.
struct NetworkIndex<'a> {
    by_id: HashMap<&'a str, &'a Network>,
    /// `None` for a name that more than one network has.
    by_name: HashMap<&'a str, Option<&'a Network>>,
}

/// Which listed network an endpoint belongs to.
enum Membership<'a> {
    Listed(&'a Network),
    /// Named only, by a name several networks have: which one is unknown.
    Ambiguous,
    Unlisted,
}

impl<'a> NetworkIndex<'a> {
    fn new(networks: &'a [Network]) -> Self {
        let mut index = NetworkIndex {
            by_id: HashMap::new(),
            by_name: HashMap::new(),
        };
        for network in networks {
            if let Ok((id, name)) = identity(network) {
                index.by_id.insert(id, network);
                index
                    .by_name
                    .entry(name)
                    .and_modify(|known| *known = None)
                    .or_insert(Some(network));
            }
        }
        index
    }

    /// The network an endpoint belongs to: by id, or by name for engines that leave the id out.
    fn get(&self, name: &str, endpoint: &EndpointSettings) -> Membership<'a> {
        let found = match endpoint.network_id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => self.by_id.get(id).copied(),
            None => match self.by_name.get(name) {
                Some(None) => return Membership::Ambiguous,
                Some(Some(network)) => Some(*network),
                None => None,
            },
        };
        found.map_or(Membership::Unlisted, Membership::Listed)
    }
}

/// A network's id and name, or the note for a network that lacks either (or has it empty).
fn identity(network: &Network) -> Result<(&str, &str), Rejected> {
    let id = network.id.as_deref().filter(|id| !id.is_empty());
    let name = network.name.as_deref().filter(|name| !name.is_empty());
    let (name, reason) = match (id, name) {
        (Some(id), Some(name)) => return Ok((id, name)),
        (Some(id), None) => (short_id(id), "listed without a name"),
        (None, Some(name)) => (name, "listed without an id"),
        (None, None) => ("", "listed without an id or a name"),
    };
    Err(Rejected {
        kind: "network".to_string(),
        name: name.to_string(),
        reason: reason.to_string(),
    })
}

fn is_bridge(network: &Network) -> bool {
    network.driver.as_deref() == Some("bridge")
}

/// The inventory for what `list_containers` (running only) and `list_networks` (all drivers)
/// returned. List containers first: a network created in between is then merely unused.
///
/// Everything here is untrusted, so the mapping goes per object and per field: a network
/// without id or name, an attachment to a network missing from the list, an unreadable address
/// or published port is left out with a note in [`Inventory::rejected`], and the rest of that
/// object and every other object are still mapped. (An unlisted network is usually one removed
/// between the two calls: [`consistent_inventory`] lists again before it settles for a note.)
pub fn inventory_from(networks: &[Network], containers: &[ContainerSummary]) -> Inventory {
    let index = NetworkIndex::new(networks);
    let mut rejected: Vec<Rejected> = networks.iter().filter_map(|n| identity(n).err()).collect();
    let mut bridges: Vec<Bridge> = networks
        .iter()
        .filter(|n| is_bridge(n))
        .filter_map(bridge_from)
        .collect();
    bridges.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    let gateway_modes = networks
        .iter()
        .filter(|n| is_bridge(n))
        .filter_map(gateway_modes_from)
        .collect();
    let mut subnets = BTreeMap::new();
    let mut unreadable_subnets = BTreeSet::new();
    for network in networks.iter().filter(|n| is_bridge(n)) {
        let Ok((id, name)) = identity(network) else {
            continue;
        };
        let (read, refused) = subnets_from(network);
        if !read.is_empty() {
            subnets.insert(id.to_owned(), read);
        }
        if !refused.is_empty() {
            unreadable_subnets.insert(id.to_owned());
        }
        rejected.extend(refused.into_iter().map(|subnet| Rejected {
            kind: "network".to_owned(),
            name: name.to_owned(),
            reason: format!(
                "unreadable subnet {subnet:?}; its bridge is judged as one whose name was refused"
            ),
        }));
    }
    let other_networks = networks
        .iter()
        .filter(|n| !is_bridge(n))
        .filter_map(|n| identity(n).ok())
        .map(|(id, name)| (id.to_owned(), name.to_owned()))
        .collect();
    let mut containers: Vec<Container> = containers
        .iter()
        .map(|summary| container_from(summary, &index, &mut rejected))
        .collect();
    containers.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    rejected.sort_by(|a, b| (&a.kind, &a.name, &a.reason).cmp(&(&b.kind, &b.name, &b.reason)));
    Inventory {
        bridges,
        gateway_modes,
        other_networks,
        subnets,
        unreadable_subnets,
        containers,
        rejected,
        // Docker's word only: whoever plans asks the kernel (`links`).
        not_bridges: Default::default(),
    }
}

/// The first attachment, as (container, network), to a network missing from `networks`.
fn unlisted_attachment(
    networks: &[Network],
    containers: &[ContainerSummary],
) -> Option<(String, String)> {
    let index = NetworkIndex::new(networks);
    containers.iter().find_map(|summary| {
        let (network, _) = endpoints(summary)
            .find(|(name, endpoint)| matches!(index.get(name, endpoint), Membership::Unlisted))?;
        Some((container_name(summary), network.clone()))
    })
}

fn bridge_from(network: &Network) -> Option<Bridge> {
    let (id, name) = identity(network).ok()?;
    let configured = network
        .options
        .as_ref()
        .and_then(|o| o.get(BRIDGE_NAME_OPTION));
    let interface = match configured.filter(|name| !name.is_empty()) {
        Some(interface) => interface.clone(),
        None => format!("br-{}", short_id(id)),
    };
    Some(Bridge {
        id: id.to_string(),
        name: name.to_string(),
        interface,
    })
}

/// A network's IPAM subnets that are CIDRs of either family, in order,
/// and, apart, every one that is not (as Docker wrote it). A network
/// address with host bits set (`172.18.0.1/16`) is read as its network.
fn subnets_from(network: &Network) -> (Vec<IpNet>, Vec<String>) {
    let configs = network.ipam.as_ref().and_then(|ipam| ipam.config.as_ref());
    let mut read = BTreeSet::new();
    let mut refused = Vec::new();
    for subnet in configs
        .into_iter()
        .flatten()
        .filter_map(|c| c.subnet.as_ref())
    {
        match subnet.parse::<IpNet>() {
            Ok(net) if !is_v4_mapped(&net) => {
                read.insert(net.trunc());
            }
            _ => refused.push(subnet.clone()),
        }
    }
    (read.into_iter().collect(), refused)
}

/// `::ffff:a.b.c.d/n`: an IPv4 network written as IPv6, which no IPv6
/// packet carries; taken as written it would cover nothing that matters.
fn is_v4_mapped(net: &IpNet) -> bool {
    matches!(net, IpNet::V6(v6) if v6.addr().to_ipv4_mapped().is_some())
}

/// A bridge's gateway modes by its id, if it sets either option; Docker
/// refuses a value it does not know, so an odd one is kept as it is
/// ([`GatewayMode::Other`], planned like `nat`).
fn gateway_modes_from(network: &Network) -> Option<(String, GatewayModes)> {
    let (id, _) = identity(network).ok()?;
    let options = network.options.as_ref()?;
    let mode = |option| options.get(option).cloned().map(GatewayMode::from);
    let (ipv4, ipv6) = (
        mode(GATEWAY_MODE_IPV4_OPTION),
        mode(GATEWAY_MODE_IPV6_OPTION),
    );
    if ipv4.is_none() && ipv6.is_none() {
        return None;
    }
    let modes = GatewayModes {
        ipv4: ipv4.unwrap_or_default(),
        ipv6: ipv6.unwrap_or_default(),
    };
    Some((id.to_string(), modes))
}

/// The container, with a note in `rejected` for each field left out of it.
fn container_from(
    summary: &ContainerSummary,
    index: &NetworkIndex,
    rejected: &mut Vec<Rejected>,
) -> Container {
    let name = container_name(summary);
    let mut reasons = Vec::new();
    let mut attachments = Vec::new();
    for (network_name, endpoint) in endpoints(summary) {
        match index.get(network_name, endpoint) {
            Membership::Listed(network) if is_bridge(network) => {
                let id = identity(network).map_or("", |(id, _)| id);
                attachments.push(attachment_from(id, network_name, endpoint, &mut reasons));
            }
            Membership::Listed(_) => {}
            // Its address is kept, on no known bridge: judged by address (fail closed).
            Membership::Ambiguous => {
                reasons.push(format!(
                    "attached to network {network_name:?} by name only, and several networks \
                     have that name; judged by address"
                ));
                attachments.push(attachment_from("", network_name, endpoint, &mut reasons));
            }
            Membership::Unlisted => reasons.push(format!(
                "attached to network {network_name:?}, which is missing from the network list"
            )),
        }
    }
    attachments.sort_by(|a, b| (&a.network, &a.network_id).cmp(&(&b.network, &b.network_id)));
    let ports = published_ports(summary.ports.as_deref().unwrap_or_default(), &mut reasons);
    rejected.extend(reasons.into_iter().map(|reason| Rejected {
        kind: "container".to_string(),
        name: name.clone(),
        reason,
    }));
    let network_mode = summary
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.as_deref());
    Container {
        id: summary.id.clone().unwrap_or_default(),
        name,
        labels: summary
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        host_network: network_mode == Some("host"),
        attachments,
        ports,
    }
}

/// A container's endpoints, by the name of their network.
fn endpoints(summary: &ContainerSummary) -> impl Iterator<Item = (&String, &EndpointSettings)> {
    summary
        .network_settings
        .as_ref()
        .and_then(|s| s.networks.as_ref())
        .into_iter()
        .flatten()
}

/// The container's own name: Docker lists link aliases (`/other/alias`) next to it.
fn container_name(summary: &ContainerSummary) -> String {
    let names = summary.names.as_deref().unwrap_or_default();
    let stripped = |n: &String| n.strip_prefix('/').unwrap_or(n).to_string();
    names
        .iter()
        .find(|n| !n.trim_start_matches('/').contains('/'))
        .or(names.first())
        .map(stripped)
        .unwrap_or_else(|| short_id(summary.id.as_deref().unwrap_or_default()).to_string())
}

fn attachment_from(
    network_id: &str,
    network: &str,
    endpoint: &EndpointSettings,
    reasons: &mut Vec<String>,
) -> Attachment {
    let ipv4 = endpoint.ip_address.as_deref();
    let ipv6 = endpoint.global_ipv6_address.as_deref();
    Attachment {
        network_id: network_id.to_string(),
        network: network.to_string(),
        ipv4: address_on(network, "ipv4", ipv4, reasons),
        ipv6: address_on(network, "ipv6", ipv6, reasons),
    }
}

/// An attachment's address in one family; an unreadable one is `None`, with a note.
fn address_on<A: FromStr>(
    network: &str,
    family: &str,
    value: Option<&str>,
    reasons: &mut Vec<String>,
) -> Option<A> {
    address(value).unwrap_or_else(|value| {
        reasons.push(format!(
            "unreadable {family} address {value:?} on network {network:?}"
        ));
        None
    })
}

/// An optional address: Docker writes `""` for none. The error is the unreadable text.
fn address<A: FromStr>(value: Option<&str>) -> Result<Option<A>, &str> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| v),
    }
}

/// Published ports; exposed-only ports (neither `IP` nor `PublicPort`) are left out, and so is,
/// with a note, a port that cannot be read. A binding with an `IP` but no `PublicPort` is one
/// Docker 28 made on a `routed` network: host port 0 ([`PublishedPort::is_routed`]).
fn published_ports(ports: &[PortSummary], reasons: &mut Vec<String>) -> Vec<PublishedPort> {
    let mut published: Vec<PublishedPort> = ports
        .iter()
        .filter_map(|port| published_port(port, reasons))
        .collect();
    let key = |p: &PublishedPort| (p.host_port, p.proto, p.host_ip, p.container_port);
    published.sort_by_key(key);
    published.dedup();
    published
}

fn published_port(port: &PortSummary, reasons: &mut Vec<String>) -> Option<PublishedPort> {
    let bound = port.ip.as_deref().is_some_and(|ip| !ip.is_empty());
    let host_port = match port.public_port {
        Some(host_port) => host_port,
        None if bound => 0,
        None => return None,
    };
    let binding = format!("{host_port}->{}", port.private_port);
    let Some(proto) = proto(port.typ) else {
        reasons.push(format!("published port {binding} has no protocol"));
        return None;
    };
    let host_ip = match address(port.ip.as_deref()) {
        Ok(host_ip) => host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        Err(host_ip) => {
            reasons.push(format!(
                "unreadable host ip {host_ip:?} of published port {binding}/{}",
                proto.as_str()
            ));
            return None;
        }
    };
    Some(PublishedPort {
        host_ip,
        host_port,
        container_port: port.private_port,
        proto,
    })
}

fn proto(typ: Option<PortSummaryTypeEnum>) -> Option<Proto> {
    match typ? {
        PortSummaryTypeEnum::TCP => Some(Proto::Tcp),
        PortSummaryTypeEnum::UDP => Some(Proto::Udp),
        PortSummaryTypeEnum::SCTP => Some(Proto::Sctp),
        PortSummaryTypeEnum::EMPTY => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use bollard::models::{
        ContainerSummaryHostConfig, ContainerSummaryNetworkSettings, EventActor,
    };

    use super::*;
    use crate::inventory::Family;

    const DEFAULT_ID: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const SHOP_ID: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const CUSTOM_ID: &str = "3333333333333333333333333333333333333333333333333333333333333333";
    const HOST_ID: &str = "4444444444444444444444444444444444444444444444444444444444444444";

    fn network(id: &str, name: &str, driver: &str, options: &[(&str, &str)]) -> Network {
        Network {
            id: Some(id.to_string()),
            name: Some(name.to_string()),
            driver: Some(driver.to_string()),
            options: Some(
                options
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn networks() -> Vec<Network> {
        vec![
            network(SHOP_ID, "shop", "bridge", &[]),
            network(HOST_ID, "host", "host", &[]),
            network(
                CUSTOM_ID,
                "custom",
                "bridge",
                &[(BRIDGE_NAME_OPTION, "custombr0")],
            ),
            network(
                DEFAULT_ID,
                "bridge",
                "bridge",
                &[(BRIDGE_NAME_OPTION, "docker0")],
            ),
        ]
    }

    fn endpoint(network_id: &str, ipv4: &str, ipv6: &str) -> EndpointSettings {
        EndpointSettings {
            network_id: Some(network_id.to_string()),
            ip_address: Some(ipv4.to_string()),
            global_ipv6_address: Some(ipv6.to_string()),
            ..Default::default()
        }
    }

    fn port(
        ip: Option<&str>,
        private: u16,
        public: Option<u16>,
        typ: PortSummaryTypeEnum,
    ) -> PortSummary {
        PortSummary {
            ip: ip.map(str::to_string),
            private_port: private,
            public_port: public,
            typ: Some(typ),
        }
    }

    fn summary(
        id: &str,
        names: &[&str],
        mode: &str,
        endpoints: &[(&str, EndpointSettings)],
    ) -> ContainerSummary {
        ContainerSummary {
            id: Some(id.to_string()),
            names: Some(names.iter().map(|n| n.to_string()).collect()),
            host_config: Some(ContainerSummaryHostConfig {
                network_mode: Some(mode.to_string()),
                ..Default::default()
            }),
            network_settings: Some(ContainerSummaryNetworkSettings {
                networks: Some(
                    endpoints
                        .iter()
                        .map(|(n, e)| (n.to_string(), e.clone()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    /// `web` on the default bridge and `custom`, published on all addresses (v4 and v6 entries,
    /// as Docker 20.10 reports them), on loopback, plus an exposed-only port.
    fn web() -> ContainerSummary {
        let mut web = summary(
            "aaaa",
            &["/web", "/api/web-alias"],
            "default",
            &[
                ("custom", endpoint(CUSTOM_ID, "172.19.0.2", "")),
                (
                    "bridge",
                    endpoint(DEFAULT_ID, "172.17.0.2", "fd00:dead:beef::242:ac11:2"),
                ),
            ],
        );
        web.labels = Some(HashMap::from([(
            "dockfw.allow".to_string(),
            "web".to_string(),
        )]));
        web.ports = Some(vec![
            port(Some("::"), 80, Some(8080), PortSummaryTypeEnum::TCP),
            port(Some("127.0.0.1"), 80, Some(9000), PortSummaryTypeEnum::TCP),
            port(Some("0.0.0.0"), 80, Some(8080), PortSummaryTypeEnum::TCP),
            port(None, 443, None, PortSummaryTypeEnum::TCP),
            port(Some(""), 53, Some(5353), PortSummaryTypeEnum::UDP),
        ]);
        web
    }

    fn host_tool() -> ContainerSummary {
        summary(
            "bbbb",
            &["/tool"],
            "host",
            &[("host", endpoint(HOST_ID, "", ""))],
        )
    }

    #[test]
    fn endpoint_uses_docker_host_only_for_unix_sockets() {
        assert_eq!(endpoint_from(None), DEFAULT_SOCKET);
        assert_eq!(endpoint_from(Some("unix:///tmp/d.sock")), "/tmp/d.sock");
        assert_eq!(endpoint_from(Some("tcp://127.0.0.1:2375")), DEFAULT_SOCKET);
        assert_eq!(endpoint_from(Some("unix://")), DEFAULT_SOCKET);
        assert_eq!(
            BollardSource::new("unix:///tmp/d.sock").socket(),
            "/tmp/d.sock"
        );
    }

    #[test]
    fn bridges_are_named_by_option_or_id() {
        let inventory = inventory_from(&networks(), &[]);
        let bridges: Vec<_> = inventory
            .bridges
            .iter()
            .map(|b| (b.name.as_str(), b.interface.as_str()))
            .collect();
        assert_eq!(
            bridges,
            [
                ("bridge", "docker0"),
                ("custom", "custombr0"),
                ("shop", "br-222222222222")
            ]
        );
    }

    #[test]
    fn gateway_modes_are_read_per_family_and_unknown_ones_kept() {
        let mut networks = networks();
        networks.push(network(
            &"5".repeat(64),
            "routed",
            "bridge",
            &[(GATEWAY_MODE_IPV4_OPTION, "routed")],
        ));
        networks.push(network(
            &"6".repeat(64),
            "future",
            "bridge",
            &[
                (GATEWAY_MODE_IPV4_OPTION, "nat-unprotected"),
                (GATEWAY_MODE_IPV6_OPTION, "teleport"),
            ],
        ));
        let inventory = inventory_from(&networks, &[]);
        let (routed, future) = (&"5".repeat(64), &"6".repeat(64));
        let listed: Vec<_> = inventory.gateway_modes.keys().collect();
        assert_eq!(listed, [routed, future], "by network id");
        let mode = |network, family| inventory.gateway_mode(network, family).to_string();
        assert_eq!(mode(routed, Family::V4), "routed");
        assert_eq!(mode(routed, Family::V6), "nat");
        assert_eq!(mode(future, Family::V4), "nat-unprotected");
        assert_eq!(
            inventory.gateway_mode(future, Family::V6),
            &GatewayMode::Other("teleport".to_string())
        );
        assert_eq!(mode(SHOP_ID, Family::V4), "nat");
    }

    #[test]
    fn subnets_are_read_per_network_and_an_unreadable_one_is_refused_with_a_note() {
        let with_subnets = |id: &str, name: &str, subnets: &[&str]| Network {
            ipam: Some(bollard::models::Ipam {
                config: Some(
                    subnets
                        .iter()
                        .map(|s| bollard::models::IpamConfig {
                            subnet: Some((*s).to_owned()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..network(id, name, "bridge", &[])
        };
        let networks = [
            with_subnets(DEFAULT_ID, "bridge", &["172.17.0.0/16", "fd00:17::1/64"]),
            with_subnets(SHOP_ID, "shop", &["172.18.0.0/16", "172.19.0.0/33"]),
            with_subnets(CUSTOM_ID, "mapped", &["::ffff:10.0.0.0/104"]),
        ];
        let inventory = inventory_from(&networks, &[]);
        let subnets = |id| {
            let all = Family::ALL.map(|f| inventory.subnets_of(id, f).collect::<Vec<_>>());
            all.concat()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(subnets(DEFAULT_ID), ["172.17.0.0/16", "fd00:17::/64"]);
        assert_eq!(subnets(SHOP_ID), ["172.18.0.0/16"], "the readable one");
        assert_eq!(subnets(CUSTOM_ID), Vec::<String>::new());
        assert_eq!(
            inventory.unreadable_subnets,
            BTreeSet::from([SHOP_ID.to_owned(), CUSTOM_ID.to_owned()])
        );
        let reasons: Vec<_> = inventory
            .rejected
            .iter()
            .map(|r| r.reason.as_str())
            .collect();
        assert!(
            reasons[1].starts_with("unreadable subnet \"172.19.0.0/33\""),
            "{reasons:?}"
        );
        assert_eq!(inventory.bridges.len(), 3, "every bridge is still known");
    }

    fn engine(version: &str) -> Engine {
        Engine {
            version: version.to_string(),
            api_version: "1.41".to_string(),
        }
    }

    #[test]
    fn gateway_modes_of_an_engine_before_28_are_ignored_with_a_note() {
        let mut networks = networks();
        networks.push(network(
            &"5".repeat(64),
            "routed",
            "bridge",
            &[(GATEWAY_MODE_IPV4_OPTION, "routed")],
        ));
        networks.push(network(
            &"6".repeat(64),
            "plain",
            "bridge",
            &[(GATEWAY_MODE_IPV4_OPTION, "nat")],
        ));
        for (version, honoured) in [
            ("20.10.24+dfsg1", false),
            ("27.5.1", false),
            ("dev", false),
            ("", false),
            ("28.5.2", true),
            ("29.7.2", true),
        ] {
            let engine = engine(version);
            assert_eq!(engine.has_gateway_modes(), honoured, "{version}");
            let mut inventory = inventory_from(&networks, &[]);
            let before = inventory.clone();
            if !engine.has_gateway_modes() {
                ignore_gateway_modes(&engine, &mut inventory);
            }
            if honoured {
                assert_eq!(inventory, before);
                continue;
            }
            assert!(inventory.gateway_modes.is_empty(), "{version}");
            let notes: Vec<_> = inventory.rejected.iter().map(|r| &r.name).collect();
            assert_eq!(notes, ["routed"], "a stored nat is no news");
            assert!(
                inventory.rejected[0]
                    .reason
                    .starts_with("gateway mode ipv4 routed, ipv6 nat ignored: engine "),
                "{:?}",
                inventory.rejected[0]
            );
        }
    }

    #[test]
    fn networks_sharing_a_name_are_told_apart_by_id() {
        let (first, second) = (&"5".repeat(64), &"6".repeat(64));
        let mut networks = networks();
        networks.push(network(first, "dup", "bridge", &[]));
        networks.push(network(
            second,
            "dup",
            "bridge",
            &[(GATEWAY_MODE_IPV4_OPTION, "routed")],
        ));
        let on_second = summary(
            "cccc",
            &["/second"],
            "dup",
            &[("dup", endpoint(second, "172.30.0.2", ""))],
        );
        let inventory = inventory_from(&networks, &[on_second]);
        let dups: Vec<_> = inventory
            .bridges
            .iter()
            .filter(|b| b.name == "dup")
            .map(|b| b.interface.as_str())
            .collect();
        assert_eq!(dups, ["br-555555555555", "br-666666666666"]);
        let attachment = &inventory.containers[0].attachments[0];
        assert_eq!(
            (attachment.network_id.as_str(), attachment.network.as_str()),
            (second.as_str(), "dup")
        );
        assert_eq!(inventory.gateway_mode(first, Family::V4), &GatewayMode::Nat);
        assert_eq!(
            inventory.gateway_mode(second, Family::V4),
            &GatewayMode::Routed
        );
        assert_eq!(inventory.rejected, []);
    }

    #[test]
    fn an_endpoint_named_only_by_a_shared_name_is_judged_by_address() {
        let mut networks = networks();
        networks.push(network(&"5".repeat(64), "dup", "bridge", &[]));
        networks.push(network(&"6".repeat(64), "dup", "bridge", &[]));
        let mut nameless = endpoint("", "172.30.0.2", "");
        nameless.network_id = None;
        let on_dup = summary("cccc", &["/either"], "dup", &[("dup", nameless)]);
        let inventory = inventory_from(&networks, std::slice::from_ref(&on_dup));
        let attachment = &inventory.containers[0].attachments[0];
        assert_eq!(attachment.network_id, "", "no bridge is it");
        assert_eq!(attachment.ipv4, Some(Ipv4Addr::new(172, 30, 0, 2)));
        assert_eq!(
            inventory.rejected,
            [note(
                "container",
                "either",
                "attached to network \"dup\" by name only, and several networks have that \
                 name; judged by address"
            )]
        );
        assert_eq!(unlisted_attachment(&networks, &[on_dup]), None);
    }

    #[test]
    fn a_binding_without_a_host_port_is_routed_and_an_exposed_port_is_not_published() {
        let mut web = web();
        web.ports = Some(vec![
            port(Some("0.0.0.0"), 80, None, PortSummaryTypeEnum::TCP),
            port(Some("::"), 80, None, PortSummaryTypeEnum::TCP),
            port(Some("0.0.0.0"), 80, None, PortSummaryTypeEnum::TCP),
            port(None, 443, None, PortSummaryTypeEnum::TCP),
            port(Some(""), 8443, None, PortSummaryTypeEnum::TCP),
        ]);
        let inventory = inventory_from(&networks(), &[web]);
        let ports = &inventory.containers[0].ports;
        let bound: Vec<_> = ports
            .iter()
            .map(|p| (p.host_ip.to_string(), p.is_routed(), p.addressed_port()))
            .collect();
        assert_eq!(
            bound,
            [
                ("0.0.0.0".to_string(), true, 80),
                ("::".to_string(), true, 80)
            ]
        );
        assert_eq!(inventory.rejected, []);
    }

    #[test]
    fn container_maps_attachments_ports_and_labels() {
        let inventory = inventory_from(&networks(), &[web()]);
        let web = &inventory.containers[0];
        assert_eq!(
            (web.id.as_str(), web.name.as_str(), web.host_network),
            ("aaaa", "web", false)
        );
        assert_eq!(
            web.labels.get("dockfw.allow").map(String::as_str),
            Some("web")
        );
        let attachments = [
            Attachment {
                network_id: DEFAULT_ID.into(),
                network: "bridge".into(),
                ipv4: Some(Ipv4Addr::new(172, 17, 0, 2)),
                ipv6: Some("fd00:dead:beef::242:ac11:2".parse().expect("ipv6")),
            },
            Attachment {
                network_id: CUSTOM_ID.into(),
                network: "custom".into(),
                ipv4: Some(Ipv4Addr::new(172, 19, 0, 2)),
                ipv6: None,
            },
        ];
        assert_eq!(web.attachments, attachments);
        let all4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let published = |host_ip, host_port, container_port, proto| PublishedPort {
            host_ip,
            host_port,
            container_port,
            proto,
        };
        let ports = [
            published(all4, 5353, 53, Proto::Udp),
            published(all4, 8080, 80, Proto::Tcp),
            published(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 8080, 80, Proto::Tcp),
            published(IpAddr::V4(Ipv4Addr::LOCALHOST), 9000, 80, Proto::Tcp),
        ];
        assert_eq!(web.ports, ports);
        assert_eq!(inventory.rejected, []);
    }

    #[test]
    fn host_network_container_has_no_attachments() {
        let inventory = inventory_from(&networks(), &[host_tool()]);
        let tool = &inventory.containers[0];
        assert!(tool.host_network);
        assert!(tool.attachments.is_empty());
    }

    #[test]
    fn listing_order_does_not_change_the_inventory() {
        let first = inventory_from(&networks(), &[web(), host_tool()]);
        let mut reversed = networks();
        reversed.reverse();
        let second = inventory_from(&reversed, &[host_tool(), web()]);
        assert_eq!(first, second);
        let names: Vec<_> = first.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["tool", "web"]);
    }

    fn note(kind: &str, name: &str, reason: &str) -> Rejected {
        Rejected {
            kind: kind.to_string(),
            name: name.to_string(),
            reason: reason.to_string(),
        }
    }

    fn attachment_networks(container: &Container) -> Vec<&str> {
        container
            .attachments
            .iter()
            .map(|a| a.network.as_str())
            .collect()
    }

    #[test]
    fn attachment_to_unlisted_network_is_a_note_not_a_failure() {
        let only_default = vec![network(DEFAULT_ID, "bridge", "bridge", &[])];
        let inventory = inventory_from(&only_default, &[web(), host_tool()]);
        let names: Vec<_> = inventory
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["tool", "web"]);
        let web = &inventory.containers[1];
        assert_eq!(attachment_networks(web), ["bridge"]);
        assert_eq!(web.ports.len(), 4);
        let expected = [
            note(
                "container",
                "tool",
                "attached to network \"host\", which is missing from the network list",
            ),
            note(
                "container",
                "web",
                "attached to network \"custom\", which is missing from the network list",
            ),
        ];
        assert_eq!(inventory.rejected, expected);
    }

    #[test]
    fn endpoint_without_network_id_is_matched_by_name() {
        let mut web = web();
        let endpoints = web
            .network_settings
            .as_mut()
            .and_then(|s| s.networks.as_mut());
        for endpoint in endpoints.expect("networks").values_mut() {
            endpoint.network_id = None;
        }
        let inventory = inventory_from(&networks(), &[web]);
        assert_eq!(inventory.containers[0].attachments.len(), 2);
    }

    #[test]
    fn one_unreadable_address_does_not_drop_the_other_containers() {
        let mut web = web();
        let endpoints = web
            .network_settings
            .as_mut()
            .and_then(|s| s.networks.as_mut());
        let bridge = endpoints
            .expect("networks")
            .get_mut("bridge")
            .expect("bridge");
        bridge.global_ipv6_address = Some("zz".to_string());
        let shop = summary(
            "cccc",
            &["/cart"],
            "shop",
            &[("shop", endpoint(SHOP_ID, "x", ""))],
        );
        let inventory = inventory_from(&networks(), &[web, host_tool(), shop]);
        let names: Vec<_> = inventory
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["cart", "tool", "web"]);
        let web = &inventory.containers[2];
        let bridge = &web.attachments[0];
        assert_eq!(bridge.network, "bridge");
        assert_eq!(
            (bridge.ipv4, bridge.ipv6),
            (Some(Ipv4Addr::new(172, 17, 0, 2)), None)
        );
        assert_eq!(attachment_networks(web), ["bridge", "custom"]);
        assert_eq!(web.ports.len(), 4);
        assert_eq!(inventory.containers[0].attachments[0].ipv4, None);
        let expected = [
            note(
                "container",
                "cart",
                "unreadable ipv4 address \"x\" on network \"shop\"",
            ),
            note(
                "container",
                "web",
                "unreadable ipv6 address \"zz\" on network \"bridge\"",
            ),
        ];
        assert_eq!(inventory.rejected, expected);
    }

    #[test]
    fn one_unreadable_published_port_does_not_drop_the_others() {
        let mut web = web();
        let mut untyped = port(Some("0.0.0.0"), 22, Some(2222), PortSummaryTypeEnum::TCP);
        untyped.typ = None;
        web.ports = Some(vec![
            port(Some("not-an-ip"), 80, Some(80), PortSummaryTypeEnum::TCP),
            port(Some("0.0.0.0"), 53, Some(53), PortSummaryTypeEnum::EMPTY),
            untyped,
            port(Some("127.0.0.1"), 80, Some(9000), PortSummaryTypeEnum::TCP),
        ]);
        let inventory = inventory_from(&networks(), &[web, host_tool()]);
        assert_eq!(inventory.containers.len(), 2);
        let web = &inventory.containers[1];
        let ports: Vec<_> = web.ports.iter().map(|p| (p.host_ip, p.host_port)).collect();
        assert_eq!(ports, [(IpAddr::V4(Ipv4Addr::LOCALHOST), 9000)]);
        assert_eq!(web.attachments.len(), 2);
        let expected = [
            note(
                "container",
                "web",
                "published port 2222->22 has no protocol",
            ),
            note("container", "web", "published port 53->53 has no protocol"),
            note(
                "container",
                "web",
                "unreadable host ip \"not-an-ip\" of published port 80->80/tcp",
            ),
        ];
        assert_eq!(inventory.rejected, expected);
    }

    #[test]
    fn network_without_id_or_name_is_skipped_with_a_note() {
        let mut networks = networks();
        networks.push(Network {
            name: Some("anonymous".to_string()),
            driver: Some("bridge".to_string()),
            ..Default::default()
        });
        networks.push(Network {
            id: Some("5".repeat(64)),
            name: Some(String::new()),
            driver: Some("bridge".to_string()),
            ..Default::default()
        });
        networks.push(Network::default());
        let inventory = inventory_from(&networks, &[web()]);
        assert_eq!(inventory.bridges.len(), 3);
        assert_eq!(inventory.containers[0].attachments.len(), 2);
        let expected = [
            note("network", "", "listed without an id or a name"),
            note("network", "555555555555", "listed without a name"),
            note("network", "anonymous", "listed without an id"),
        ];
        assert_eq!(inventory.rejected, expected);
    }

    #[tokio::test]
    async fn network_removed_between_listings_is_listed_again() {
        let mut calls = 0;
        let inventory = consistent_inventory(|| {
            calls += 1;
            let networks = if calls == 1 { vec![] } else { networks() };
            async move { Ok((vec![web()], networks)) }
        })
        .await
        .expect("second listing is consistent");
        assert_eq!(calls, 2);
        assert_eq!(inventory.containers[0].attachments.len(), 2);
    }

    #[tokio::test]
    async fn attachment_still_unlisted_after_the_last_listing_is_a_note() {
        let mut calls = 0;
        let only_default = || vec![network(DEFAULT_ID, "bridge", "bridge", &[])];
        let inventory = consistent_inventory(|| {
            calls += 1;
            let networks = only_default();
            async { Ok((vec![web(), host_tool()], networks)) }
        })
        .await
        .expect("the last listing is used");
        assert_eq!(calls, SNAPSHOT_ATTEMPTS);
        assert_eq!(
            inventory,
            inventory_from(&only_default(), &[web(), host_tool()])
        );
        assert_eq!(attachment_networks(&inventory.containers[1]), ["bridge"]);
        assert_eq!(inventory.rejected.len(), 2);
    }

    fn event(typ: EventMessageTypeEnum, action: &str, attributes: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(typ),
            action: Some(action.to_string()),
            actor: Some(EventActor {
                id: Some(SHOP_ID.to_string()),
                attributes: Some(
                    attributes
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    /// `web()` as `GET /containers/{id}/json` reports it.
    fn web_inspect() -> ContainerInspectResponse {
        use bollard::models::PortBinding;
        use bollard::models::{ContainerConfig, ContainerState, HostConfig, NetworkSettings};
        let listed = web();
        let binding = |ip: &str, port: &str| PortBinding {
            host_ip: Some(ip.to_owned()),
            host_port: Some(port.to_owned()),
        };
        ContainerInspectResponse {
            id: listed.id.clone(),
            name: Some("/web".to_owned()),
            state: Some(ContainerState {
                running: Some(true),
                ..Default::default()
            }),
            config: Some(ContainerConfig {
                labels: listed.labels.clone(),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                network_mode: Some("default".to_owned()),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                networks: listed.network_settings.and_then(|n| n.networks),
                ports: Some(HashMap::from([
                    (
                        "80/tcp".to_owned(),
                        Some(vec![
                            binding("0.0.0.0", "8080"),
                            binding("::", "8080"),
                            binding("127.0.0.1", "9000"),
                        ]),
                    ),
                    ("443/tcp".to_owned(), None),
                    ("53/udp".to_owned(), Some(vec![binding("0.0.0.0", "5353")])),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_inspect_maps_a_container_as_the_listing_does() {
        let listed = inventory_from(&networks(), &[web()]);
        let known = inventory_from(&networks(), &[]);
        assert_eq!(
            inspected_from(&web_inspect(), &known),
            Inspected::Running {
                container: listed.containers[0].clone(),
                rejected: Vec::new(),
            }
        );
        assert_eq!(
            known.other_networks.keys().collect::<Vec<_>>(),
            [HOST_ID],
            "a listed network of another driver is known"
        );
    }

    #[test]
    fn an_inspect_of_a_stopped_container_or_one_on_an_unlisted_network_is_not_mapped() {
        let mut stopped = web_inspect();
        stopped.state = Some(bollard::models::ContainerState {
            running: Some(false),
            ..Default::default()
        });
        let known = inventory_from(&networks(), &[]);
        assert_eq!(inspected_from(&stopped, &known), Inspected::Gone);
        stopped.state = None;
        assert_eq!(inspected_from(&stopped, &known), Inspected::Gone);
        let without_custom = inventory_from(
            &networks()
                .into_iter()
                .filter(|n| n.id.as_deref() != Some(CUSTOM_ID))
                .collect::<Vec<_>>(),
            &[],
        );
        assert_eq!(
            inspected_from(&web_inspect(), &without_custom),
            Inspected::UnknownNetwork("custom".to_owned())
        );
    }

    #[test]
    fn an_inspects_binding_without_a_host_port_is_routed_on_both_families_when_unaddressed() {
        use bollard::models::PortBinding;
        let ports = HashMap::from([(
            "80/tcp".to_owned(),
            Some(vec![PortBinding {
                host_ip: Some(String::new()),
                host_port: Some(String::new()),
            }]),
        )]);
        let mut reasons = Vec::new();
        let published = published_ports(&port_summaries(&ports), &mut reasons);
        let bound: Vec<_> = published
            .iter()
            .map(|p| (p.host_ip.to_string(), p.is_routed(), p.container_port))
            .collect();
        assert_eq!(
            bound,
            [("0.0.0.0".into(), true, 80), ("::".into(), true, 80)]
        );
        assert_eq!(reasons, Vec::<String>::new());
    }

    #[test]
    fn relevant_events_name_the_object_that_moved() {
        let start = event(EventMessageTypeEnum::CONTAINER, "start", &[("name", "web")]);
        let subject = |id: &str| Subject::Container(id.to_owned());
        assert_eq!(
            event_from(&start),
            Some(Event {
                subject: subject(SHOP_ID),
                text: "container start web".to_owned()
            })
        );
        let connect = event(
            EventMessageTypeEnum::NETWORK,
            "connect",
            &[("name", "shop"), ("container", CUSTOM_ID)],
        );
        let connect = event_from(&connect).expect("a connect is relevant");
        assert_eq!(connect.text, "network connect shop container 333333333333");
        assert_eq!(connect.subject, subject(CUSTOM_ID), "the container moved");
        assert!(connect.is_connect());
        let unnamed = event_from(&event(EventMessageTypeEnum::NETWORK, "destroy", &[]));
        let unnamed = unnamed.expect("a destroy is relevant");
        assert_eq!(unnamed.text, "network destroy 222222222222");
        assert_eq!(unnamed.subject, Subject::Network(SHOP_ID.to_owned()));
        let mut anonymous = event(EventMessageTypeEnum::CONTAINER, "die", &[]);
        anonymous.actor = None;
        let anonymous = event_from(&anonymous).expect("a die is relevant");
        assert_eq!(anonymous.subject, Subject::Unknown, "only a listing tells");
    }

    #[test]
    fn other_events_are_ignored() {
        assert_eq!(
            event_from(&event(EventMessageTypeEnum::CONTAINER, "create", &[])),
            None
        );
        assert_eq!(
            event_from(&event(EventMessageTypeEnum::IMAGE, "destroy", &[])),
            None
        );
        assert_eq!(event_from(&EventMessage::default()), None);
    }

    #[tokio::test]
    async fn the_version_is_asked_once_per_client_and_again_after_a_subscription() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        // A fake engine on a Unix socket: HTTP/1.1 with keep-alive, counting the
        // requests to GET /version.
        let dir = std::env::temp_dir().join(format!("dockfw-fake-engine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let versions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&versions);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                        let (status, body) = if path.ends_with("/version") {
                            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            ("200 OK", r#"{"Version":"29.7.2","ApiVersion":"1.55"}"#)
                        } else if path.contains("/containers/json") || path.contains("/networks") {
                            ("200 OK", "[]")
                        } else {
                            // /events: never answered here; the subscription fails.
                            ("404 Not Found", r#"{"message":"no"}"#)
                        };
                        let reply = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if conn.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let asked = || versions.load(std::sync::atomic::Ordering::SeqCst);
        let source = BollardSource::new(socket.to_str().unwrap());
        let first = source.snapshot().await.expect("first snapshot");
        assert_eq!(first.engine.version, "29.7.2");
        let fresh = asked();
        assert!(fresh >= 1, "a new client asks the version");
        for _ in 0..3 {
            let again = source.snapshot().await.expect("kept client");
            assert_eq!(again.engine, first.engine);
        }
        assert_eq!(asked(), fresh, "the kept client does not ask again");
        // A (re)subscription, as after an engine restart: the next snapshot asks anew.
        let events: Vec<_> = source.events().collect().await;
        assert!(events.iter().all(Result::is_err), "{events:?}");
        let before = asked();
        source.snapshot().await.expect("after the subscription");
        assert_eq!(
            asked() - before,
            fresh,
            "a fresh client asks the version again"
        );
        source.snapshot().await.expect("kept again");
        assert_eq!(asked() - before, fresh, "and is kept again");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn engine_down_is_an_error_not_a_panic() {
        let source = BollardSource::new("/nonexistent/dockfw/docker.sock");
        let error = source.snapshot().await.expect_err("no engine");
        assert!(matches!(error, DockerError::Connect { .. }), "{error:?}");
        let events: Vec<_> = source.events().collect().await;
        assert!(
            matches!(events[..], [Err(DockerError::Connect { .. })]),
            "{events:?}"
        );
    }

    #[test]
    fn a_subscription_replays_recent_events_and_watches_renames() {
        let at = UNIX_EPOCH + Duration::from_secs(1_764_500_000);
        let options = events_options(at);
        assert_eq!(options.since.as_deref(), Some("1764500000"));
        let filters = options.filters.expect("filters");
        assert!(filters["event"].contains(&"rename".to_string()));
        assert!(filters["event"].contains(&"start".to_string()));
    }

    #[test]
    fn routed_bindings_are_read_from_an_inspects_port_map() {
        use bollard::models::PortBinding;
        let binding = |ip: Option<&str>, port: Option<&str>| PortBinding {
            host_ip: ip.map(str::to_owned),
            host_port: port.map(str::to_owned),
        };
        let ports = HashMap::from([
            (
                "80/tcp".to_string(),
                Some(vec![
                    binding(Some("0.0.0.0"), Some("")),
                    binding(Some("::"), Some("")),
                ]),
            ),
            ("53/udp".to_string(), Some(vec![binding(None, Some("0"))])),
            (
                "443/tcp".to_string(),
                Some(vec![binding(Some("0.0.0.0"), Some("8443"))]),
            ),
            ("8080/tcp".to_string(), None),
            ("x/tcp".to_string(), Some(vec![binding(None, None)])),
            ("90/icmp".to_string(), Some(vec![binding(None, None)])),
        ]);
        let mut got: Vec<String> = routed_bindings(&ports)
            .iter()
            .map(|p| {
                format!(
                    "{} {}->{}/{}",
                    p.host_ip,
                    p.host_port,
                    p.container_port,
                    p.proto.as_str()
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                "0.0.0.0 0->53/udp",
                "0.0.0.0 0->80/tcp",
                ":: 0->53/udp",
                ":: 0->80/tcp",
            ]
        );
    }
}
