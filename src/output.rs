//! Where events go: a header and fixed-width lines, or JSON Lines, on stdout.
//! A closed pipe ends the run quietly; diagnostics go to stderr.

use std::cell::Cell;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;

use crate::sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

/// Turns kernel CLOCK_MONOTONIC timestamps into wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset_ns: i128,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            offset_ns: sys::monotonic_to_realtime_ns(),
        }
    }

    /// Nanoseconds since the Unix epoch for a bpf_ktime_get_ns() value.
    pub fn wall_ns(&self, mono_ns: u64) -> i128 {
        self.offset_ns + mono_ns as i128
    }

    pub fn now_ns(&self) -> i128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0)
    }
}

/// Civil date (year, month, day) of a day count since 1970-01-01
/// (proleptic Gregorian calendar, valid for every day count an i64 holds here).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365
    let mp = (5 * doy + 2) / 153; // March-based month, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Split nanoseconds since the epoch into (days, seconds of day, microseconds).
fn split_ns(unix_ns: i128) -> (i64, u32, u32) {
    // 64-bit arithmetic for every time until 2262 (128-bit division is slow).
    if let Ok(ns) = i64::try_from(unix_ns) {
        let us = ns.div_euclid(1000);
        let secs = us.div_euclid(1_000_000);
        return (
            secs.div_euclid(86_400),
            secs.rem_euclid(86_400) as u32,
            us.rem_euclid(1_000_000) as u32,
        );
    }
    let us = unix_ns.div_euclid(1000);
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000) as u32;
    let days = secs.div_euclid(86_400) as i64;
    let sod = secs.rem_euclid(86_400) as u32;
    (days, sod, micros)
}

