//! A process's memory and CPU time, as the benchmark binaries report them.

/// The resident set size of process `pid` in bytes (`VmRSS` of `/proc/<pid>/status`), 0 when
/// it cannot be read.
pub fn rss(pid: u32) -> u64 {
    status_bytes(pid, "VmRSS:")
}

/// The peak resident set size of process `pid` in bytes (`VmHWM` of `/proc/<pid>/status`), 0
/// when it cannot be read.
pub fn peak_rss(pid: u32) -> u64 {
    status_bytes(pid, "VmHWM:")
}

/// The CPU time process `pid` has used so far, user and system (`utime + stime` of
/// `/proc/<pid>/stat`), in seconds; 0 when it cannot be read. Linux reports both in ticks of
/// `USER_HZ`, which is 100 on every architecture Portico builds for.
#[allow(clippy::cast_precision_loss, reason = "a figure for people")]
pub fn cpu_seconds(pid: u32) -> f64 {
    const USER_HZ: f64 = 100.0;
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The command name (field 2) is in parentheses and may hold spaces: count fields
            // from the last `)`. After it come field 3 (state) onwards; utime and stime are
            // fields 14 and 15.
            let rest = &stat[stat.rfind(')')? + 1..];
            let mut fields = rest.split_whitespace().skip(11);
            let utime: u64 = fields.next()?.parse().ok()?;
            let stime: u64 = fields.next()?.parse().ok()?;
            Some((utime + stime) as f64 / USER_HZ)
        })
        .unwrap_or(0.0)
}

/// `bytes` in MiB, for printing.
#[allow(clippy::cast_precision_loss, reason = "a figure for people")]
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn status_bytes(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|value| value.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}
