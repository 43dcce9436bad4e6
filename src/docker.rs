//! The Docker edge: complete inventory snapshots and event triggers.
//!
//! [`DockerSource`] is the small trait the daemon uses; [`BollardSource`] implements it over the
//! engine's Unix socket. Every call connects afresh and negotiates the API version, so an engine
//! that was down, restarted or upgraded is simply picked up by the next call; nothing here retries
//! or sleeps, that is the daemon's job. The bollard-model-to-[`Inventory`] mapping is pure
//! ([`inventory_from`]) and tested without an engine. This module must not plan or touch the
//! firewall: events are triggers, the inventory is plain data.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{
    ContainerSummary, EndpointSettings, EventMessage, EventMessageTypeEnum, Network, PortSummary,
    PortSummaryTypeEnum, SystemVersion,
};
use bollard::query_parameters::{EventsOptions, ListContainersOptions, ListNetworksOptions};
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::inventory::{Attachment, Bridge, Container, Inventory, Proto, PublishedPort};

/// The engine's socket when `DOCKER_HOST` does not name a Unix socket.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Seconds bollard waits for a response (for `/events`: for its headers).
const REQUEST_TIMEOUT_SECS: u64 = 30;

/// How often a snapshot is taken again when containers and networks were listed mid-change.
const SNAPSHOT_ATTEMPTS: usize = 3;

/// Network option naming the Linux bridge interface (the default `bridge` network: `docker0`).
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// Container and network actions that can change what the firewall must allow.
/// `rename` because `containers` selectors match names.
const CONTAINER_ACTIONS: [&str; 4] = ["start", "die", "destroy", "rename"];
const NETWORK_ACTIONS: [&str; 4] = ["create", "destroy", "connect", "disconnect"];

/// Where the daemon gets Docker's state from.
pub trait DockerSource: Send + Sync + 'static {
    /// A fresh, complete inventory plus engine info. Errors when the engine is unreachable.
    fn snapshot(&self) -> impl Future<Output = Result<Snapshot, DockerError>> + Send;
    /// Relevant engine events as triggers (the payload is only for logging, e.g.
    /// "container start web"). The stream ends or yields Err when the connection drops; the
    /// daemon then reconnects by calling `events()` again.
    fn events(&self) -> BoxStream<'static, Result<String, DockerError>>;
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

/// Why talking to Docker, or making sense of its answer, failed.
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
    #[error(
        "container {container} is attached to network {network}, which is missing from \
         the network list (still after {attempts} attempts)"
    )]
    UnknownNetwork {
        container: String,
        network: String,
        attempts: usize,
    },
    #[error("container {container} has an unreadable {what}: {value:?}")]
    Unreadable {
        container: String,
        what: &'static str,
        value: String,
    },
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
        BollardSource { socket }
    }

    /// A source for [`endpoint_from_env`].
    pub fn from_env() -> Self {
        Self::new(endpoint_from_env())
    }

    /// The socket path this source talks to.
    pub fn socket(&self) -> &str {
        &self.socket
    }
}

impl DockerSource for BollardSource {
    async fn snapshot(&self) -> Result<Snapshot, DockerError> {
        let docker = connect(&self.socket).await?;
        let version = docker.version().await.map_err(call("GET /version"))?;
        let engine = engine_from(&version)?;
        let inventory = consistent_inventory(|| list(&docker)).await?;
        Ok(Snapshot { engine, inventory })
    }

