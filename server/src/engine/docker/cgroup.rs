//! A container's CPU and memory read straight from its control group's files, as `docker stats`
//! computes them, without asking the engine. Docker 20.10 answers a stats call only at its
//! collector's next one-second tick, even with `one-shot`: sampling a hundred apps one after the
//! other took 100 s instead of once every 15 s. The files answer in microseconds.
//!
//! Where a container's group is comes from `/proc/<pid>/cgroup` of its first process (cgroup v1
//! or v2, the cgroupfs or the systemd driver, any `--cgroup-parent`), once per container. When
//! the files cannot be read (Pier in a container of its own, another machine's engine), the
//! caller asks the engine instead.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use pier_core::runtime::Usage;

/// Where a container's figures are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group {
    /// cgroup v1: the memory and the cpuacct controllers' directories.
    V1 { memory: PathBuf, cpuacct: PathBuf },
    /// cgroup v2: one directory.
    V2(PathBuf),
}

impl Group {
    /// Whether the group's path carries the container id `id` (Docker's always do:
    /// `/docker/<id>`, `docker-<id>.scope`, `<cgroup parent>/<id>`).
    pub fn names(&self, id: &str) -> bool {
        let dir = match self {
            Group::V1 { memory, .. } => memory,
            Group::V2(dir) => dir,
        };
        dir.to_string_lossy().contains(id)
    }
}

/// The group of a process from the text of `/proc/<pid>/cgroup`, under the hierarchy mounted
/// at `root` (`/sys/fs/cgroup`). v1 controllers first: on a hybrid host the v2 line (`0::/`)
/// has no controllers.
pub fn group(proc_cgroup: &str, root: &Path) -> Option<Group> {
    let (mut memory, mut cpuacct, mut unified) = (None, None, None);
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") {
            return None;
        }
        if controllers.is_empty() {
            unified = Some(root.join(rel));
        }
        for c in controllers.split(',') {
            match c {
                "memory" => memory = Some(root.join("memory").join(rel)),
                "cpuacct" => cpuacct = Some(root.join(controllers).join(rel)),
                _ => {}
            }
        }
    }
    match (memory, cpuacct, unified) {
        (Some(memory), Some(cpuacct), _) => Some(Group::V1 { memory, cpuacct }),
        (None, None, Some(dir)) => Some(Group::V2(dir)),
        _ => None,
    }
}

/// One key of a `memory.stat` or `cpu.stat` file.
pub fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The host's CPU time in nanoseconds (the `cpu` line of `/proc/stat`, in USER_HZ ticks, as
/// Docker sums it) and the number of CPUs.
pub fn system_cpu(proc_stat: &str) -> Option<(u64, u32)> {
    let mut total = None;
    let mut cpus = 0;
    for line in proc_stat.lines() {
        if let Some(rest) = line.strip_prefix("cpu ") {
            // user nice system idle iowait irq softirq (steal and guests not counted).
            let ticks: u64 = rest
                .split_whitespace()
                .take(7)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum();
            total = Some(ticks.saturating_mul(1_000_000_000 / 100));
        } else if line.starts_with("cpu") {
            cpus += 1;
        }
    }
    Some((total?, cpus.max(1)))
}

/// A limit file's value (`max` or v1's huge number: none).
fn limit(text: &str) -> u64 {
    match text.trim().parse::<u64>() {
        Ok(n) if n < (1 << 62) => n,
        _ => 0,
    }
}

