//! Live tests of [`BollardSource`] against a real engine, `#[ignore]`d: run them with
//! `--include-ignored` and `DOCKFW_TEST_DOCKER_HOST` naming the engine's socket (`unix:///path`
//! or a path); without it they fail, never pass silently. The e2e case `docker_source_live`
//! runs them against the lab engine. They need the `docker`
//! CLI and an image (`DOCKFW_TEST_IMAGE`, default `dfwtest`) whose default command serves
//! HTTP on port 80, e.g. busybox `httpd -f -p 80`. Every object they create is prefixed
//! `dfwit-` and removed afterwards. Run with `--nocapture` to see the snapshot as JSON.

use std::process::Command;
use std::time::Duration;

use dockfw::docker::{BollardSource, DockerSource, Inspected, Snapshot};
use dockfw::inventory::{Container, Proto};
use futures_util::StreamExt;

/// The containers [`start_lab`] runs.
const LAB: [&str; 3] = ["dfwit-web", "dfwit-api", "dfwit-tool"];

/// The engine's socket path; panics (the test fails) when none is named.
fn engine() -> String {
    match std::env::var("DOCKFW_TEST_DOCKER_HOST") {
        Ok(host) => host.trim_start_matches("unix://").to_string(),
        Err(_) => panic!("set DOCKFW_TEST_DOCKER_HOST to a Docker socket to run this test"),
    }
}

fn image() -> String {
    std::env::var("DOCKFW_TEST_IMAGE").unwrap_or_else(|_| "dfwtest".to_string())
}

/// Runs `docker -H unix://SOCKET ARGS`, returning stdout; panics (the test fails) on failure.
fn docker(socket: &str, args: &[&str]) -> String {
    let output = Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{socket}"))
        .args(args)
        .output()
        .expect("run the docker cli");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "docker {args:?}: {stderr}");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Removes the named containers and networks when dropped, also when a test fails.
#[derive(Clone)]
struct Cleanup {
    socket: String,
    containers: Vec<&'static str>,
    networks: Vec<&'static str>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let host = format!("unix://{}", self.socket);
        let run = |args: &[&str]| {
            let _ = Command::new("docker")
                .args(["-H", &host])
                .args(args)
                .output();
        };
        for container in &self.containers {
            run(&["rm", "-f", container]);
        }
        for network in &self.networks {
            run(&["network", "rm", network]);
        }
    }
}

/// `dfwit-web` on the default bridge and `dfwit-custom`, `dfwit-api` on `dfwit-shop`,
/// `dfwit-tool` on the host network.
fn start_lab(socket: &str) -> Cleanup {
    let cleanup = Cleanup {
        socket: socket.to_string(),
        containers: LAB.to_vec(),
        networks: vec!["dfwit-custom", "dfwit-shop"],
    };
    drop(cleanup.clone()); // clears leftovers of an aborted run
    let image = image();
    let d = |args: &[&str]| docker(socket, args);
    d(&[
        "network",
        "create",
        "--opt",
        "com.docker.network.bridge.name=dfwitbr0",
        "dfwit-custom",
    ]);
    d(&["network", "create", "dfwit-shop"]);
    d(&[
        "run",
        "-d",
        "--name",
        "dfwit-web",
        "-p",
        "18080:80",
        "-p",
        "127.0.0.1:19000:80",
    ]
    .into_iter()
    .chain(["--expose", "443", "--label", "dockfw.allow=web", &image])
    .collect::<Vec<_>>());
    d(&["network", "connect", "dfwit-custom", "dfwit-web"]);
    d(&[
        "run",
        "-d",
        "--name",
        "dfwit-api",
        "--network",
        "dfwit-shop",
        "-p",
        "15353:53/udp",
        &image,
    ]);
    d(&[
        "run",
        "-d",
        "--name",
        "dfwit-tool",
        "--network",
        "host",
        &image,
        "/bin/httpd",
        "-f",
    ]
    .into_iter()
    .chain(["-p", "127.0.0.1:18081", "-h", "/www"])
    .collect::<Vec<_>>());
    cleanup
}

fn find<'a>(containers: &'a [Container], name: &str) -> &'a Container {
    let found = containers.iter().find(|c| c.name == name);
    found.unwrap_or_else(|| panic!("{name} missing from the snapshot"))
}

fn ports(container: &Container) -> Vec<String> {
    let port = |p: &dockfw::inventory::PublishedPort| {
        let proto = p.proto.as_str();
        format!(
            "{}:{}->{}/{proto}",
            p.host_ip, p.host_port, p.container_port
        )
    };
    container.ports.iter().map(port).collect()
}