    fn events(&self) -> BoxStream<'static, Result<String, DockerError>> {
        let socket = self.socket.clone();
        // The subscription is only made when the stream is first polled, and
        // the daemon's resync snapshot may run before it is in place: ask
        // for the events of the last few seconds too, so none fall between.
        let since = SystemTime::now() - EVENT_REPLAY;
        let subscribed = async move {
            let docker = connect(&socket).await?;
            let events = docker
                .events(Some(events_options(since)))
                .map_err(call("GET /events"));
            Ok::<_, DockerError>(events)
        };
        stream::once(subscribed)
            .try_flatten()
            .try_filter_map(|event| async move { Ok(trigger_from(&event)) })
            .boxed()
    }
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
/// removed between the two calls shows as an attachment to an unknown network.
async fn consistent_inventory<F, L>(mut list: F) -> Result<Inventory, DockerError>
where
    F: FnMut() -> L,
    L: Future<Output = Result<(Vec<ContainerSummary>, Vec<Network>), DockerError>>,
{
    let mut attempt = 1;
    loop {
        let (containers, networks) = list().await?;
        match inventory_from(&networks, &containers) {
            Err(DockerError::UnknownNetwork {
                container, network, ..
            }) => {
                if attempt == SNAPSHOT_ATTEMPTS {
                    let attempts = attempt;
                    return Err(DockerError::UnknownNetwork {
                        container,
                        network,
                        attempts,
                    });
                }
                tracing::debug!(
                    container,
                    network,
                    attempt,
                    "networks changed while listing"
                );
                attempt += 1;
            }
            result => return result,
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

/// The trigger text for an event that can change the firewall, `None` for any other event.
pub fn trigger_from(event: &EventMessage) -> Option<String> {
    let action = event.action.as_deref()?;
    let attributes = event
        .actor
        .as_ref()
        .and_then(|actor| actor.attributes.as_ref());
    let attribute = |key: &str| attributes.and_then(|a| a.get(key)).map(String::as_str);
    let actor_id = event.actor.as_ref().and_then(|actor| actor.id.as_deref());
    let subject = attribute("name").or(actor_id.map(short_id)).unwrap_or("?");
    match event.typ? {
        EventMessageTypeEnum::CONTAINER if CONTAINER_ACTIONS.contains(&action) => {
            Some(format!("container {action} {subject}"))
        }
        EventMessageTypeEnum::NETWORK if NETWORK_ACTIONS.contains(&action) => {
            Some(match attribute("container") {
                Some(container) => format!(
                    "network {action} {subject} container {}",
                    short_id(container)
                ),
                None => format!("network {action} {subject}"),
            })
        }
        _ => None,
    }
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Networks by id, as far as the inventory cares: a bridge or some other driver.
struct NetworkIndex<'a> {
    by_id: HashMap<&'a str, &'a Network>,
    by_name: HashMap<&'a str, &'a Network>,
}

impl<'a> NetworkIndex<'a> {
    fn new(networks: &'a [Network]) -> Self {
        let by_id = networks
            .iter()
            .filter_map(|n| Some((n.id.as_deref()?, n)))
            .collect();
        let by_name = networks
            .iter()
            .filter_map(|n| Some((n.name.as_deref()?, n)))
            .collect();
        NetworkIndex { by_id, by_name }
    }

    /// The network an endpoint belongs to: by id, or by name for engines that leave the id out.
    fn get(&self, name: &str, endpoint: &EndpointSettings) -> Option<&'a Network> {
        match endpoint.network_id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => self.by_id.get(id).copied(),
            None => self.by_name.get(name).copied(),
        }
    }
}

fn is_bridge(network: &Network) -> bool {
    network.driver.as_deref() == Some("bridge")
}

/// The inventory for what `list_containers` (running only) and `list_networks` (all drivers)
/// returned. List containers first: a network created in between is then merely unused. An
/// attachment to a network missing from the list (it was removed in between) is
/// [`DockerError::UnknownNetwork`]: the caller lists again rather than drop the attachment.
pub fn inventory_from(
    networks: &[Network],
    containers: &[ContainerSummary],
) -> Result<Inventory, DockerError> {
    let index = NetworkIndex::new(networks);
    let mut bridges: Vec<Bridge> = networks
        .iter()
        .filter(|n| is_bridge(n))
        .filter_map(bridge_from)
        .collect();
    bridges.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    let mut containers = containers
        .iter()
        .map(|summary| container_from(summary, &index))
        .collect::<Result<Vec<_>, _>>()?;
    containers.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    // Whether Docker writes DNAT rules per family is a firewall fact; the
    // daemon fills it in from what is installed.
    Ok(Inventory {
        bridges,
        containers,
        ..Inventory::default()
    })
}

fn bridge_from(network: &Network) -> Option<Bridge> {
    let id = network.id.clone()?;
    let name = network.name.clone()?;
    let configured = network
        .options
        .as_ref()
        .and_then(|o| o.get(BRIDGE_NAME_OPTION));
    let interface = match configured.filter(|name| !name.is_empty()) {
        Some(interface) => interface.clone(),
        None => format!("br-{}", short_id(&id)),
    };
    Some(Bridge {
        id,
        name,
        interface,
    })
}

fn container_from(
    summary: &ContainerSummary,
    index: &NetworkIndex,
) -> Result<Container, DockerError> {
    let id = summary.id.clone().unwrap_or_default();
    let name = container_name(summary.names.as_deref().unwrap_or_default(), &id);
    let network_mode = summary
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.as_deref());
    let endpoints = summary
        .network_settings
        .as_ref()
        .and_then(|s| s.networks.as_ref());
    let mut attachments = Vec::new();
    for (network_name, endpoint) in endpoints.into_iter().flatten() {
        let Some(network) = index.get(network_name, endpoint) else {
            return Err(DockerError::UnknownNetwork {
                container: name,
                network: network_name.clone(),
                attempts: 1,
            });
        };
        if is_bridge(network) {
            attachments.push(attachment_from(&name, network_name, endpoint)?);
        }
    }
    attachments.sort_by(|a, b| a.network.cmp(&b.network));
    let ports = published_ports(&name, summary.ports.as_deref().unwrap_or_default())?;
    Ok(Container {
        labels: summary
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        host_network: network_mode == Some("host"),
        id,
        name,
        attachments,
        ports,
    })
}

