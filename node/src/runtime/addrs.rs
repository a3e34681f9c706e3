//! `--listen-addr` and `--advertise-addr` as docker takes them: an IP or an
//! interface name, with an optional port; and the choice of the address to
//! advertise when none is given, which is never an unspecified one.

use std::net::{IpAddr, SocketAddr};

/// The cluster port when an address names none.
pub const DEFAULT_PORT: u16 = 2377;

/// One address of one network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddr {
    pub interface: String,
    pub ip: IpAddr,
}

/// Where this node listens and what it tells peers to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addrs {
    pub listen: SocketAddr,
    pub advertise: SocketAddr,
}

/// docker's messages for an address it cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error(
        "listen address must be an IP address or network interface (with optional port number)"
    )]
    BadListen,
    #[error("advertise address must be a non-zero IP address or network interface (with optional port number)")]
    BadAdvertise,
    #[error("interface {0} has more than one IPv4 address ({1} and {2})")]
    ManyOnInterface(String, IpAddr, IpAddr),
    #[error("interface {0} has no usable IPv4 or IPv6 address")]
    NoneOnInterface(String),
    #[error("could not find the system's IP address - specify one with --advertise-addr")]
    NoSystemAddr,
    #[error("could not choose an IP address to advertise since this system has multiple addresses on different interfaces ({0} on {1} and {2} on {3})")]
    ManySystemAddrs(IpAddr, String, IpAddr, String),
}

/// `ADDR[:PORT]` where ADDR is an IP (`[v6]` with a port) or an interface name.
/// `None` for the IP when the address names an interface it must look up.
fn split(spec: &str) -> Option<(&str, Option<u16>)> {
    if let Ok(sa) = spec.parse::<SocketAddr>() {
        return Some((spec, Some(sa.port())));
    }
    if spec.parse::<IpAddr>().is_ok() {
        return Some((spec, None));
    }
    match spec.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = port.parse::<u16>().ok()?;
            Some((host, Some(port)))
        }
        Some(_) => None,
        None => Some((spec, None)),
    }
}

/// The IP an address names: itself, or the one usable address of an
/// interface (an IPv4 one first, as docker prefers).
fn ip_of(host: &str, interfaces: &[InterfaceAddr]) -> Result<Option<IpAddr>, AddrError> {
    if let Ok(sa) = host.parse::<SocketAddr>() {
        return Ok(Some(sa.ip()));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Some(ip));
    }
    let mine: Vec<&InterfaceAddr> = interfaces.iter().filter(|a| a.interface == host).collect();
    if mine.is_empty() {
        return Ok(None);
    }
    let v4: Vec<IpAddr> = mine
        .iter()
        .map(|a| a.ip)
        .filter(|ip| ip.is_ipv4())
        .collect();
    match v4.as_slice() {
        [one] => Ok(Some(*one)),
        [a, b, ..] => Err(AddrError::ManyOnInterface(host.to_string(), *a, *b)),
        [] => mine
            .iter()
            .map(|a| a.ip)
            .find(|ip| !is_link_local(ip))
            .map(Some)
            .ok_or_else(|| AddrError::NoneOnInterface(host.to_string())),
    }
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// `--listen-addr`: an IP or interface, port `default_port` unless given.
pub fn listen(
    spec: &str,
    default_port: u16,
    interfaces: &[InterfaceAddr],
) -> Result<SocketAddr, AddrError> {
    let (host, port) = split(spec).ok_or(AddrError::BadListen)?;
    let ip = ip_of(host, interfaces)?.ok_or(AddrError::BadListen)?;
    Ok(SocketAddr::new(ip, port.unwrap_or(default_port)))
}

