//! pebble, the ACME test CA, for tests: its own listener certificate, free loopback ports, the
//! mock DNS server for every name.

use std::net::SocketAddr;

use crate::ports::free_addr;

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// pebble, the ACME test CA, on free loopback ports, asking the mock DNS server
/// (`scripts/services.sh start`) for every name; stopped (by its pid) when dropped.
pub struct Pebble {
    pub directory: String,
    /// The root its own HTTPS listener is signed by (trusted for the directory only).
    pub ca_file: std::path::PathBuf,
    pub management: String,
    pub http_port: u16,
    dns: SocketAddr,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl Pebble {
    /// `dns`: the mock DNS server pebble must ask (`PIER_TEST_DNS`).
    pub fn start(http_port: u16, dns: SocketAddr) -> Pebble {
        let dir = std::env::temp_dir().join(format!(
            "pier-pebble-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A CA for pebble's own listener, and a localhost certificate from it.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pier test pebble listener CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let ca_file = dir.join("listener-ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
        let (listen, management) = (free_addr(), free_addr());
        let config = serde_json::json!({"pebble": {
            "listenAddress": listen.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": dir.join("cert.pem"),
            "privateKey": dir.join("key.pem"),
            "httpPort": http_port,
            "tlsPort": free_addr().port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
        let mut p = Pebble {
            directory: format!("https://127.0.0.1:{}/dir", listen.port()),
            ca_file,
            management: management.to_string(),
            http_port,
            dns,
            dir,
            child: None,
        };
        p.spawn(dns);
        p
    }

    fn spawn(&mut self, dns: SocketAddr) {
        let log = std::fs::File::create(self.dir.join("pebble.log")).unwrap();
        let child = std::process::Command::new("pebble")
            .arg("-config")
            .arg(self.dir.join("pebble.json"))
            // Always the mock DNS server on loopback: never a resolver outside this machine.
            .arg("-dnsserver")
            .arg(dns.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble (scripts/setup.sh --test installs it)");
        self.child = Some(child);
        // Up when the directory answers.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let ok = std::process::Command::new("curl")
                .args(["-sf", "--noproxy", "*", "--max-time", "2", "--cacert"])
                .arg(&self.ca_file)
                .arg(&self.directory)
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pebble did not start: {}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }

    /// The root pebble signs certificates with (from its management endpoint).
    pub fn root(&self) -> String {
        let out = std::process::Command::new("curl")
            .args(["-sf", "--noproxy", "*", "--cacert"])
            .arg(&self.ca_file)
            .arg(format!("https://{}/roots/0", self.management))
            .output()
            .expect("curl");
        assert!(out.status.success(), "pebble's root: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn(self.dns);
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