fn read(p: PathBuf) -> std::io::Result<String> {
    std::fs::read_to_string(p)
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// A file that holds one number (`memory.current`, `cpuacct.usage`, …).
fn number(dir: &Path, file: &str) -> std::io::Result<u64> {
    read(dir.join(file))?.trim().parse().map_err(|_| bad(file))
}

/// The host's CPU time (`/proc/stat`), read at most every 100 ms: a sampling round reads a
/// thousand groups within moments, and the kernel takes about 50 µs to write that file, as long
/// as reading the group's own files. Over a 15 s sample the shift is below 1 %.
#[derive(Default)]
pub struct HostCpu(Option<(Instant, (u64, u32))>);

const HOST_CPU_REUSE: Duration = Duration::from_millis(100);

impl HostCpu {
    /// Nanoseconds of CPU time the host spent, and its online CPUs (blocking when read afresh).
    pub fn now(&mut self) -> std::io::Result<(u64, u32)> {
        if let Some((at, v)) = self.0 {
            if at.elapsed() < HOST_CPU_REUSE {
                return Ok(v);
            }
        }
        let v = system_cpu(&read("/proc/stat".into())?).ok_or_else(|| bad("/proc/stat"))?;
        self.0 = Some((Instant::now(), v));
        Ok(v)
    }
}

/// The group's figures now (blocking file reads, each a few microseconds).
pub fn usage(g: &Group, host: &mut HostCpu) -> std::io::Result<Usage> {
    let (system_ns, online_cpus) = host.now()?;
    let (cpu_ns, used, cache, memory_limit) = match g {
        Group::V1 { memory, cpuacct } => (
            number(cpuacct, "cpuacct.usage")?,
            number(memory, "memory.usage_in_bytes")?,
            stat_value(&read(memory.join("memory.stat"))?, "total_inactive_file").unwrap_or(0),
            limit(&read(memory.join("memory.limit_in_bytes"))?),
        ),
        Group::V2(dir) => (
            stat_value(&read(dir.join("cpu.stat"))?, "usage_usec")
                .ok_or_else(|| bad("cpu.stat"))?
                .saturating_mul(1000),
            number(dir, "memory.current")?,
            stat_value(&read(dir.join("memory.stat"))?, "inactive_file").unwrap_or(0),
            limit(&read(dir.join("memory.max"))?),
        ),
    };
    Ok(Usage {
        cpu_ns,
        system_ns,
        online_cpus,
        // What `docker stats` shows: usage minus the page cache.
        memory_bytes: used.saturating_sub(cache),
        memory_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_cpu_time_is_read_at_most_every_100_ms() {
        let mut host = HostCpu::default();
        let first = host.now().unwrap();
        assert!(first.0 > 0 && first.1 > 0, "{first:?}");
        assert_eq!(host.now().unwrap(), first, "read again within 100 ms");
        std::thread::sleep(HOST_CPU_REUSE + Duration::from_millis(30));
        // Idle time counts too: the host's CPU time always moves on.
        assert!(host.now().unwrap().0 > first.0);
    }

    #[test]
    fn groups_of_v1_v2_and_hybrid_hosts() {
        let root = Path::new("/sys/fs/cgroup");
        let v1 = "12:pids:/docker/abc\n4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n";
        assert_eq!(
            group(v1, root),
            Some(Group::V1 {
                memory: "/sys/fs/cgroup/memory/docker/abc".into(),
                cpuacct: "/sys/fs/cgroup/cpu,cpuacct/docker/abc".into(),
            })
        );
        let split =
            "2:cpuacct:/system.slice/docker-abc.scope\n4:memory:/system.slice/docker-abc.scope\n";
        assert_eq!(
            group(split, root),
            Some(Group::V1 {
                memory: "/sys/fs/cgroup/memory/system.slice/docker-abc.scope".into(),
                cpuacct: "/sys/fs/cgroup/cpuacct/system.slice/docker-abc.scope".into(),
            })
        );
        assert_eq!(
            group("0::/system.slice/docker-abc.scope\n", root),
            Some(Group::V2(
                "/sys/fs/cgroup/system.slice/docker-abc.scope".into()
            ))
        );
        // Only one v1 controller, or a path that climbs out: not read.
        assert_eq!(group("4:memory:/docker/abc\n", root), None);
        assert_eq!(group("0::/docker/../../etc\n", root), None);
        assert_eq!(group("garbage", root), None);
        // A group is a container's only when its path names the container.
        let g = group(v1, root).unwrap();
        assert!(g.names("abc"));
        assert!(!g.names("def"));
    }

    #[test]
    fn stat_files_and_the_hosts_cpu_time() {
        let stat = "cache 10\ninactive_file 4096\ntotal_inactive_file 8192\n";
        assert_eq!(stat_value(stat, "inactive_file"), Some(4096));
        assert_eq!(stat_value(stat, "total_inactive_file"), Some(8192));
        assert_eq!(stat_value(stat, "missing"), None);
        let proc_stat = "cpu  100 1 50 1000 5 0 4 7 0 0\ncpu0 50 0 25 500 2 0 2 3 0 0\ncpu1 50 1 25 500 3 0 2 4 0 0\nintr 1\n";
        // 1160 ticks of 10 ms; steal (7) left out, as Docker does.
        assert_eq!(system_cpu(proc_stat), Some((11_600_000_000, 2)));
        assert_eq!(limit("max\n"), 0);
        assert_eq!(limit("9223372036854771712\n"), 0);
        assert_eq!(limit("33554432\n"), 33554432);
    }
}
