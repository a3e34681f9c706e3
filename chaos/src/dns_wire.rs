//! DNS on the wire, as much as a client asking for one A record needs:
//! the query, the first A record of the answer, the nameserver of a
//! resolv.conf. Std only: `shoal-echo` (a static binary in an empty image,
//! with no resolver library to lean on) includes this file too.

use std::net::Ipv4Addr;

/// The first IPv4 nameserver of a resolv.conf.
pub fn nameserver(conf: &str) -> Result<Ipv4Addr, String> {
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|a| a.trim().parse().ok())
        .ok_or_else(|| "no IPv4 nameserver in the resolv.conf".into())
}

/// A DNS query for the A record of `name`.
pub fn query(name: &str, id: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("not a name: {name:?}"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    Ok(q)
}

/// The first A record of a DNS answer to query `id`, or what the answer said.
pub fn answer(m: &[u8], id: u16) -> Result<Ipv4Addr, String> {
    if m.len() < 12 || u16::from_be_bytes([m[0], m[1]]) != id {
        return Err("an answer to another query".into());
    }
    match m[3] & 0x0f {
        0 => {}
        3 => return Err("NXDOMAIN".into()),
        rc => return Err(format!("rcode {rc}")),
    }
    let (qd, an) = (
        u16::from_be_bytes([m[4], m[5]]),
        u16::from_be_bytes([m[6], m[7]]),
    );
    let mut at = 12;
    let bad = || "a malformed answer".to_string();
    for _ in 0..qd {
        at = skip_name(m, at).ok_or_else(bad)? + 4;
    }
    for _ in 0..an {
        at = skip_name(m, at).ok_or_else(bad)?;
        let rr = m.get(at..at + 10).ok_or_else(bad)?;
        let len = u16::from_be_bytes([rr[8], rr[9]]) as usize;
        let data = m.get(at + 10..at + 10 + len).ok_or_else(bad)?;
        if rr[..4] == [0, 1, 0, 1] && len == 4 {
            return Ok(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    Err("no A record".into())
}

fn skip_name(m: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *m.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + l as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_and_refusals_said() {
        let mut m = query("web", 7).expect("a query");
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 1; // one answer
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 9, 2]);
        assert_eq!(answer(&m, 7), Ok(Ipv4Addr::new(10, 0, 9, 2)));
        assert!(answer(&m, 8).is_err(), "another id");
        assert!(answer(&m[..m.len() - 2], 7).is_err(), "truncated");
        m[3] = 0x83;
        assert_eq!(answer(&m, 7), Err("NXDOMAIN".into()));
        assert_eq!(
            nameserver("options ndots:0\nnameserver 10.0.9.1\n"),
            Ok(Ipv4Addr::new(10, 0, 9, 1))
        );
        assert!(nameserver("search x\n").is_err());
        assert!(query("a..b", 1).is_err());
    }
}
