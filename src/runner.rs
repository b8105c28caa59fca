//! The loop every command shares: poll one ring buffer until the run ends
//! (duration, count, Ctrl-C/SIGTERM, closed pipe), report ring-buffer losses
//! as they happen, then drain and print the summary.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, RingBuffer};

use crate::output::{self, Format, Sink, Stopped};

/// Counter slots every program shares (enum counter in src/bpf/common.h).
pub const COUNTER_SEEN: u32 = 0;
pub const COUNTER_FILTERED: u32 = 1;
pub const COUNTER_DELIVERED: u32 = 2;
pub const COUNTER_LOST: u32 = 3;

/// Options that end a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    pub duration: Option<Duration>,
    pub count: Option<u64>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Signal,
    Duration,
    Count,
    PipeClosed,
    Failed,
}

static STOP: AtomicBool = AtomicBool::new(false);

/// Ctrl-C, SIGTERM and SIGHUP end the run cleanly (programs detached, summary printed).
pub fn install_signal_handlers() -> Result<()> {
    ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C/SIGTERM handler")
}

/// Reads a program's per-CPU `counters` map, and the kernel's count of runs
/// it skipped ("missed") for the programs given with `with_programs`.
pub struct Counters<'a> {
    map: &'a dyn MapCore,
    /// (slot, name) in the order the summary prints them.
    names: Vec<(u32, &'static str)>,
    progs: Vec<i32>,
}

impl<'a> Counters<'a> {
    /// `own`: this program's counters after the common four.
    pub fn new(map: &'a dyn MapCore, own: &[(u32, &'static str)]) -> Self {
        let mut names = vec![
            (COUNTER_SEEN, "seen"),
            (COUNTER_FILTERED, "filtered"),
            (COUNTER_DELIVERED, "delivered"),
            (COUNTER_LOST, "lost"),
        ];
        names.extend_from_slice(own);
        Counters {
            map,
            names,
            progs: Vec::new(),
        }
    }

    /// Also report the programs' `recursion_misses`: runs the kernel skipped
    /// because a BPF program was already running on that CPU (kprobes and
    /// classic tracepoints share one guard per CPU; kernels >= 5.12 count it).
    pub fn with_programs(mut self, fds: Vec<i32>) -> Self {
        self.progs = fds;
        self
    }

    /// Sum of the programs' skipped runs.
    pub fn missed(&self) -> u64 {
        self.progs.iter().map(|&fd| prog_misses(fd)).sum()
    }

    /// Sum of one slot over all CPUs.
    pub fn get(&self, slot: u32) -> Result<u64> {
        let per_cpu = self
            .map
            .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)
            .context("reading the counters map")?
            .unwrap_or_default();
        Ok(per_cpu
            .iter()
            .filter_map(|v| v.get(..8).and_then(|b| b.try_into().ok()))
            .map(u64::from_ne_bytes)
            .sum())
    }

    pub fn all(&self) -> Result<Vec<(&'static str, u64)>> {
        let mut all = self
            .names
            .iter()
            .map(|&(slot, name)| Ok((name, self.get(slot)?)))
            .collect::<Result<Vec<_>>>()?;
        if !self.progs.is_empty() {
            all.push(("missed", self.missed()));
        }
        Ok(all)
    }
}

fn prog_misses(fd: i32) -> u64 {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info is a valid, writable bpf_prog_info of `len` bytes.
    let ret = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len) };
    if ret == 0 {
        info.recursion_misses
    } else {
        0
    }
}

/// Return value for a ring-buffer callback that wants polling to stop now.
pub const CALLBACK_STOP: i32 = -libc::ECANCELED;

fn is_interrupt(e: &libbpf_rs::Error) -> bool {
    e.kind() == libbpf_rs::ErrorKind::Interrupted
}

/// Tells about lost events at most once a second, and once more at exit:
/// records the ring buffer had no room for, and program runs the kernel skipped.
pub struct LossReporter {
    lost: u64,
    missed: u64,
}

impl LossReporter {
    pub fn new() -> Self {
        LossReporter { lost: 0, missed: 0 }
    }

    pub fn report(&mut self, sink: &RefCell<Sink>, lost_total: u64, missed_total: u64) {
        let new_lost = lost_total.saturating_sub(self.lost);
        let new_missed = missed_total.saturating_sub(self.missed);
        self.lost = self.lost.max(lost_total);
        self.missed = self.missed.max(missed_total);
        for (n, reason, why) in [
            (
                new_lost,
                "ringbuf",
                "the ring buffer was full (a larger --ringbuf-size or narrower filters help)",
            ),
            (
                new_missed,
                "missed",
                "the kernel skipped our program while another BPF program ran on that CPU",
            ),
        ] {
            if n == 0 {
                continue;
            }
            let mut s = sink.borrow_mut();
            match s.format {
                Format::Json => {
                    let time = output::rfc3339_us(s.clock.now_ns());
                    s.aux(|w| {
                        writeln!(
                            w,
                            "{{\"type\":\"lost\",\"time\":\"{time}\",\"count\":{n},\"reason\":\"{reason}\"}}"
                        )
                    });
                    s.flush();
                }
                Format::Table => {
                    s.flush();
                    eprintln!("wirescope: lost {n} events: {why}");
                }
            }
        }
    }
}

