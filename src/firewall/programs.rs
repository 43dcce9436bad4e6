//! Where the firewall programs dockfw runs are: every path in one place.
//!
//! They are run from where Debian installs them, never found through
//! `PATH`: whoever sets dockfw's environment must not choose what parses
//! and writes the firewall. This module only names paths; it runs nothing.

use crate::net::Family;

/// `nft`, which writes and lists dockfw's `inet dockfw` table.
pub const NFT: &str = "/usr/sbin/nft";

/// `ipset`, which keeps the iptables driver's address sets.
pub const IPSET: &str = "/usr/sbin/ipset";

/// The system's `iptables`, asked (`-V`) which variant it is.
pub const IPTABLES: &str = "/usr/sbin/iptables";

/// An iptables implementation: both read and write the `filter` table,
/// each in its own kernel subsystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Nft,
    Legacy,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Nft => "nft",
            Variant::Legacy => "legacy",
        }
    }
}

/// What a program of an iptables variant does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Xtables {
    /// `*-save`: prints a table.
    Save,
    /// `*-restore`: installs restore text.
    Restore,
}

/// The `iptables`/`ip6tables` program of `variant` for `family` that does
/// `tool`.
pub fn xtables(family: Family, variant: Variant, tool: Xtables) -> &'static str {
    use Variant::{Legacy, Nft};
    use Xtables::{Restore, Save};
    match (family, variant, tool) {
        (Family::V4, Nft, Save) => "/usr/sbin/iptables-nft-save",
        (Family::V4, Nft, Restore) => "/usr/sbin/iptables-nft-restore",
        (Family::V4, Legacy, Save) => "/usr/sbin/iptables-legacy-save",
        (Family::V4, Legacy, Restore) => "/usr/sbin/iptables-legacy-restore",
        (Family::V6, Nft, Save) => "/usr/sbin/ip6tables-nft-save",
        (Family::V6, Nft, Restore) => "/usr/sbin/ip6tables-nft-restore",
        (Family::V6, Legacy, Save) => "/usr/sbin/ip6tables-legacy-save",
        (Family::V6, Legacy, Restore) => "/usr/sbin/ip6tables-legacy-restore",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_is_named_by_family_variant_and_tool() {
        for family in Family::ALL {
            let base = match family {
                Family::V4 => "iptables",
                Family::V6 => "ip6tables",
            };
            for variant in [Variant::Nft, Variant::Legacy] {
                for (tool, word) in [(Xtables::Save, "save"), (Xtables::Restore, "restore")] {
                    let want = format!("/usr/sbin/{base}-{}-{word}", variant.as_str());
                    assert_eq!(xtables(family, variant, tool), want);
                }
            }
        }
    }
}