/// The container's own name: Docker lists link aliases (`/other/alias`) next to it.
fn container_name(names: &[String], id: &str) -> String {
    let stripped = |n: &String| n.strip_prefix('/').unwrap_or(n).to_string();
    names
        .iter()
        .find(|n| !n.trim_start_matches('/').contains('/'))
        .or(names.first())
        .map(stripped)
        .unwrap_or_else(|| short_id(id).to_string())
}

fn attachment_from(
    container: &str,
    network: &str,
    endpoint: &EndpointSettings,
) -> Result<Attachment, DockerError> {
    Ok(Attachment {
        network: network.to_string(),
        ipv4: address(container, "ipv4 address", endpoint.ip_address.as_deref())?,
        ipv6: address(
            container,
            "ipv6 address",
            endpoint.global_ipv6_address.as_deref(),
        )?,
    })
}

/// An optional address: Docker writes `""` for none.
fn address<A: FromStr>(
    container: &str,
    what: &'static str,
    value: Option<&str>,
) -> Result<Option<A>, DockerError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| unreadable(container, what, v)),
    }
}

fn unreadable(container: &str, what: &'static str, value: &str) -> DockerError {
    DockerError::Unreadable {
        container: container.to_string(),
        what,
        value: value.to_string(),
    }
}

/// Ports bound on the host; exposed-only ports (no `PublicPort`) are left out.
fn published_ports(
    container: &str,
    ports: &[PortSummary],
) -> Result<Vec<PublishedPort>, DockerError> {
    let mut published = Vec::new();
    for port in ports {
        let Some(host_port) = port.public_port else {
            continue;
        };
        let host_ip = address(container, "published host ip", port.ip.as_deref())?;
        published.push(PublishedPort {
            host_ip: host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            host_port,
            container_port: port.private_port,
            proto: proto(container, port.typ)?,
        });
    }
    let key = |p: &PublishedPort| (p.host_port, p.proto, p.host_ip, p.container_port);
    published.sort_by_key(key);
    published.dedup();
    Ok(published)
}