/// The kernel wakes the reader for a record only when the reader had read
/// everything before it, so a reader that is never behind is woken once per
/// event: at 20,000 connections a second, `conn` spent a fifth of a core on
/// wake-ups and one write per event. After a small batch the loop waits this
/// long, so events gather and come with one wake-up and one write; output is
/// at most this much later. A batch of BUSY_BATCH or more means the reader is
/// behind: no pause then, so the pause never lowers the rate it keeps up with.
const BATCH_PAUSE: Duration = Duration::from_millis(2);
const BUSY_BATCH: usize = 1024;

/// Poll until the run ends. `tick` runs about once a second (loss reports are
/// done here; commands add their own periodic output).
pub fn poll(
    rb: &RingBuffer<'_>,
    sink: &RefCell<Sink>,
    counters: &Counters<'_>,
    limits: Limits,
    losses: &mut LossReporter,
    mut tick: impl FnMut(&RefCell<Sink>) -> Result<()>,
) -> Result<End> {
    let start = Instant::now();
    let deadline = limits.duration.map(|d| start + d);
    let mut next_tick = start + Duration::from_secs(1);
    loop {
        if STOP.load(Ordering::SeqCst) {
            return Ok(End::Signal);
        }
        match sink.borrow().stopped() {
            Some(Stopped::CountReached) => return Ok(End::Count),
            Some(Stopped::PipeClosed) => return Ok(End::PipeClosed),
            Some(Stopped::Failed) => return Ok(End::Failed),
            None => {}
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(End::Duration);
        }
        let mut timeout = Duration::from_millis(100);
        if let Some(d) = deadline {
            timeout = timeout.min(d.saturating_duration_since(now));
        }
        let n = rb.poll_raw(timeout);
        if n < 0 {
            let e = io::Error::from_raw_os_error(-n);
            // EINTR (a signal) and our own stop request are not errors.
            if e.kind() != io::ErrorKind::Interrupted && sink.borrow().stopped().is_none() {
                return Err(anyhow::Error::new(e).context("polling the ring buffer"));
            }
        }
        sink.borrow_mut().flush();
        if n > 0 && (n as usize) < BUSY_BATCH {
            // Not behind: let events gather (see BATCH_PAUSE).
            std::thread::sleep(BATCH_PAUSE);
        }
        if Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            losses.report(sink, counters.get(COUNTER_LOST)?, counters.missed());
            tick(sink)?;
        }
    }
}

/// After the programs are detached: drain what is left in the ring buffer,
/// run `after_drain` (final output of the command), report the last losses
/// and print the summary (stderr, and a JSON line).
pub fn finish(
    rb: &RingBuffer<'_>,
    sink: &RefCell<Sink>,
    counters: &Counters<'_>,
    losses: &mut LossReporter,
    end: End,
    after_drain: impl FnOnce() -> Result<()>,
) -> Result<()> {
    finish_with(rb, sink, counters, losses, end, || {
        after_drain().map(|()| Vec::new())
    })
}

/// `finish` for commands that count things in user space too: `after_drain`
/// returns those counters, which the summary prints after the kernel's.
pub fn finish_with(
    rb: &RingBuffer<'_>,
    sink: &RefCell<Sink>,
    counters: &Counters<'_>,
    losses: &mut LossReporter,
    end: End,
    after_drain: impl FnOnce() -> Result<Vec<(&'static str, u64)>>,
) -> Result<()> {
    if sink.borrow().stopped().is_none() {
        if let Err(e) = rb.consume() {
            if !is_interrupt(&e) && sink.borrow().stopped().is_none() {
                return Err(anyhow::Error::new(e).context("draining the ring buffer"));
            }
        }
    }
    let user = after_drain()?;
    let mut all = counters.all()?;
    all.extend(user);
    let get = |name| all.iter().find(|(n, _)| *n == name).map_or(0, |&(_, v)| v);
    losses.report(sink, get("lost"), get("missed"));
    let mut s = sink.borrow_mut();
    let printed = s.printed();
    if s.format == Format::Json {
        let time = output::rfc3339_us(s.clock.now_ns());
        let mut fields = all.clone();
        fields.push(("printed", printed));
        s.aux(|w| output::write_json_counts(w, "summary", &time, &fields));
    }
    s.flush();
    if let Some(e) = s.take_error() {
        return Err(e);
    }
    let text: Vec<String> = all.iter().map(|(n, v)| format!("{v} {n}")).collect();
    let why = match end {
        End::Signal => "interrupted",
        End::Duration => "duration reached",
        End::Count => "count reached",
        End::PipeClosed => "output closed",
        End::Failed => "failed",
    };
    let mut err = io::stderr().lock();
    // stderr may be closed too; nothing else to tell then.
    let _ = writeln!(
        err,
        "wirescope: {why}: {}, {printed} printed",
        text.join(", ")
    );
    Ok(())
}
