//! The kernel's word on which interfaces are Linux bridges, as the loop
//! keeps it ([`BridgeFacts`]): followed over rtnetlink where it can be (a
//! change is a trigger), read at every pass where it cannot, or fixed for
//! tests. Only a Linux bridge is exempted as "from a container".

use std::collections::BTreeSet;

use tracing::warn;

use crate::inventory::Inventory;
use crate::links;

use super::config::BridgeCheck;
use super::report::error_chain;

/// The kernel's word on which interfaces are Linux bridges, as the loop
/// keeps it.
pub(super) enum BridgeFacts {
    /// Followed: read before each plan, and a change is a trigger.
    Watched(links::LinkWatch),
    /// The watch could not be set up or failed: the links are read at
    /// every pass, and only then.
    Read,
    /// [`BridgeCheck::Fixed`].
    Fixed(Option<BTreeSet<String>>),
}

impl BridgeFacts {
    pub(super) fn new(check: &BridgeCheck) -> BridgeFacts {
        match check {
            BridgeCheck::Fixed(names) => BridgeFacts::Fixed(names.clone()),
            BridgeCheck::Kernel => match links::watch() {
                Ok(watch) => BridgeFacts::Watched(watch),
                Err(e) => {
                    warn!(error = %error_chain(&e), "cannot watch network links; reading them at every pass instead");
                    BridgeFacts::Read
                }
            },
        }
    }

    /// Until the set of Linux bridges changes; never, unless watched.
    pub(super) async fn changed(&mut self) -> Result<(), links::LinkError> {
        match self {
            BridgeFacts::Watched(watch) => watch.changed().await,
            _ => std::future::pending().await,
        }
    }

    /// Fill `inventory.not_bridges` with the kernel's word now; the bridge
    /// networks that are not taken as bridges, with why.
    pub(super) fn check(&mut self, inventory: &mut Inventory) -> Vec<links::NotABridge> {
        let read = match self {
            BridgeFacts::Fixed(None) => {
                inventory.not_bridges.clear();
                return Vec::new();
            }
            BridgeFacts::Fixed(Some(names)) => {
                let links = links::Links::from_names(names.iter().map(|n| (n.as_str(), true)));
                return links::check_bridges(inventory, Ok(&links));
            }
            BridgeFacts::Watched(watch) => match watch.refresh() {
                Ok(links) => return links::check_bridges(inventory, Ok(links)),
                Err(e) => {
                    warn!(error = %error_chain(&e), "the network link watch failed; reading links at every pass instead");
                    *self = BridgeFacts::Read;
                    links::links()
                }
            },
            BridgeFacts::Read => links::links(),
        };
        match read {
            Ok(links) => links::check_bridges(inventory, Ok(&links)),
            Err(e) => links::check_bridges(inventory, Err(&error_chain(&e))),
        }
    }
}
