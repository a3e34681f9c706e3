//! A minimal ustar archive writer: the build context the docker driver
//! sends the engine for the image it makes itself (and that tests use for
//! theirs). Regular files only, names under 100 bytes.

/// An archive of `files` (name, contents, mode), ended by two zero blocks.
pub fn archive(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data, mode) in files {
        let mut h = [0u8; 512];
        let n = name.len().min(99);
        h[..n].copy_from_slice(&name.as_bytes()[..n]);
        octal(&mut h[100..108], u64::from(*mode));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], data.len() as u64);
        octal(&mut h[136..148], 0);
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        // The checksum is computed with its own field as spaces.
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// `v` in octal, zero-padded to fill `buf` with a closing NUL.
fn octal(buf: &mut [u8], v: u64) {
    let s = format!("{:0width$o}\0", v, width = buf.len() - 1);
    let b = s.as_bytes();
    // A value too large for the field keeps its low digits (callers stay far below).
    buf.copy_from_slice(&b[b.len() - buf.len()..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_blocks_with_a_valid_checksum() {
        let a = archive(&[("pause", b"abc", 0o755)]);
        assert_eq!(a.len(), 512 + 512 + 1024);
        assert_eq!(&a[..5], b"pause");
        assert_eq!(&a[124..135], b"00000000003");
        let mut h = a[..512].to_vec();
        let stored = String::from_utf8_lossy(&h[148..154]).to_string();
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        assert_eq!(u32::from_str_radix(&stored, 8).ok(), Some(sum));
        assert_eq!(&a[512..515], b"abc");
    }
}
