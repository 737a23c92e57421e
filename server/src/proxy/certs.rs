//! Certificates in the running HAProxy: installed, listed and removed through the runtime API
//! and the crt-list file, so a reload keeps them.

use anyhow::{bail, Context};

use super::{runtime, table::is_routable, Proxy};
use crate::files::{private_dir, write_atomic};

impl Proxy {
    /// Serves `name` with this certificate from now on: the PEM file (chain then key, mode 0600)
    /// is written and listed in the certificate list first, then the running HAProxy gets it
    /// through the runtime API (`set ssl cert` + `commit ssl cert` for a name it has, `new ssl
    /// cert` and `add ssl crt-list` for a new one). No reload; if the runtime API fails, a
    /// validated reload from the files.
    pub async fn install_certificate(
        &self,
        name: &str,
        chain: &str,
        key: &str,
    ) -> anyhow::Result<()> {
        if !is_routable(name) || name.starts_with("*.") {
            bail!("refusing a certificate file for {name:?}");
        }
        let bundle: String = format!("{chain}\n{key}")
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        let mut routes = self.routes.lock().await;
        let dir = self.files.dir.join("certs");
        private_dir(&dir)?;
        let path = dir.join(format!("{name}.pem"));
        let file = runtime::checked_path(&path)?;
        let list = std::fs::read_to_string(&self.cfg.crt_list).unwrap_or_default();
        let listed = list.lines().any(|l| l.trim() == file);
        if std::fs::read_to_string(&path).is_ok_and(|old| old == bundle) && listed {
            // Already there; HAProxy loaded it (at start or when it was installed).
            return Ok(());
        }
        write_atomic(&path, bundle.as_bytes(), 0o600)?;
        if !listed {
            write_atomic(
                &self.cfg.crt_list,
                format!("{list}{file}\n").as_bytes(),
                0o600,
            )?;
        }
        let socket = &self.cfg.stats_socket;
        let crt_list = runtime::checked_path(&self.cfg.crt_list)?;
        let live = async {
            let exists = runtime::command(socket, &format!("show ssl cert {file}"))
                .await
                .map(|a| a.contains("Serial:"))?;
            if !exists {
                expect_ok(
                    runtime::command(socket, &format!("new ssl cert {file}")).await?,
                    "New empty certificate",
                )?;
            }
            expect_ok(
                runtime::command_with_pem(socket, &format!("set ssl cert {file}"), &bundle).await?,
                "Transaction created",
            )?;
            expect_ok(
                runtime::command(socket, &format!("commit ssl cert {file}")).await?,
                "Success!",
            )?;
            if !exists {
                expect_ok(
                    runtime::command(socket, &format!("add ssl crt-list {crt_list} {file}"))
                        .await?,
                    "Success!",
                )?;
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = live {
            tracing::warn!(
                error = format!("{e:#}"),
                domain = name,
                "runtime certificate update failed; reloading HAProxy"
            );
            let _ = runtime::command(socket, &format!("abort ssl cert {file}")).await;
            self.reload_locked(&mut routes).await?;
        }
        drop(routes);
        Ok(())
    }

    /// The names with a certificate file of their own (`<dir>/certs/<name>.pem`).
    pub fn installed_certificates(&self) -> anyhow::Result<Vec<String>> {
        let dir = self.files.dir.join("certs");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).context("reading the certificate directory"),
        };
        let mut names = Vec::new();
        for entry in entries {
            let file = entry?.file_name();
            if let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".pem")) {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Stops serving `name`'s certificate: out of the running HAProxy (`del ssl crt-list`, `del
    /// ssl cert`), out of the certificate list and off the disk. HTTPS for the name falls back
    /// to the default certificate. A runtime failure is repaired by a validated reload.
    pub async fn remove_certificate(&self, name: &str) -> anyhow::Result<()> {
        if !is_routable(name) || name.starts_with("*.") {
            bail!("refusing a certificate file for {name:?}");
        }
        let mut routes = self.routes.lock().await;
        let path = self.files.dir.join("certs").join(format!("{name}.pem"));
        let file = runtime::checked_path(&path)?;
        let list = std::fs::read_to_string(&self.cfg.crt_list).unwrap_or_default();
        let kept: String = list
            .lines()
            .filter(|l| l.trim() != file)
            .map(|l| format!("{l}\n"))
            .collect();
        if kept != list {
            write_atomic(&self.cfg.crt_list, kept.as_bytes(), 0o600)?;
        }
        let socket = &self.cfg.stats_socket;
        let crt_list = runtime::checked_path(&self.cfg.crt_list)?;
        let live = async {
            let listed = runtime::command(socket, &format!("show ssl crt-list {crt_list}"))
                .await?
                .lines()
                .any(|l| l.split_whitespace().next() == Some(file.as_str()));
            if listed {
                expect_ok(
                    runtime::command(socket, &format!("del ssl crt-list {crt_list} {file}"))
                        .await?,
                    "deleted",
                )?;
            }
            let loaded = runtime::command(socket, &format!("show ssl cert {file}"))
                .await
                .map(|a| a.contains("Serial:"))?;
            if loaded {
                expect_ok(
                    runtime::command(socket, &format!("del ssl cert {file}")).await?,
                    "deleted",
                )?;
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = live {
            tracing::warn!(
                error = format!("{e:#}"),
                domain = name,
                "runtime certificate removal failed; reloading HAProxy"
            );
            self.reload_locked(&mut routes).await?;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("removing a certificate file"),
        }
        drop(routes);
        Ok(())
    }
}

/// A runtime API answer that must contain `want`.
fn expect_ok(answer: String, want: &str) -> anyhow::Result<()> {
    if answer.contains(want) {
        Ok(())
    } else {
        bail!("HAProxy answered: {answer}")
    }
}