fn proto(container: &str, typ: Option<PortSummaryTypeEnum>) -> Result<Proto, DockerError> {
    match typ {
        Some(PortSummaryTypeEnum::TCP) => Ok(Proto::Tcp),
        Some(PortSummaryTypeEnum::UDP) => Ok(Proto::Udp),
        Some(PortSummaryTypeEnum::SCTP) => Ok(Proto::Sctp),
        Some(PortSummaryTypeEnum::EMPTY) | None => Err(unreadable(container, "port protocol", "")),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use bollard::models::{
        ContainerSummaryHostConfig, ContainerSummaryNetworkSettings, EventActor,
    };

    use super::*;

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
        let inventory = inventory_from(&networks(), &[]).expect("inventory");
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
    fn container_maps_attachments_ports_and_labels() {
        let inventory = inventory_from(&networks(), &[web()]).expect("inventory");
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
                network: "bridge".into(),
                ipv4: Some(Ipv4Addr::new(172, 17, 0, 2)),
                ipv6: Some("fd00:dead:beef::242:ac11:2".parse().expect("ipv6")),
            },
            Attachment {
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
    }

    #[test]
    fn host_network_container_has_no_attachments() {
        let inventory = inventory_from(&networks(), &[host_tool()]).expect("inventory");
        let tool = &inventory.containers[0];
        assert!(tool.host_network);
        assert!(tool.attachments.is_empty());
    }

    #[test]
    fn listing_order_does_not_change_the_inventory() {
        let first = inventory_from(&networks(), &[web(), host_tool()]).expect("inventory");
        let mut reversed = networks();
        reversed.reverse();
        let second = inventory_from(&reversed, &[host_tool(), web()]).expect("inventory");
        assert_eq!(first, second);
        let names: Vec<_> = first.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["tool", "web"]);
    }

    #[test]
    fn attachment_to_unlisted_network_is_an_error_not_a_drop() {
        let only_default = vec![network(DEFAULT_ID, "bridge", "bridge", &[])];
        let error = inventory_from(&only_default, &[web()]).expect_err("custom is unknown");
        assert!(
            matches!(error, DockerError::UnknownNetwork { ref network, .. } if network == "custom")
        );
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
        let inventory = inventory_from(&networks(), &[web]).expect("inventory");
        assert_eq!(inventory.containers[0].attachments.len(), 2);
    }

    #[test]
    fn unreadable_address_is_an_error() {
        let mut web = web();
        web.ports = Some(vec![port(
            Some("not-an-ip"),
            80,
            Some(80),
            PortSummaryTypeEnum::TCP,
        )]);
        let error = inventory_from(&networks(), &[web]).expect_err("bad ip");
        assert_eq!(
            error.to_string(),
            "container web has an unreadable published host ip: \"not-an-ip\""
        );
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
    async fn listing_gives_up_after_repeated_inconsistency() {
        let mut calls = 0;
        let result = consistent_inventory(|| {
            calls += 1;
            async { Ok((vec![web()], vec![])) }
        })
        .await;
        assert_eq!(calls, SNAPSHOT_ATTEMPTS);
        assert!(matches!(
            result,
            Err(DockerError::UnknownNetwork {
                attempts: SNAPSHOT_ATTEMPTS,
                ..
            })
        ));
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

    #[test]
    fn relevant_events_become_triggers() {
        let start = event(EventMessageTypeEnum::CONTAINER, "start", &[("name", "web")]);
        assert_eq!(trigger_from(&start).as_deref(), Some("container start web"));
        let connect = event(
            EventMessageTypeEnum::NETWORK,
            "connect",
            &[("name", "shop"), ("container", CUSTOM_ID)],
        );
        assert_eq!(
            trigger_from(&connect).as_deref(),
            Some("network connect shop container 333333333333")
        );
        let unnamed = event(EventMessageTypeEnum::NETWORK, "destroy", &[]);
        assert_eq!(
            trigger_from(&unnamed).as_deref(),
            Some("network destroy 222222222222")
        );
    }

    #[test]
    fn other_events_are_ignored() {
        assert_eq!(
            trigger_from(&event(EventMessageTypeEnum::CONTAINER, "create", &[])),
            None
        );
        assert_eq!(
            trigger_from(&event(EventMessageTypeEnum::IMAGE, "destroy", &[])),
            None
        );
        assert_eq!(trigger_from(&EventMessage::default()), None);
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
}
