//! Writing captured packets as a classic pcap file (nanosecond timestamps,
//! Ethernet link type) that tcpdump, tshark and Wireshark read.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// Magic of a pcap file with nanosecond timestamps, in our (little-endian) byte order.
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;

pub struct PcapWriter<W: Write> {
    out: W,
}

impl PcapWriter<BufWriter<File>> {
    /// Create (or truncate) `path` with mode 0600: captures hold payloads.
    pub fn create(path: &Path, snaplen: u32) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating pcap file {}", path.display()))?;
        // An existing file keeps its mode on open; make it private as well.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
        let mut w = PcapWriter {
            out: BufWriter::with_capacity(256 * 1024, file),
        };
        w.header(snaplen)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(w)
    }
}

impl<W: Write> PcapWriter<W> {
    #[cfg(test)]
    pub fn new(out: W, snaplen: u32) -> io::Result<Self> {
        let mut w = PcapWriter { out };
        w.header(snaplen)?;
        Ok(w)
    }

    fn header(&mut self, snaplen: u32) -> io::Result<()> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC_NS.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&snaplen.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        self.out.write_all(&h)
    }

    /// One packet: wall time in ns since the epoch, its length on the wire,
    /// and the captured bytes (at most that length).
    pub fn packet(&mut self, unix_ns: i128, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let ns = unix_ns.max(0);
        let secs = (ns / 1_000_000_000) as u32;
        let frac = (ns % 1_000_000_000) as u32;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&frac.to_le_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.max(data.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    #[cfg(test)]
    fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let mut w = PcapWriter::new(Vec::new(), 96).unwrap();
        w.packet(1_700_000_000_123_456_789, 60, &[0xde, 0xad])
            .unwrap();
        let b = w.into_inner();
        assert_eq!(b.len(), 24 + 16 + 2);
        assert_eq!(&b[0..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 96);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_le_bytes(b[24..28].try_into().unwrap()),
            1_700_000_000
        );
        assert_eq!(
            u32::from_le_bytes(b[28..32].try_into().unwrap()),
            123_456_789
        );
        assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 2);
        assert_eq!(u32::from_le_bytes(b[36..40].try_into().unwrap()), 60);
        assert_eq!(&b[40..], &[0xde, 0xad]);
    }

    #[test]
    fn file_is_private() {
        let dir = std::env::temp_dir().join(format!("ws-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.pcap");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut w = PcapWriter::create(&path, 64).unwrap();
        w.flush().unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 24);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