/// RFC 3339 in UTC with microseconds: `2026-11-25T22:21:58.123456Z`.
pub fn rfc3339_us(unix_ns: i128) -> String {
    let (days, sod, us) = split_ns(unix_ns);
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{us:06}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Time of day in UTC with microseconds, for table output: `22:21:58.123456`.
// Kept for commands that print with `format!`; per-event paths use push_time_of_day_us.
#[allow(dead_code)]
pub fn time_of_day_us(unix_ns: i128) -> String {
    let (_, sod, us) = split_ns(unix_ns);
    format!(
        "{:02}:{:02}:{:02}.{us:06}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// "00" to "99": two digits per division when formatting integers.
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869\
707172737475767778798081828384858687888990919293949596979899";

/// Appends the decimal digits of `v` (no allocation, no formatting machinery).
pub fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if v >= 10 {
        let pair = v as usize * 2;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        digits[i] = b'0' + v as u8;
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Appends `v` right-aligned in `width` characters (like `{:>width$}`).
pub fn push_right_u64(buf: &mut Vec<u8>, v: u64, width: usize) {
    let start = buf.len();
    push_u64(buf, v);
    let digits = buf.len() - start;
    if digits < width {
        let pad = width - digits;
        buf.resize(buf.len() + pad, b' ');
        buf.copy_within(start..start + digits, start + pad);
        buf[start..start + pad].fill(b' ');
    }
}

/// Appends `v` as exactly `width` decimal digits (zero-padded; higher digits dropped).
fn push_padded(buf: &mut Vec<u8>, mut v: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let width = width.min(digits.len());
    for d in digits[..width].iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    buf.extend_from_slice(&digits[..width]);
}

/// Appends `s` as a JSON string, quotes included, escaped the way serde_json
/// escapes (`\"`, `\\`, the short escapes \b \f \n \r \t, other control
/// characters as `\u00xx`; everything else, non-ASCII too, as it is).
pub fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0..=0x1f => b'u',
            _ => continue,
        };
        buf.extend_from_slice(&bytes[start..i]);
        buf.push(b'\\');
        buf.push(short);
        if short == b'u' {
            buf.extend_from_slice(&[
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

/// Appends an IP address in its usual notation (what `Display` prints).
pub fn push_ip(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                push_u64(buf, u64::from(o));
            }
        }
        // RFC 5952 compression is subtle: std's Display does it; a Vec never fails.
        IpAddr::V6(a) => {
            let _ = write!(buf, "{a}");
        }
    }
}

/// Appends `unix_ns` as RFC 3339 in UTC with microseconds, like [`rfc3339_us`].
/// The date and time up to the second are formatted once per second (events
/// come in time order) and reused.
pub fn push_rfc3339_us(buf: &mut Vec<u8>, unix_ns: i128) {
    thread_local! {
        /// (seconds since the epoch, "YYYY-MM-DDTHH:MM:SS." of that second)
        static SECOND: Cell<(i64, [u8; 20])> = const { Cell::new((i64::MIN, [0; 20])) };
    }
    let (days, sod, us) = split_ns(unix_ns);
    let secs = days.saturating_mul(86_400).saturating_add(i64::from(sod));
    let (cached, mut text) = SECOND.get();
    if cached != secs || secs == i64::MIN {
        let (y, mo, d) = civil_from_days(days);
        let mut t = Vec::with_capacity(32);
        if (0..=9999).contains(&y) {
            push_padded(&mut t, y as u32, 4);
        } else {
            // outside what four digits hold: as `format!` prints it
            let _ = write!(t, "{y:04}");
        }
        t.push(b'-');
        push_padded(&mut t, mo, 2);
        t.push(b'-');
        push_padded(&mut t, d, 2);
        t.push(b'T');
        push_clock(&mut t, sod);
        t.push(b'.');
        if t.len() != text.len() {
            // a year of more than four digits: not worth caching
            buf.extend_from_slice(&t);
            push_padded(buf, us, 6);
            buf.push(b'Z');
            return;
        }
        text.copy_from_slice(&t);
        SECOND.set((secs, text));
    }
    buf.extend_from_slice(&text);
    push_padded(buf, us, 6);
    buf.push(b'Z');
}

/// HH:MM:SS of a second of the day.
fn push_clock(buf: &mut Vec<u8>, sod: u32) {
    push_padded(buf, sod / 3600, 2);
    buf.push(b':');
    push_padded(buf, sod / 60 % 60, 2);
    buf.push(b':');
    push_padded(buf, sod % 60, 2);
}

/// Appends the time of day like [`time_of_day_us`].
pub fn push_time_of_day_us(buf: &mut Vec<u8>, unix_ns: i128) {
    thread_local! {
        /// (second of the day, "HH:MM:SS." of it)
        static SECOND: Cell<(u32, [u8; 9])> = const { Cell::new((u32::MAX, [0; 9])) };
    }
    let (_, sod, us) = split_ns(unix_ns);
    let (cached, mut text) = SECOND.get();
    if cached != sod {
        let mut t = Vec::with_capacity(9);
        push_clock(&mut t, sod);
        t.push(b'.');
        text.copy_from_slice(&t);
        SECOND.set((sod, text));
    }
    buf.extend_from_slice(&text);
    push_padded(buf, us, 6);
}

/// Appends `text`, then spaces up to `width` characters (like `{:<width$}`).
pub fn push_left(buf: &mut Vec<u8>, text: &str, width: usize) {
    buf.extend_from_slice(text.as_bytes());
    pad_from(buf, buf.len() - text.len(), width);
}

/// Pads what was appended since `start` with spaces to `width` characters.
pub fn pad_from(buf: &mut Vec<u8>, start: usize, width: usize) {
    let written = &buf[start..];
    let chars = if written.is_ascii() {
        written.len()
    } else {
        String::from_utf8_lossy(written).chars().count()
    };
    const SPACES: [u8; 64] = [b' '; 64];
    let pad = width.saturating_sub(chars);
    match SPACES.get(..pad) {
        Some(spaces) => buf.extend_from_slice(spaces),
        None => buf.resize(buf.len() + pad, b' '),
    }
}

/// One line of output, in either format.
pub trait Record {
    fn write_table(&self, w: &mut dyn Write) -> io::Result<()>;
    fn write_json(&self, w: &mut dyn Write) -> io::Result<()>;

    /// Append the table line to `buf`. The sink calls this for every event;
    /// a record that can build its line without `dyn Write` calls overrides it.
    fn table_line(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        self.write_table(buf)
    }

    /// Append the JSON line to `buf` (see [`Record::table_line`]).
    fn json_line(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        self.write_json(buf)
    }
}

/// Why output stopped accepting lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    CountReached,
    PipeClosed,
    Failed,
}

pub struct Sink {
    out: BufWriter<Box<dyn Write>>,
    /// The line being built, reused for every event (no allocation per event).
    line: Vec<u8>,
    pub format: Format,
    pub clock: Clock,
    printed: u64,
    limit: Option<u64>,
    stopped: Option<Stopped>,
    error: Option<anyhow::Error>,
}

impl Sink {
    pub fn stdout(format: Format, limit: Option<u64>) -> Self {
        Self::new(Box::new(io::stdout()), format, limit)
    }

    pub fn new(out: Box<dyn Write>, format: Format, limit: Option<u64>) -> Self {
        Sink {
            out: BufWriter::with_capacity(64 * 1024, out),
            line: Vec::with_capacity(512),
            format,
            clock: Clock::new(),
            printed: 0,
            limit,
            stopped: None,
            error: None,
        }
    }

    pub fn stopped(&self) -> Option<Stopped> {
        self.stopped
    }

    pub fn printed(&self) -> u64 {
        self.printed
    }

    /// The error that ended output, if any other than a closed pipe (reported at exit).
    pub fn take_error(&mut self) -> Option<anyhow::Error> {
        self.error.take()
    }

    /// End the run because of an error elsewhere (a pcap file that cannot be written).
    pub fn fail(&mut self, e: anyhow::Error) {
        self.stopped = Some(Stopped::Failed);
        self.error.get_or_insert(e);
    }

    fn check(&mut self, r: io::Result<()>) -> bool {
        match r {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.stopped = Some(Stopped::PipeClosed);
                false
            }
            Err(e) => {
                self.fail(anyhow::Error::new(e).context("writing to stdout"));
                false
            }
        }
    }

    /// The table header (nothing in JSON mode).
    pub fn header(&mut self, header: &str) {
        if self.format == Format::Table && self.stopped.is_none() {
            let r = writeln!(self.out, "{header}").and_then(|_| self.out.flush());
            self.check(r);
        }
    }

    /// Print one event; false once no more events are wanted.
    pub fn event(&mut self, rec: &dyn Record) -> bool {
        if self.stopped.is_some() {
            return false;
        }
        self.line.clear();
        let r = match self.format {
            Format::Table => rec.table_line(&mut self.line),
            Format::Json => rec.json_line(&mut self.line),
        }
        .and_then(|()| self.out.write_all(&self.line));
        if !self.check(r) {
            return false;
        }
        self.printed += 1;
        if self.limit.is_some_and(|n| self.printed >= n) {
            self.stopped = Some(Stopped::CountReached);
            self.flush();
            return false;
        }
        true
    }

    /// A line that is not an event (lost, summary, hist): not counted by --count,
    /// still written after the count is reached, never after the pipe closed.
    pub fn aux(&mut self, f: impl FnOnce(&mut dyn Write) -> io::Result<()>) {
        if matches!(self.stopped, Some(Stopped::PipeClosed | Stopped::Failed)) {
            return;
        }
        let r = f(&mut self.out);
        self.check(r);
    }

    pub fn flush(&mut self) {
        if matches!(self.stopped, Some(Stopped::PipeClosed | Stopped::Failed)) {
            return;
        }
        let r = self.out.flush();
        self.check(r);
    }
}

/// Write a JSON object of integer fields after "type" and "time".
pub fn write_json_counts(
    w: &mut dyn Write,
    kind: &str,
    time: &str,
    fields: &[(&str, u64)],
) -> io::Result<()> {
    write!(w, "{{\"type\":\"{kind}\",\"time\":\"{time}\"")?;
    for (k, v) in fields {
        write!(w, ",\"{k}\":{v}")?;
    }
    writeln!(w, "}}")
}

/// A record's line as text, JSON or table (for unit tests).
#[cfg(test)]
pub fn render(rec: &dyn Record, json: bool) -> String {
    let mut out = Vec::new();
    if json {
        rec.write_json(&mut out).unwrap();
    } else {
        rec.write_table(&mut out).unwrap();
    }
    String::from_utf8(out).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn dates_and_times() {
        assert_eq!(rfc3339_us(0), "1970-01-01T00:00:00.000000Z");
        // 2024-02-29 12:34:56.789012345 UTC (a leap day)
        let t = 1_709_210_096_789_012_345i128;
        assert_eq!(rfc3339_us(t), "2024-02-29T12:34:56.789012Z");
        assert_eq!(time_of_day_us(t), "12:34:56.789012");
        // end of a century that is not a leap year, and of 2000 which is
        assert_eq!(
            rfc3339_us(4_107_542_399_000_000_000),
            "2100-02-28T23:59:59.000000Z"
        );
        assert_eq!(
            rfc3339_us(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(rfc3339_us(-1_000), "1969-12-31T23:59:59.999999Z");
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }
    struct Line(&'static str);
    impl Record for Line {
        fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
            writeln!(w, "T {}", self.0)
        }
        fn write_json(&self, w: &mut dyn Write) -> io::Result<()> {
            writeln!(w, "{{\"l\":\"{}\"}}", self.0)
        }
    }

    #[test]
    fn count_limit_stops_events_not_aux_lines() {
        let buf = Shared::default();
        let mut s = Sink::new(Box::new(buf.clone()), Format::Table, Some(2));
        s.header("HDR");
        assert!(s.event(&Line("a")));
        assert!(!s.event(&Line("b")));
        assert!(!s.event(&Line("c")));
        assert_eq!(s.stopped(), Some(Stopped::CountReached));
        s.aux(|w| writeln!(w, "summary"));
        s.flush();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "HDR\nT a\nT b\nsummary\n");
        assert_eq!(s.printed(), 2);
    }

    #[test]
    fn json_has_no_header_and_counts_render() {
        let buf = Shared::default();
        let mut s = Sink::new(Box::new(buf.clone()), Format::Json, None);
        s.header("HDR");
        s.event(&Line("a"));
        s.aux(|w| write_json_counts(w, "summary", "T", &[("seen", 3), ("lost", 0)]));
        s.flush();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "{\"l\":\"a\"}\n{\"type\":\"summary\",\"time\":\"T\",\"seen\":3,\"lost\":0}\n"
        );
    }

    #[test]
    fn closed_pipe_stops_quietly() {
        let mut s = Sink::new(Box::new(Broken), Format::Table, None);
        // Small writes are buffered; the flush finds the closed pipe.
        s.event(&Line("a"));
        s.flush();
        assert_eq!(s.stopped(), Some(Stopped::PipeClosed));
        assert!(s.take_error().is_none());
        assert!(!s.event(&Line("b")));
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    fn with(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut b = Vec::new();
        f(&mut b);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn integers() {
        let some = [
            0u64,
            1,
            9,
            10,
            99,
            100,
            65535,
            1 << 32,
            u64::MAX - 1,
            u64::MAX,
        ];
        for v in (0..2000u64).chain((0..64).map(|s| 1u64 << s)).chain(some) {
            assert_eq!(with(|b| push_u64(b, v)), v.to_string());
        }
    }

    #[test]
    fn json_strings_escape_like_serde_json() {
        let all_ascii: String = (0u8..=0x7f).map(char::from).collect();
        for s in [
            "",
            "eth0",
            "a\"b\\c",
            "\u{8}\u{c}\n\r\t",
            "\u{0}\u{1f}\u{7f}",
            "veth-é€😀",
            all_ascii.as_str(),
        ] {
            assert_eq!(
                with(|b| push_json_str(b, s)),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn addresses_print_as_display_does() {
        for a in [
            "0.0.0.0",
            "10.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fd00:99::1",
            "2001:db8::1:0:0:1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(with(|b| push_ip(b, ip)), ip.to_string());
        }
    }

    #[test]
    fn cached_times_match_the_plain_formatting() {
        // in order, out of order, across seconds, days and years, before 1970
        let base = 1_709_210_096_789_012_345i128;
        let mut times = vec![
            0,
            -1_000,
            base,
            base + 1,
            base + 210_987_654,
            base + 211_000_000,
            base - 3_000_000_000,
            base + 86_400_000_000_000,
            4_107_542_399_999_999_999,
            951_782_400_000_000_000,
            253_402_300_799_000_000_000, // 9999-12-31T23:59:59
            253_402_300_800_000_000_000, // year 10000
        ];
        times.extend((0..2000).map(|i| base + i * 7_777_777));
        for t in times {
            assert_eq!(with(|b| push_rfc3339_us(b, t)), rfc3339_us(t), "{t}");
            assert_eq!(with(|b| push_time_of_day_us(b, t)), time_of_day_us(t));
        }
    }

    #[test]
    fn padding_counts_characters() {
        assert_eq!(with(|b| push_right_u64(b, 42, 5)), "   42");
        assert_eq!(with(|b| push_right_u64(b, 123_456, 5)), "123456");
        assert_eq!(
            with(|b| {
                b.push(b'x');
                push_right_u64(b, 7, 2)
            }),
            "x 7"
        );
        assert_eq!(with(|b| push_left(b, "ab", 4)), "ab  ");
        assert_eq!(with(|b| push_left(b, "abcdef", 4)), "abcdef");
        assert_eq!(with(|b| push_left(b, "é", 3)), "é  ");
    }
}