#[tokio::test]
#[ignore = "needs a Docker engine: DOCKFW_TEST_DOCKER_HOST (e2e case docker_source_live)"]
async fn snapshot_describes_bridges_and_containers() {
    let socket = engine();
    let _cleanup = start_lab(&socket);
    let source = BollardSource::new(socket.as_str());
    let snapshot = source.snapshot().await.expect("snapshot");
    let json = serde_json::to_string_pretty(&snapshot).expect("json");
    println!("{json}");
    assert!(!snapshot.engine.version.is_empty());
    assert!(snapshot.engine.api_version.starts_with("1."));

    let interface = |name: &str| {
        let bridge = snapshot.inventory.bridges.iter().find(|b| b.name == name);
        bridge.map(|b| b.interface.clone())
    };
    let shop_id = docker(
        &socket,
        &["network", "inspect", "-f", "{{.Id}}", "dfwit-shop"],
    );
    assert_eq!(interface("bridge").as_deref(), Some("docker0"));
    assert_eq!(interface("dfwit-custom").as_deref(), Some("dfwitbr0"));
    assert_eq!(
        interface("dfwit-shop"),
        Some(format!("br-{}", &shop_id[..12]))
    );
    assert_eq!(interface("host"), None);

    let containers = &snapshot.inventory.containers;
    let web = find(containers, "dfwit-web");
    let networks: Vec<_> = web.attachments.iter().map(|a| a.network.as_str()).collect();
    assert_eq!(networks, ["bridge", "dfwit-custom"]);
    assert!(web.attachments.iter().all(|a| a.ipv4.is_some()));
    assert_eq!(
        web.labels.get("dockfw.allow").map(String::as_str),
        Some("web")
    );
    let mut web_ports = ports(web);
    web_ports.retain(|p| p != ":::18080->80/tcp"); // only when the engine has IPv6 enabled
    assert_eq!(
        web_ports,
        ["0.0.0.0:18080->80/tcp", "127.0.0.1:19000->80/tcp"]
    );

    let api = find(containers, "dfwit-api");
    assert_eq!(api.attachments.len(), 1);
    assert_eq!(api.attachments[0].network, "dfwit-shop");
    assert!(
        api.ports
            .iter()
            .all(|p| p.proto == Proto::Udp && p.host_port == 15353)
    );

    let tool = find(containers, "dfwit-tool");
    assert!(tool.host_network && tool.attachments.is_empty() && tool.ports.is_empty());

    // Compared without containers of other tests running in parallel.
    let lab = |snapshot: &Snapshot| {
        let mut inventory = snapshot.inventory.clone();
        inventory
            .containers
            .retain(|c| LAB.contains(&c.name.as_str()));
        (snapshot.engine.clone(), inventory)
    };
    let again = source.snapshot().await.expect("second snapshot");
    assert_eq!(
        lab(&again),
        lab(&snapshot),
        "two snapshots of the same state differ"
    );
}

/// What an event's inspect gives is what the listing gives: the daemon keeps its inventory
/// from inspects, and the periodic listing would count every difference as a repair.
#[tokio::test]
#[ignore = "needs a Docker engine: DOCKFW_TEST_DOCKER_HOST (e2e case docker_source_live)"]
async fn inspects_map_containers_and_networks_as_the_listing_does() {
    let socket = engine();
    let _cleanup = start_lab(&socket);
    let source = BollardSource::new(socket.as_str());
    let known = source.snapshot().await.expect("snapshot").inventory;
    for name in LAB {
        let listed = find(&known.containers, name);
        let inspected = source
            .inspect_container(&listed.id, &known)
            .await
            .expect("inspect");
        let Inspected::Running {
            container,
            rejected,
        } = inspected
        else {
            panic!("{name}: {inspected:?}");
        };
        assert_eq!(&container, listed, "{name}");
        let notes: Vec<_> = known.rejected.iter().filter(|r| r.name == name).collect();
        assert_eq!(rejected.iter().collect::<Vec<_>>(), notes, "{name}");
    }
    for bridge in &known.bridges {
        let found = source.inspect_network(&bridge.id).await.expect("inspect");
        let found = found.unwrap_or_else(|| panic!("{} gone", bridge.name));
        assert_eq!(found.bridges, std::slice::from_ref(bridge));
        let modes = known.gateway_modes.get(&bridge.id);
        assert_eq!(
            found.gateway_modes.get(&bridge.id),
            modes,
            "{}",
            bridge.name
        );
    }
    let gone = "0".repeat(64);
    assert_eq!(
        source
            .inspect_container(&gone, &known)
            .await
            .expect("404 is an answer"),
        Inspected::Gone
    );
    assert_eq!(source.inspect_network(&gone).await.expect("404"), None);
    docker(&socket, &["stop", "-t", "0", "dfwit-api"]);
    let api = find(&known.containers, "dfwit-api");
    assert_eq!(
        source
            .inspect_container(&api.id, &known)
            .await
            .expect("inspect"),
        Inspected::Gone,
        "a stopped container is not running"
    );
}

#[tokio::test]
#[ignore = "needs a Docker engine: DOCKFW_TEST_DOCKER_HOST (e2e case docker_source_live)"]
async fn container_start_arrives_as_trigger() {
    let socket = engine();
    let cleanup = Cleanup {
        socket: socket.clone(),
        containers: vec!["dfwit-event"],
        networks: vec![],
    };
    drop(cleanup.clone()); // clears leftovers of an aborted run
    let (sender, mut triggers) = tokio::sync::mpsc::unbounded_channel();
    let mut events = BollardSource::new(socket.as_str()).events();
    let reader = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let _ = sender.send(event);
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await; // let the subscription settle
    docker(&socket, &["run", "-d", "--name", "dfwit-event", &image()]);
    let wanted = "container start dfwit-event";
    let arrived = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(trigger) = triggers.recv().await {
            let trigger = trigger.expect("event stream error");
            println!("trigger: {trigger}");
            if trigger.text == wanted {
                return true;
            }
        }
        false
    })
    .await;
    reader.abort();
    assert_eq!(arrived, Ok(true), "no {wanted:?} within 10 s");
}
