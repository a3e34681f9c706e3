//! IPv4 subnets as the user writes them (`10.0.9.0/24`): parsing with
//! docker's messages, containment, overlap and the n-th host address.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Subnet {
    /// The network address (host bits zero).
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// Parses `a.b.c.d/n`; host bits set are refused, as docker refuses them.
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let bad = || format!("invalid CIDR address: {s}");
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 32 || p.len() > 2 {
            return Err(bad());
        }
        let net = Subnet { addr, prefix };
        if net.network() != addr {
            return Err(format!(
                "invalid subnet {s}: it should be {}/{prefix}",
                net.network()
            ));
        }
        Ok(net)
    }

    fn mask(self) -> u32 {
        match self.prefix {
            0 => 0,
            p => u32::MAX << (32 - u32::from(p)),
        }
    }

    fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn contains(self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.addr)
    }

    pub fn overlaps(self, other: Subnet) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// Addresses in the subnet, network and broadcast included.
    pub fn size(self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The address `offset` past the network address.
    pub fn nth(self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(offset))
    }

    /// How far `a` lies past the network address (`a` must be inside).
    pub fn offset(self, a: Ipv4Addr) -> u32 {
        u32::from(a).wrapping_sub(u32::from(self.addr))
    }

    /// The `i`th subnet of length `prefix` inside this one.
    pub fn child(self, prefix: u8, i: u64) -> Option<Subnet> {
        if prefix < self.prefix || prefix > 32 || i >= 1u64 << (prefix - self.prefix) {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix));
        let addr = u64::from(u32::from(self.addr)) + i * step;
        Some(Subnet {
            addr: Ipv4Addr::from(addr as u32),
            prefix,
        })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_checks_and_splits() {
        let s = Subnet::parse("10.0.9.0/24").unwrap();
        assert_eq!(s.to_string(), "10.0.9.0/24");
        assert!(s.contains("10.0.9.200".parse().unwrap()));
        assert!(!s.contains("10.0.10.1".parse().unwrap()));
        assert_eq!(s.nth(2), "10.0.9.2".parse::<Ipv4Addr>().unwrap());
        assert_eq!(s.size(), 256);
        assert!(Subnet::parse("10.0.9.1/24")
            .unwrap_err()
            .contains("10.0.9.0/24"));
        assert!(Subnet::parse("10.0.9.0").is_err());
        assert!(Subnet::parse("10.0.9.0/33").is_err());
        assert!(Subnet::parse("300.0.9.0/24").is_err());
        let pool = Subnet::parse("10.200.0.0/16").unwrap();
        assert_eq!(pool.child(24, 3).unwrap().to_string(), "10.200.3.0/24");
        assert!(pool.child(24, 256).is_none());
        assert!(pool.overlaps(s.child(24, 0).unwrap()) == pool.contains(s.addr));
        assert!(pool.overlaps(pool.child(24, 7).unwrap()));
    }
}
