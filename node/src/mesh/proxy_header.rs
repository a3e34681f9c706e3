//! PROXY protocol headers (HAProxy's v1 text and v2 binary forms), which
//! tell a task the address of the client a proxied connection comes from.

use std::net::SocketAddr;

use shoal_core::model::port::ProxyProtocol;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The header for a TCP connection from `client` to `dest`. Mixed address
/// families (an IPv4 client on an IPv6 listener) are sent as IPv6.
pub fn encode(version: ProxyProtocol, client: SocketAddr, dest: SocketAddr) -> Vec<u8> {
    let both_v4 = match (client, dest) {
        (SocketAddr::V4(c), SocketAddr::V4(d)) => Some((c, d)),
        _ => None,
    };
    let v6 = |a: SocketAddr| match a {
        SocketAddr::V4(a) => a.ip().to_ipv6_mapped(),
        SocketAddr::V6(a) => *a.ip(),
    };
    match version {
        ProxyProtocol::V1 => match both_v4 {
            Some((c, d)) => format!(
                "PROXY TCP4 {} {} {} {}\r\n",
                c.ip(),
                d.ip(),
                c.port(),
                d.port()
            ),
            None => format!(
                "PROXY TCP6 {} {} {} {}\r\n",
                v6(client),
                v6(dest),
                client.port(),
                dest.port()
            ),
        }
        .into_bytes(),
        ProxyProtocol::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            // Version 2, command PROXY.
            out.push(0x21);
            match both_v4 {
                Some((c, d)) => {
                    out.push(0x11); // TCP over IPv4
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&c.ip().octets());
                    out.extend_from_slice(&d.ip().octets());
                }
                None => {
                    out.push(0x21); // TCP over IPv6
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&v6(client).octets());
                    out.extend_from_slice(&v6(dest).octets());
                }
            }
            out.extend_from_slice(&client.port().to_be_bytes());
            out.extend_from_slice(&dest.port().to_be_bytes());
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_name_the_client() {
        let c: SocketAddr = "10.0.0.1:40000".parse().expect("addr");
        let d: SocketAddr = "127.0.0.2:8080".parse().expect("addr");
        assert_eq!(
            encode(ProxyProtocol::V1, c, d),
            b"PROXY TCP4 10.0.0.1 127.0.0.2 40000 8080\r\n".to_vec()
        );
        let v2 = encode(ProxyProtocol::V2, c, d);
        assert_eq!(&v2[..12], V2_SIGNATURE);
        assert_eq!(v2[12..16], [0x21, 0x11, 0, 12]);
        assert_eq!(v2[16..20], [10, 0, 0, 1]);
        assert_eq!(v2[24..26], 40000u16.to_be_bytes());
        assert_eq!(v2.len(), 28);
    }
}
