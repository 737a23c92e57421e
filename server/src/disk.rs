//! Free space on the disks Pier writes to (its data directory, Docker's), read with `df`, and
//! the admins told when one is nearly full.

use std::path::Path;

use pier_core::{notify::Event, now, Pier};

/// Below either, a disk is nearly full.
pub const MIN_FREE_PERCENT: u64 = 10;
pub const MIN_FREE_MB: u64 = 1024;

/// (free MiB, free percent) from `df -Pk <path>`'s output.
pub fn parse_df(out: &str) -> Option<(u64, u64)> {
    let line = out.lines().nth(1)?;
    let f: Vec<&str> = line.split_whitespace().collect();
    // Filesystem 1024-blocks Used Available Capacity Mounted-on
    let total: u64 = f.get(1)?.parse().ok()?;
    let available: u64 = f.get(3)?.parse().ok()?;
    if total == 0 {
        return None;
    }
    Some((available / 1024, available * 100 / total))
}

pub async fn free_space(path: &Path) -> Option<(u64, u64)> {
    let out = tokio::process::Command::new("df")
        .arg("-Pk")
        .arg(path)
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| parse_df(&String::from_utf8_lossy(&out.stdout)))
        .flatten()
}

/// Tells the admins about each of `paths` whose disk has less than `min_percent` % or
/// `min_mb` MiB free (at most once a day per path). Run hourly.
pub async fn check(pier: &Pier, paths: &[&Path], min_percent: u64, min_mb: u64) -> usize {
    let mut told = 0;
    for path in paths {
        let Some((free_mb, percent_free)) = free_space(path).await else {
            continue;
        };
        if percent_free < min_percent || free_mb < min_mb {
            tracing::warn!(path = %path.display(), free_mb, percent_free, "disk nearly full");
            let event = Event::DiskLow {
                path: path.display().to_string(),
                free_mb,
                percent_free,
                day: now() / 86_400,
            };
            pier.notify_admins(event).await;
            told += 1;
        }
    }
    told
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_output_is_read() {
        let out = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
                   /dev/vda        263174212 28311336 223393756      12% /\n";
        assert_eq!(parse_df(out), Some((223393756 / 1024, 84)));
        assert_eq!(parse_df("Filesystem\n"), None);
        assert_eq!(parse_df(""), None);
    }
}