/// What to advertise: `spec` if given (its port defaults to the listen
/// port), else the listen address if it names a host, else the system's
/// one usable address.
pub fn advertise(
    spec: Option<&str>,
    listen: SocketAddr,
    interfaces: &[InterfaceAddr],
) -> Result<SocketAddr, AddrError> {
    if let Some(spec) = spec {
        let (host, port) = split(spec).ok_or(AddrError::BadAdvertise)?;
        let ip = ip_of(host, interfaces)?.ok_or(AddrError::BadAdvertise)?;
        if ip.is_unspecified() {
            return Err(AddrError::BadAdvertise);
        }
        return Ok(SocketAddr::new(ip, port.unwrap_or(listen.port())));
    }
    if !listen.ip().is_unspecified() {
        return Ok(listen);
    }
    let usable: Vec<&InterfaceAddr> = interfaces
        .iter()
        .filter(|a| a.ip.is_ipv4() && !a.ip.is_loopback() && !is_link_local(&a.ip))
        .collect();
    match usable.as_slice() {
        [] => Err(AddrError::NoSystemAddr),
        [one] => Ok(SocketAddr::new(one.ip, listen.port())),
        [a, rest @ ..] => match rest.iter().find(|b| b.interface != a.interface) {
            Some(b) => Err(AddrError::ManySystemAddrs(
                a.ip,
                a.interface.clone(),
                b.ip,
                b.interface.clone(),
            )),
            None => Err(AddrError::ManyOnInterface(
                a.interface.clone(),
                a.ip,
                rest[0].ip,
            )),
        },
    }
}

/// The local IP this machine would use to reach `remote` (a UDP `connect`
/// sends nothing): what `swarm join` advertises when told nothing, as docker
/// takes the local address of its connection to the manager.
pub fn route_to(remote: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if remote.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(any).ok()?;
    socket.connect(remote).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// The machine's interface addresses (getifaddrs).
pub fn interfaces() -> Vec<InterfaceAddr> {
    let Ok(list) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    list.filter_map(|a| {
        let addr = a.address?;
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else {
            IpAddr::V6(addr.as_sockaddr_in6()?.ip())
        };
        Some(InterfaceAddr {
            interface: a.interface_name,
            ip,
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use crate::runtime::addrs::{advertise, listen, AddrError, InterfaceAddr};

    fn iface(name: &str, ip: &str) -> InterfaceAddr {
        InterfaceAddr {
            interface: name.into(),
            ip: ip.parse().expect("ip"),
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn the_route_to_a_loopback_manager_is_loopback() {
        let ip = crate::runtime::addrs::route_to(sa("127.0.0.7:2377"));
        assert!(ip.is_some_and(|ip| ip.is_loopback()), "{ip:?}");
    }

    #[test]
    fn listen_addresses_as_docker_takes_them() {
        let ifs = [iface("lo", "127.0.0.1"), iface("eth0", "10.0.0.5")];
        assert_eq!(listen("10.0.0.5", 2377, &ifs), Ok(sa("10.0.0.5:2377")));
        assert_eq!(listen("10.0.0.5:4000", 2377, &ifs), Ok(sa("10.0.0.5:4000")));
        assert_eq!(listen("eth0:4000", 2377, &ifs), Ok(sa("10.0.0.5:4000")));
        assert_eq!(listen("0.0.0.0", 2377, &ifs), Ok(sa("0.0.0.0:2377")));
        assert_eq!(listen("[::1]:4000", 2377, &ifs), Ok(sa("[::1]:4000")));
        assert_eq!(listen("nope0", 2377, &ifs), Err(AddrError::BadListen));
        assert_eq!(listen("eth0:x", 2377, &ifs), Err(AddrError::BadListen));
    }

    #[test]
    fn the_advertised_address_is_never_unspecified() {
        let one = [iface("lo", "127.0.0.1"), iface("eth0", "10.0.0.5")];
        let any = sa("0.0.0.0:2377");
        assert_eq!(advertise(None, any, &one), Ok(sa("10.0.0.5:2377")));
        assert_eq!(advertise(Some("eth0"), any, &one), Ok(sa("10.0.0.5:2377")));
        assert_eq!(
            advertise(Some("10.0.0.9:99"), any, &one),
            Ok(sa("10.0.0.9:99"))
        );
        assert_eq!(
            advertise(Some("0.0.0.0"), any, &one),
            Err(AddrError::BadAdvertise)
        );
        assert_eq!(
            advertise(None, sa("127.0.0.2:7000"), &one),
            Ok(sa("127.0.0.2:7000"))
        );
        let none = [iface("lo", "127.0.0.1")];
        assert_eq!(advertise(None, any, &none), Err(AddrError::NoSystemAddr));
        let two = [iface("eth0", "10.0.0.5"), iface("eth1", "192.168.1.2")];
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(
            advertise(None, any, &two),
            Err(AddrError::ManySystemAddrs(
                ip("10.0.0.5"),
                "eth0".into(),
                ip("192.168.1.2"),
                "eth1".into()
            ))
        );
        assert!(advertise(None, any, &two)
            .expect_err("two")
            .to_string()
            .starts_with("could not choose an IP address to advertise"));
    }
}
