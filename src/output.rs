//! Where events go: a header and fixed-width lines, or JSON Lines, on stdout.
//! A closed pipe ends the run quietly; diagnostics go to stderr.

use std::io::{self, BufWriter, Write};

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
pub fn time_of_day_us(unix_ns: i128) -> String {
    let (_, sod, us) = split_ns(unix_ns);
    format!(
        "{:02}:{:02}:{:02}.{us:06}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// One line of output, in either format.
pub trait Record {
    fn write_table(&self, w: &mut dyn Write) -> io::Result<()>;
    fn write_json(&self, w: &mut dyn Write) -> io::Result<()>;
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
        let r = match self.format {
            Format::Table => rec.write_table(&mut self.out),
            Format::Json => rec.write_json(&mut self.out),
        };
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
